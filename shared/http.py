"""What every service's HTTP side has: auth, /healthz, /readyz, /metrics, request metrics, clear 4xx."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import metrics
from shared.auth import KeyStore
from shared.ratelimit import TokenBucket
from shared.settings import CommonSettings

Check = Callable[[], Awaitable[Any]]
CHECK_TIMEOUT_S = 2.0


def create_http_app(
    *, service: str, settings: CommonSettings, title: str, description: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
) -> FastAPI:
    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)
    app.state.service = service
    app.state.keys = KeyStore.from_settings(settings)
    app.state.checks = {}
    app.state.rate_limiter = TokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst)
    _add_ops_routes(app)
    _refuse_card_numbers_in_paths(app)
    _add_request_metrics(app, service)
    _add_error_handlers(app)
    _document_errors(app)
    return app


def _document_errors(app: FastAPI) -> None:
    """The OpenAPI document describes the 422 these services really send (``detail`` a sentence, ``errors`` a
    list of field/message pairs), not FastAPI's default shape, so clients and schema checks can rely on it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "HTTPValidationError" in components:
            components["HTTPValidationError"] = {
                "title": "HTTPValidationError", "type": "object", "required": ["detail"],
                "properties": {
                    "detail": {"type": "string", "title": "Detail"},
                    "errors": {"type": "array", "title": "Errors", "items": {
                        "type": "object", "required": ["field", "message"],
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
                },
            }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def add_check(app: FastAPI, name: str, check: Check) -> None:
    """Register a readiness check: it passes when it returns without raising, within 2 s."""
    app.state.checks[name] = check


def _add_ops_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["ops"], summary="Alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Dependencies reachable", responses={503: {"description": "Not ready"}})
    async def readyz() -> JSONResponse:
        checks: dict[str, Check] = app.state.checks
        results = await asyncio.gather(*(_run_check(c) for c in checks.values()))
        report = dict(zip(checks, results, strict=True))
        for name, result in report.items():
            metrics.DEPENDENCY_UP.labels(app.state.service, name).set(1 if result == "ok" else 0)
        ready = all(r == "ok" for r in report.values())
        return JSONResponse({"status": "ready" if ready else "unready", "checks": report},
                            status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _run_check(check: Check) -> str:
    try:
        result = await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return "timeout"
    except Exception as exc:
        return f"failed: {type(exc).__name__}"
    return result if isinstance(result, str) else "ok"


# A run of 12 or more digits in a path segment looks like a full card number (generated ones have 16 digits;
# customer ids like "C-10042", invoice numbers and job ids are far shorter). Refused before routing and
# authentication, so such a URL never reaches a handler, a log line with the id, or the access log's route.
CARD_LIKE_IN_PATH = re.compile(r"[0-9]{12,}")


def _refuse_card_numbers_in_paths(app: FastAPI) -> None:
    app.add_middleware(RefuseCardLikePaths)


class RefuseCardLikePaths:
    """ASGI middleware (plain ASGI: BaseHTTPMiddleware costs a task group and two streams per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and CARD_LIKE_IN_PATH.search(scope.get("root_path", "") + scope["path"]):
            message = ("looks like a card number: ids (card_id, customer_id, ...) are never card numbers, and card "
                       "numbers never go in a URL (look a card up with POST /v1/gift-cards/lookup)")
            response = JSONResponse({"detail": f"invalid request: path: {message}",
                                     "errors": [{"field": "path", "message": message}]}, status_code=422)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _add_request_metrics(app: FastAPI, service: str) -> None:
    app.add_middleware(RequestMetrics, service=service)


class RequestMetrics:
    """Duration and count of every request, labelled by route template (never the raw path) and status."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            template = getattr(scope.get("route"), "path", "<unmatched>")
            method = scope["method"]
            metrics.HTTP_SECONDS.labels(self.service, method, template).observe(time.perf_counter() - started)
            metrics.HTTP_REQUESTS.labels(self.service, method, template, str(status)).inc()


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors[:5])
        return JSONResponse({"detail": f"invalid request: {summary}", "errors": errors}, status_code=422)

    @app.exception_handler(asyncpg.CharacterNotInRepertoireError)
    @app.exception_handler(asyncpg.UntranslatableCharacterError)
    async def unstorable_text(_: Request, exc: asyncpg.PostgresError) -> JSONResponse:
        # NUL (\u0000) passes JSON and URL decoding but Postgres text cannot hold it: the client's input is wrong.
        return JSONResponse({"detail": "invalid request: text contains a character that cannot be stored "
                                       "(NUL, \\u0000)"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
