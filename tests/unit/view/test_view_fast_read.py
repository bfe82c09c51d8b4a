"""The read route's fast path (web.FastRead) answers exactly as the FastAPI route does, refusals included.

Two apps with the same settings and a fake reader (no Redis): one as built (fast path), one with the route's
original FastAPI handler put back. Every request is sent to both; status, the headers that matter and the
body must be the same, and the rate limit must be charged once per request on either path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.marketing_view import domain
from services.marketing_view.app import create_app
from services.marketing_view.config import Settings
from services.marketing_view.views import ReadModelUnavailable
from services.marketing_view.web import FastRead
from shared.auth import hash_key

READ_KEY, MANAGE_KEY = "fast-read-test-read-key", "fast-read-test-manage-key"
KEYS = f"{hash_key(READ_KEY)}=read;{hash_key(MANAGE_KEY)}=manage"
ROUTE = "/v1/customers/{customer_id}/marketing"
CURSOR = domain.Cursor(1767261600000, "A" * domain.DIGEST_CHARS).encode()


class FakeReader:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any]] = []
        self.unavailable = False

    async def read(self, customer_id: str, *, cursor: domain.Cursor | None = None, limit: int | None = None,
                   now: datetime | None = None) -> dict[str, Any]:
        self.calls.append((customer_id, cursor, limit))
        if self.unavailable:
            raise ReadModelUnavailable("rebuilding")
        return {"customer_id": customer_id, "as_of": "2026-12-03T00:00:00Z", "segments": [],
                "coupon_usage": {"items": [], "next_cursor": None, "limit": limit,
                                 "cursor": cursor.encode() if cursor else None},
                "gift_cards": [], "insights": {}}


def build(*, fast: bool, burst: int = 1000) -> FastAPI:
    app = create_app(Settings(api_keys=KEYS, marketing_api_key=None, api_keys_file=None, rate_limit_per_s=0.001,
                              rate_limit_burst=burst))
    app.state.reader = FakeReader()
    route = next(r for r in app.router.routes if isinstance(r, APIRoute) and r.path == ROUTE)
    assert isinstance(route.app, FastRead)
    if not fast:
        route.app = route.app.slow
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://view")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


CASES: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/v1/customers/C-1/marketing", bearer(READ_KEY)),
    ("HEAD", "/v1/customers/C-1/marketing", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing", {}),
    ("GET", "/v1/customers/C-1/marketing", {"Authorization": "Basic abc"}),
    ("GET", "/v1/customers/C-1/marketing", {"Authorization": "Bearer "}),
    ("GET", "/v1/customers/C-1/marketing", bearer("not-a-key")),
    ("GET", "/v1/customers/C-1/marketing", {"Authorization": f"bearer   {READ_KEY}  "}),
    ("GET", "/v1/customers/C-1/marketing", bearer(MANAGE_KEY)),
    ("GET", "/v1/customers/C-1/marketing?limit=0", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing?limit=0", {}),
    ("GET", "/v1/customers/C-1/marketing?limit=abc", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing?limit=-3", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing?limit=", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing?limit=+5", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing?limit=5", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing?limit=0005", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing?limit=5000", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing?limit=abc&limit=7", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing?limit=7&limit=abc", bearer(READ_KEY)),
    ("GET", f"/v1/customers/C-1/marketing?cursor={CURSOR}&limit=3", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing?cursor=", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing?cursor=not-a-cursor", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing?other=1&limit=2", bearer(READ_KEY)),
    ("GET", "/v1/customers/a%20b/marketing", bearer(READ_KEY)),
    ("GET", "/v1/customers/-x/marketing", bearer(READ_KEY)),
    ("GET", "/v1/customers/" + "x" * 80 + "/marketing", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-4111111111111111/marketing", bearer(READ_KEY)),
    ("GET", "/v1/customers/C-1/marketing", {**bearer(READ_KEY), "If-None-Match": "*"}),
]
COMPARED = ("content-type", "etag", "cache-control", "vary", "retry-after", "www-authenticate", "content-length")


def same(a: httpx.Response, b: httpx.Response) -> None:
    assert a.status_code == b.status_code, (a.text, b.text)
    assert {h: a.headers.get(h) for h in COMPARED} == {h: b.headers.get(h) for h in COMPARED}
    assert a.content == b.content


@pytest.mark.parametrize(("method", "url", "headers"), CASES, ids=[f"{m} {u} {sorted(h)}" for m, u, h in CASES])
async def test_the_fast_path_answers_as_the_route_does(method: str, url: str, headers: dict[str, str]) -> None:
    fast_app, slow_app = build(fast=True), build(fast=False)
    async with client(fast_app) as fast, client(slow_app) as slow:
        same(await fast.request(method, url, headers=headers), await slow.request(method, url, headers=headers))
    assert fast_app.state.reader.calls == slow_app.state.reader.calls


async def test_not_modified_and_unavailable_are_the_same_on_both_paths() -> None:
    fast_app, slow_app = build(fast=True), build(fast=False)
    async with client(fast_app) as fast, client(slow_app) as slow:
        first = await fast.get("/v1/customers/C-1/marketing", headers=bearer(READ_KEY))
        headers = {**bearer(READ_KEY), "If-None-Match": f'W/"x", {first.headers["etag"]}'}
        a = await fast.get("/v1/customers/C-1/marketing", headers=headers)
        same(a, await slow.get("/v1/customers/C-1/marketing", headers=headers))
        assert a.status_code == 304
        fast_app.state.reader.unavailable = slow_app.state.reader.unavailable = True
        a = await fast.get("/v1/customers/C-1/marketing", headers=bearer(READ_KEY))
        same(a, await slow.get("/v1/customers/C-1/marketing", headers=bearer(READ_KEY)))
        assert a.status_code == 503


@pytest.mark.parametrize("fast", [True, False])
async def test_the_rate_limit_is_charged_once_per_request_on_either_path(fast: bool) -> None:
    app = build(fast=fast, burst=3)
    async with client(app) as c:
        statuses = [(await c.get(url, headers=bearer(READ_KEY))).status_code
                    for url in ("/v1/customers/C-1/marketing", "/v1/customers/C-1/marketing?limit=abc",
                                "/v1/customers/C-1/marketing?limit=2", "/v1/customers/C-1/marketing")]
        refused = await c.get("/v1/customers/C-1/marketing", headers=bearer(READ_KEY))
    assert statuses == [200, 422, 200, 429]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "rate limit" in refused.json()["detail"]


async def test_the_common_request_never_reaches_the_fastapi_handler() -> None:
    app = build(fast=True)
    route = next(r for r in app.router.routes if isinstance(r, APIRoute) and r.path == ROUTE)
    used: list[str] = []
    slow = route.app.slow

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        used.append(scope["query_string"].decode())
        await slow(scope, receive, send)

    route.app.slow = counting
    async with client(app) as c:
        for url in ("/v1/customers/C-1/marketing", f"/v1/customers/C-1/marketing?limit=3&cursor={CURSOR}"):
            assert (await c.get(url, headers=bearer(READ_KEY))).status_code == 200
        assert (await c.get("/v1/customers/C-1/marketing?limit=x", headers=bearer(READ_KEY))).status_code == 422
    assert used == ["limit=x"]
