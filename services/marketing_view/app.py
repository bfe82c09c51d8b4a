"""Wiring of marketing_view: the live projection, the loss watchdog and auto-rebuild, the read API and
the tab page. Read-only to the outside: anything but GET/HEAD is 405 on every path (web.ReadOnly).

``MARKETING_VIEW_ROLE`` splits the work between processes (settings.role):
- ``api``: the read API and the tab page, plus the watchdog (a read answers 503 as soon as the model is
  gone); no Kafka, no consumer, no rebuild, so reads never wait behind a projection batch;
- ``projector``: the live projection (consumer), the watchdog and auto-rebuild; HTTP serves only /healthz,
  /readyz and /metrics;
- ``all`` (default): both in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated
from zoneinfo import ZoneInfo

import orjson
import structlog
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from redis.asyncio import Redis, RedisCluster
from starlette.datastructures import State

from services.marketing_view import domain, metrics, pages
from services.marketing_view.config import Settings
from services.marketing_view.generations import ReadModel
from services.marketing_view.keys import KeySpace
from services.marketing_view.projection import Projector
from services.marketing_view.rebuild import Progress, RebuildBusy, Rebuilder
from services.marketing_view.schemas import MarketingTab
from services.marketing_view.scripts import AnyRedis
from services.marketing_view.views import ReadModelUnavailable, TabReader, TabSettings
from services.marketing_view.web import SESSION_COOKIE, FastRead, LoginRequired, ReadOnly, Sessions, page_principal
from shared.auth import Principal, Scope
from shared.consumer import Delivery
from shared.contracts import topics
from shared.contracts.domain import CouponDomainEvent, GiftCardDomainEvent, SegmentDomainEvent
from shared.http import add_check, create_http_app
from shared.logging import configure_logging
from shared.ratelimit import limited
from shared.runtime import add_runtime_checks, open_runtime
from shared.tasks import cancel_and_wait

NAME = "marketing_view"
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")
BAD_CUSTOMER_ID = "customer_id must be 1-64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
PAGE_HEADERS = {
    "Cache-Control": "private, no-cache",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
log = structlog.get_logger(__name__)


def open_redis(settings: Settings) -> AnyRedis:
    """One Redis, or a Redis Cluster (every script touches one slot; pipelines may span slots)."""
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=3)
    return Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=15)


def make_rebuilder(settings: Settings, redis: AnyRedis, model: ReadModel | None,
                   on_progress: object = None) -> Rebuilder:
    keys = KeySpace(settings.key_prefix)
    return Rebuilder(settings=settings, redis=redis, keys=keys, projector=Projector(redis, keys), model=model,
                     settle_s=settings.settle_s, on_progress=on_progress)  # type: ignore[arg-type]


class AutoRebuild:
    """Starts a rebuild when the watchdog finds no read model (first start, or Redis lost its data)."""

    def __init__(self, settings: Settings, redis: AnyRedis, model: ReadModel) -> None:
        self._settings = settings
        self._redis = redis
        self._model = model
        self._task: asyncio.Task[None] | None = None
        self._not_before = 0.0
        self._backoff_s = 2.0

    async def on_tick(self) -> None:
        model = self._model
        if model.serving or not self._settings.auto_rebuild or model.building:
            return
        if self._task is not None and not self._task.done():
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._not_before:
            return
        reason = "data_lost" if model.ever_served or model.current else "no_model"
        self._task = asyncio.create_task(self._run(reason), name="marketing_view-auto-rebuild")

    async def _run(self, reason: str) -> None:
        def report(progress: Progress) -> None:
            self._model.progress = {"generation": progress.generation, "phase": progress.phase,
                                    "done": progress.done, "total": progress.total}

        try:
            await make_rebuilder(self._settings, self._redis, self._model, report).run(reason)
            self._backoff_s = 2.0
        except RebuildBusy:
            pass  # another instance rebuilds; the watchdog sees its result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("automatic rebuild failed; retrying", backoff_s=self._backoff_s)
            self._not_before = asyncio.get_running_loop().time() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, 60.0)

    async def stop(self) -> None:
        await cancel_and_wait([self._task])


def parse_cursor(cursor: str | None) -> domain.Cursor | None:
    try:
        return domain.Cursor.decode(cursor) if cursor else None
    except domain.InvalidCursor as exc:
        raise HTTPException(400, detail=str(exc)) from None


async def tab_json(state: State, customer_id: str, cursor: str | None, limit: int | None,
                   if_none_match: str | None) -> Response:
    """The JSON answer of ``GET /v1/customers/{id}/marketing`` once the caller is authorised (400, 503, 304, 200)."""
    if not CUSTOMER_ID.match(customer_id):
        raise HTTPException(400, detail=BAD_CUSTOMER_ID)
    parsed = parse_cursor(cursor)
    reader: TabReader = state.reader
    try:
        tab = await reader.read(customer_id, cursor=parsed, limit=limit)
    except ReadModelUnavailable as exc:
        return Response(orjson.dumps({"detail": "the read model is not available: " + exc.status}),
                        status_code=503, media_type="application/json", headers={"Retry-After": "2"})
    tag = domain.etag(tab)
    headers = {"ETag": tag, "Cache-Control": "private, no-cache", "Vary": "Authorization"}
    if domain.etag_matches(if_none_match, tag):
        return Response(status_code=304, headers=headers)
    return Response(orjson.dumps(tab), media_type="application/json", headers=headers)


def create_app(settings: Settings) -> FastAPI:
    keys = KeySpace(settings.key_prefix)
    tz = ZoneInfo(settings.business_timezone)
    secret = settings.session_secret.get_secret_value().encode() if settings.session_secret else None
    sessions = Sessions(secret, settings.session_ttl_s)
    tab_settings = TabSettings(tz, settings.invoice_url_template, settings.expiring_within_days, settings.page_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = open_redis(settings)
        model = ReadModel(redis, keys, interval_s=settings.watchdog_interval_s,
                          cleanup_grace_s=settings.cleanup_grace_s)
        app.state.reader = TabReader(redis, keys, model, tab_settings)
        app.state.model = model
        runtime = None
        if settings.projects:
            runtime = await open_runtime(name=NAME, settings=settings, schema=None, database_url=None,
                                         migrations_dir=None)
            add_runtime_checks(app, runtime)
        add_check(app, "redis", redis.ping)

        async def read_model() -> str:
            return model.status()

        if settings.serves_api:  # a projector is ready while it (re)builds: it is what makes the model
            add_check(app, "read_model", read_model)
        with contextlib.suppress(Exception):
            await model.refresh()

        auto: AutoRebuild | None = None
        watchdog: asyncio.Task[None] | None = None
        if runtime is not None:
            projector = Projector(redis, keys)

            async def project(batch: Sequence[Delivery]) -> None:
                generations = await model.fresh_targets()
                if not generations:
                    metrics.SKIPPED.inc(len(batch))  # no read model yet: the coming rebuild replays these
                    return
                await projector.apply([d.event for d in batch], generations)

            auto = AutoRebuild(settings, redis, model)
            runtime.spawn(model.watch(auto.on_tick), name="marketing_view-watchdog")
            await runtime.start_consumer({t: project for t in topics.DOMAIN_TOPICS},
                                         group_id=settings.consumer_group)
        else:  # api only: the watchdog tells reads when the model is gone (503) or switched
            watchdog = asyncio.create_task(model.watch(), name="marketing_view-watchdog")
        try:
            yield
        finally:
            if auto is not None:
                await auto.stop()
            await cancel_and_wait([watchdog])
            await model.close()
            if runtime is not None:
                await runtime.close()
            await redis.aclose()

    app = create_http_app(
        service=NAME, settings=settings, lifespan=lifespan, title="marketing_view",
        description="Read model of the Customer Marketing tab (read-only: GET and HEAD only).",
    )
    app.add_middleware(ReadOnly)
    if settings.serves_api:
        _add_tab_routes(app, settings, sessions, tz)
    return app


def _add_tab_routes(app: FastAPI, settings: Settings, sessions: Sessions, tz: ZoneInfo) -> None:

    async def read(request: Request, customer_id: str, cursor: str | None, limit: int | None,
                   ) -> dict[str, object]:
        return await request.app.state.reader.read(customer_id, cursor=parse_cursor(cursor), limit=limit)

    @app.get("/v1/customers/{customer_id}/marketing", tags=["marketing tab"],
             summary="A customer's Marketing tab: segments, coupon usage history, gift cards, insights",
             responses={200: {"model": MarketingTab, "description": "The tab (SPEC §2.4), with an ETag"},
                        304: {"description": "Not modified (If-None-Match)"}, 400: {"description": "Malformed id"},
                        503: {"description": "The read model is being (re)built"}})
    async def customer_marketing(
        customer_id: str, request: Request, _: Annotated[Principal, Depends(limited(Scope.READ))],
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
        limit: Annotated[int | None, Query(ge=1, description="Coupon rows per page (default 20, max 100)")] = None,
    ) -> Response:
        return await tab_json(request.app.state, customer_id, cursor, limit,
                              request.headers.get("if-none-match"))

    # The same route without FastAPI's per-request dependency and parameter machinery for the common case
    # (a valid key with the read scope, plain cursor/limit); anything else goes through the route above.
    route = next(r for r in app.router.routes if isinstance(r, APIRoute) and r.endpoint is customer_marketing)
    route.app = FastRead(route.app, tab_json)

    def html(status: int, title: str, message: str, *, login: str | None = None,
             extra_headers: dict[str, str] | None = None) -> HTMLResponse:
        return HTMLResponse(pages.message_page(title, message, login_action=login), status_code=status,
                            headers={**PAGE_HEADERS, **(extra_headers or {})})

    @app.get("/customers/{customer_id}/marketing", tags=["marketing tab"], response_class=HTMLResponse,
             summary="The Marketing tab as a web page (authenticate once with ?key=<api key>)")
    async def marketing_page(
        customer_id: str, request: Request,
        key: Annotated[str | None, Query(description="API key, once: exchanged for a session cookie")] = None,
        cursor: Annotated[str | None, Query(description="Coupon history page")] = None,
    ) -> Response:
        path = request.url.path
        if key is not None:
            principal = request.app.state.keys.authenticate(key)
            if principal is None:
                return html(401, "Sign in", "Unknown API key.", login=path,
                            extra_headers={"WWW-Authenticate": "Bearer"})
            if Scope.READ not in principal.scopes:
                return html(403, "Not allowed", "This API key lacks the 'read' scope.")
            target = path + (f"?cursor={cursor}" if cursor and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cursor) else "")
            response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
            response.set_cookie(SESSION_COOKIE, sessions.issue(principal), max_age=sessions.ttl_s, path="/",
                                httponly=True, samesite="lax", secure=request.url.scheme == "https")
            return response
        try:
            principal = page_principal(request, sessions)
        except LoginRequired as exc:
            return html(401, "Sign in", f"{exc.detail[:1].upper()}{exc.detail[1:]}: enter an API key with the "
                        "'read' scope.", login=path, extra_headers={"WWW-Authenticate": "Bearer"})
        except HTTPException as exc:
            return html(exc.status_code, "Not allowed", str(exc.detail))
        wait = request.app.state.rate_limiter.take(principal.key_id)  # the same per-key budget as the JSON API
        if wait > 0:
            return html(429, "Too many requests", "This API key sent too many requests; try again in a moment.",
                        extra_headers={"Retry-After": str(max(1, math.ceil(wait)))})
        if not CUSTOMER_ID.match(customer_id):
            return html(400, "Bad customer id", BAD_CUSTOMER_ID)
        try:
            tab = await read(request, customer_id, cursor, None)
        except HTTPException as exc:
            return html(exc.status_code, "Bad request", str(exc.detail))
        except ReadModelUnavailable as exc:
            return html(503, "Temporarily unavailable", "The Marketing tab is being rebuilt: " + exc.status
                        + ". Reload in a few seconds.", extra_headers={"Retry-After": "2"})
        return HTMLResponse(pages.tab_page(tab, tz=tz, on_later_page=cursor is not None), headers=PAGE_HEADERS)


def app_from_env() -> FastAPI:
    """The app of one worker process (``serve_workers``): settings and logging from the environment."""
    settings = Settings()
    configure_logging(NAME, settings.log_level)
    return create_app(settings)


def serve_workers(settings: Settings) -> int:
    """``settings.workers`` server processes of the api role on one port (uvicorn's supervisor; each worker
    has its own event loop, watchdog and per-key rate limit bucket)."""
    import uvicorn

    configure_logging(NAME, settings.log_level)
    uvicorn.run("services.marketing_view.app:app_from_env", factory=True, workers=settings.workers,
                host=settings.http_host, port=settings.http_port, loop="uvloop", log_config=None, access_log=False,
                timeout_graceful_shutdown=5)
    return 0


def asyncapi(settings: Settings) -> AsyncAPI:
    broker = KafkaBroker(settings.kafka_bootstrap_servers)

    @broker.subscriber(topics.SEGMENT_MEMBERSHIPS, group_id=settings.consumer_group, title="on_segments_changed",
                       description="A customer's complete segment list from segment_engine (key: customer_id)")
    async def on_segments_changed(event: SegmentDomainEvent) -> None: ...

    @broker.subscriber(topics.COUPON_REDEMPTIONS, group_id=settings.consumer_group, title="on_coupon_event",
                       description="Coupon Usage History rows and price-sensitivity insights from redemption_ledger")
    async def on_coupon_event(event: CouponDomainEvent) -> None: ...

    @broker.subscriber(topics.GIFTCARD_CARDS, group_id=settings.consumer_group, title="on_gift_card_changed",
                       description="Gift card rows from giftcard_ledger (key: card_id; never the full number)")
    async def on_gift_card_changed(event: GiftCardDomainEvent) -> None: ...

    return AsyncAPI(broker, title="marketing_view", version="1.0.0")
