"""Wiring of redemption_ledger: Kafka subscribers, HTTP routes, lifespan. No logic here.

Scopes: every read (including ``POST /v1/coupons/validate``, the till's side-effect-free question) needs
``read``; every catalog write needs ``manage``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from services.redemption_ledger import schemas as s
from services.redemption_ledger.config import Settings
from services.redemption_ledger.domain import (
    CAMPAIGN_PATTERN,
    CODE_PATTERN,
    Flag,
    InvalidInput,
    normalise_code,
)
from services.redemption_ledger.handlers import CouponExists, CouponNotFound, RedemptionLedger
from services.redemption_ledger.store import Page
from shared.auth import Principal, Scope, require
from shared.contracts import topics
from shared.contracts.domain import CouponRedemptionRecorded, CustomerCouponInsightsChanged
from shared.contracts.pos import CouponEvent, SaleEvent
from shared.http import create_http_app
from shared.runtime import add_runtime_checks, open_runtime

NAME = "redemption_ledger"
MIGRATIONS = Path(__file__).parent / "migrations"

CodeParam = Annotated[str, PathParam(pattern=CODE_PATTERN, description="Coupon code (case-insensitive)")]
CustomerParam = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]
CampaignParam = Annotated[str, PathParam(pattern=CAMPAIGN_PATTERN)]
LimitQuery = Annotated[int, Query(ge=1, description="Page size (capped by the service's page_size_max)")]
CursorQuery = Annotated[str | None, Query(max_length=400, description="next_cursor of the previous page")]
Reader = Annotated[Principal, Depends(require(Scope.READ))]
Manager = Annotated[Principal, Depends(require(Scope.MANAGE))]


def ledger_of(request: Request) -> RedemptionLedger:
    return request.app.state.ledger  # type: ignore[no-any-return]


Ledger = Annotated[RedemptionLedger, Depends(ledger_of)]


def create_app(settings: Settings) -> FastAPI:
    tz = settings.tz

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await open_runtime(name=NAME, settings=settings, schema=settings.db_schema,
                                     database_url=settings.db_url, migrations_dir=MIGRATIONS)
        assert runtime.pool is not None and runtime.relay is not None
        ledger = RedemptionLedger(runtime.pool, runtime.relay.wake, settings)
        app.state.ledger = ledger
        add_runtime_checks(app, runtime)
        await runtime.start_consumer(
            {topics.POS_COUPON_REDEMPTIONS: ledger.on_coupon_events, topics.POS_SALES: ledger.on_sale_events},
            group_id=settings.consumer_group,
        )
        if settings.insights_sweep_interval_s > 0:
            runtime.spawn(ledger.sweep_forever(settings.insights_sweep_interval_s), name=f"{NAME}-insights-sweep")
        try:
            yield
        finally:
            await runtime.close()

    app = create_http_app(
        service=NAME, settings=settings, lifespan=lifespan, title="redemption_ledger",
        description="Coupon catalog (Marketing > Coupons), till validation, the append-only redemption ledger, "
                    "coupon and campaign figures, and customers' price sensitivity.",
    )

    def page_size(limit: int) -> int:
        return min(limit, settings.page_size_max)

    @app.exception_handler(InvalidInput)
    async def invalid_input(_: Request, exc: InvalidInput) -> JSONResponse:
        return JSONResponse({"detail": f"invalid request: {exc.field}: {exc.message}",
                             "errors": [{"field": exc.field, "message": exc.message}]}, status_code=422)

    @app.exception_handler(CouponNotFound)
    async def not_found(_: Request, exc: CouponNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(CouponExists)
    async def exists(_: Request, exc: CouponExists) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    # --- the catalog (Marketing > Coupons) -----------------------------------------------------------------

    @app.post("/v1/coupons", status_code=201, response_model=s.CouponOut, tags=["catalog"], summary="Create a coupon")
    async def create_coupon(body: s.CreateCoupon, ledger: Ledger, who: Manager) -> s.CouponOut:
        entry = await ledger.create_coupon(body.code, body.terms(tz), actor=who.key_id)
        return s.CouponOut.of(entry, tz)

    @app.get("/v1/coupons", response_model=s.CouponPage, tags=["catalog"], summary="List coupons, by code")
    async def list_coupons(ledger: Ledger, _: Reader, limit: LimitQuery = 50, cursor: CursorQuery = None,
                           active: bool | None = None,
                           campaign: Annotated[str | None, Query(pattern=CAMPAIGN_PATTERN)] = None) -> s.CouponPage:
        after = _cursor_parts(cursor, 1)[0] if cursor else None
        size = page_size(limit)
        entries = await ledger.list_coupons(after=after, limit=size + 1, active=active, campaign=campaign)
        more = len(entries) > size
        entries = entries[:size]
        return s.CouponPage(items=[s.CouponOut.of(e, tz) for e in entries],
                            next_cursor=s.encode_cursor(entries[-1].coupon.code) if more else None)

    @app.post("/v1/coupons/validate", response_model=s.ValidationOut, tags=["till"],
              summary="May the till accept this code now for this customer, and what would it take off?")
    async def validate(body: s.ValidateCoupon, ledger: Ledger, _: Reader) -> s.ValidationOut:
        answer = await ledger.validate(body.code, customer_id=body.customer_id, subtotal=body.subtotal,
                                       currency=body.currency)
        return s.ValidationOut.of(answer, normalise_code(body.code), body.currency)

    @app.get("/v1/coupons/{code}", response_model=s.CouponOut, tags=["catalog"], summary="One coupon")
    async def get_coupon(code: CodeParam, ledger: Ledger, _: Reader) -> s.CouponOut:
        return s.CouponOut.of(await ledger.coupon(code), tz)

    @app.put("/v1/coupons/{code}", response_model=s.CouponOut, tags=["catalog"],
             summary="Replace a coupon's terms (a new revision; redemptions keep the terms they were used under)")
    async def replace_coupon(code: CodeParam, body: s.ReplaceCoupon, ledger: Ledger, who: Manager) -> s.CouponOut:
        if body.code is not None and normalise_code(body.code) != normalise_code(code):
            raise InvalidInput("code", "the code cannot change (it differs from the one in the path)")
        terms = body.terms(tz)
        keep_active = "active" not in body.model_fields_set  # replacing the terms does not reactivate a coupon
        entry = await ledger.change_coupon(code, lambda t: replace(terms, active=t.active) if keep_active else terms,
                                           what="update", actor=who.key_id)
        return s.CouponOut.of(entry, tz)

    @app.patch("/v1/coupons/{code}", response_model=s.CouponOut, tags=["catalog"],
               summary="Change some of a coupon's terms")
    async def patch_coupon(code: CodeParam, body: s.PatchCoupon, ledger: Ledger, who: Manager) -> s.CouponOut:
        entry = await ledger.change_coupon(code, lambda t: body.apply(t, tz), what="update", actor=who.key_id)
        return s.CouponOut.of(entry, tz)

    @app.post("/v1/coupons/{code}/deactivate", response_model=s.CouponOut, tags=["catalog"],
              summary="Deactivate a coupon (the till refuses it; POS redemptions are still recorded, flagged)")
    async def deactivate(code: CodeParam, ledger: Ledger, who: Manager) -> s.CouponOut:
        return s.CouponOut.of(await ledger.set_active(code, False, actor=who.key_id), tz)

    @app.post("/v1/coupons/{code}/activate", response_model=s.CouponOut, tags=["catalog"],
              summary="Activate a coupon again")
    async def activate(code: CodeParam, ledger: Ledger, who: Manager) -> s.CouponOut:
        return s.CouponOut.of(await ledger.set_active(code, True, actor=who.key_id), tz)

    # --- the ledger ----------------------------------------------------------------------------------------

    @app.get("/v1/customers/{customer_id}/coupon-redemptions", response_model=s.RedemptionPage, tags=["ledger"],
             summary="A customer's redemptions, newest first by when used; reversed ones marked")
    async def customer_redemptions(customer_id: CustomerParam, ledger: Ledger, _: Reader, limit: LimitQuery = 20,
                                   cursor: CursorQuery = None) -> s.RedemptionPage:
        size = page_size(limit)
        rows = await ledger.customer_redemptions(customer_id, before=_time_cursor(cursor), limit=size + 1)
        return s.RedemptionPage(**_page(rows, size, tz))

    @app.get("/v1/reports/flagged-redemptions", response_model=s.FlaggedReport, tags=["reports"],
             summary="Redemptions recorded although they broke a catalog rule, newest first")
    async def flagged(ledger: Ledger, _: Reader, flag: Flag | None = None,
                      coupon_code: Annotated[str | None, Query(max_length=64)] = None, limit: LimitQuery = 50,
                      cursor: CursorQuery = None) -> s.FlaggedReport:
        size = page_size(limit)
        rows, counts = await ledger.flagged_redemptions(flag=flag.value if flag else None, coupon_code=coupon_code,
                                                        before=_time_cursor(cursor), limit=size + 1)
        return s.FlaggedReport(**_page(rows, size, tz), counts=counts)

    @app.get("/v1/reports/held-reversals", response_model=s.HeldReversalsReport, tags=["reports"],
             summary="Reversals still waiting for their redemption to arrive, oldest first")
    async def held(ledger: Ledger, _: Reader, limit: LimitQuery = 100) -> s.HeldReversalsReport:
        items = await ledger.held_reversals(limit=page_size(limit))
        return s.HeldReversalsReport(items=[s.HeldReversalOut.of(h, tz) for h in items])

    @app.get("/v1/coupons/{code}/stats", response_model=s.CouponFiguresOut, tags=["reports"],
             summary="Redemptions, reversals, unique customers and discount given for one coupon")
    async def coupon_stats(code: CodeParam, ledger: Ledger, _: Reader, used_from: str | None = None,
                           used_until: str | None = None) -> s.CouponFiguresOut:
        start, end = _period(used_from, used_until, settings)
        found = await ledger.coupon_figures(code, used_from=start, used_until=end)
        return s.CouponFiguresOut(coupon_code=normalise_code(code), used_from=start, used_until=end,
                                  **s.FiguresOut.of(found))

    @app.get("/v1/campaigns/{campaign}/stats", response_model=s.CampaignFiguresOut, tags=["reports"],
             summary="The same figures for a campaign (as each redemption's coupon stood), and per coupon")
    async def campaign_stats(campaign: CampaignParam, ledger: Ledger, _: Reader, used_from: str | None = None,
                             used_until: str | None = None) -> s.CampaignFiguresOut:
        start, end = _period(used_from, used_until, settings)
        found = await ledger.campaign_figures(campaign, used_from=start, used_until=end)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no coupon or redemption in campaign {campaign}")
        whole, by_code = found
        return s.CampaignFiguresOut(
            campaign=campaign, used_from=start, used_until=end, **s.FiguresOut.of(whole),
            coupons=[s.CouponFiguresOut(coupon_code=code, **s.FiguresOut.of(f)) for code, f in by_code.items()],
        )

    @app.get("/v1/customers/{customer_id}/coupon-insights", response_model=s.InsightsOut, tags=["insights"],
             summary="Price sensitivity: share of purchases made with a coupon, coupon-only buyer")
    async def coupon_insights(customer_id: CustomerParam, ledger: Ledger, _: Reader) -> s.InsightsOut:
        row = await ledger.customer_insights(customer_id)
        return s.InsightsOut.of(row, settings.coupon_only_threshold, settings.coupon_only_min_purchases)

    @app.post("/v1/coupon-insights/sweep", tags=["insights"], summary="Re-evaluate aged windows now")
    async def sweep(ledger: Ledger, _: Manager) -> dict[str, int]:
        return {"published": await ledger.sweep_insights()}

    return app


def _cursor_parts(cursor: str, n: int) -> list[str]:
    try:
        parts = s.decode_cursor(cursor)
    except ValueError as exc:
        raise InvalidInput("cursor", str(exc)) from None
    if len(parts) != n:
        raise InvalidInput("cursor", "not a cursor from a previous page")
    return parts


def _time_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    try:
        return s.time_cursor(cursor)
    except ValueError as exc:
        raise InvalidInput("cursor", str(exc)) from None


def _page(rows: Page, size: int, tz: ZoneInfo) -> dict[str, object]:
    more = len(rows) > size
    rows = rows[:size]
    last = rows[-1][0] if rows else None
    return {"items": [s.RedemptionOut.of(r, v, tz) for r, v in rows],
            "next_cursor": s.encode_cursor(last.used_at, last.redemption_id) if more and last else None}


def _period(used_from: str | None, used_until: str | None, settings: Settings) -> tuple[datetime | None, ...]:
    found = []
    for name, value, end in (("used_from", used_from, False), ("used_until", used_until, True)):
        try:
            moment = s.parse_moment(value) if value is not None else None
        except ValueError as exc:
            raise InvalidInput(name, str(exc)) from None
        found.append(s.as_instant(moment, settings.tz, end=end))
    return tuple(found)


def asyncapi(settings: Settings) -> AsyncAPI:
    """The Kafka side of the service, for the generated AsyncAPI document."""
    broker = KafkaBroker(settings.kafka_bootstrap_servers)

    @broker.subscriber(topics.POS_COUPON_REDEMPTIONS, group_id=settings.consumer_group, title="on_coupon_event",
                       description="coupon.redeemed appends a ledger entry (flagged if it broke a catalog rule); "
                                   "coupon.redemption_reversed appends a reversal (held until its redemption arrives)")
    async def on_coupon_event(event: CouponEvent) -> None: ...

    @broker.subscriber(topics.POS_SALES, group_id=settings.consumer_group, title="on_sale_event",
                       description="sale.completed feeds price sensitivity; sale.voided reverses the invoice's "
                                   "redemptions; sale.returned is ignored")
    async def on_sale_event(event: SaleEvent) -> None: ...

    broker.publisher(topics.COUPON_REDEMPTIONS, schema=CouponRedemptionRecorded, title="to_coupon_redemptions",
                     description="One row of a customer's Coupon Usage History as it stands now, re-sent when "
                                 "reversed (key: customer_id; version 1 recorded, 2 reversed)")
    broker.publisher(topics.COUPON_REDEMPTIONS, schema=CustomerCouponInsightsChanged,
                     title="to_coupon_insights",
                     description="A customer's price sensitivity (key: customer_id; version grows per customer)")
    return AsyncAPI(broker, title="redemption_ledger", version="1.0.0")
