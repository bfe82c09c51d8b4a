"""The read API and the page on the real stack: pagination, ETag, auth, read-only, unknown and bad ids."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.marketing_view.app import create_app
from tests.conftest import Stack
from tests.helpers import eventually, running
from tests.integration.view.builders import card, publish_domain, redemption, segments
from tests.integration.view.conftest import View, view_settings


async def test_coupon_history_is_newest_first_with_cursor_pagination(view: View, stack: Stack, topics: str) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    c = "C-PAGES-1"
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    moments = [start + timedelta(hours=i) for i in range(23)] + [start + timedelta(hours=5)] * 2  # two ties
    events = [redemption(c, f"r-{i:03d}", used_at=m, invoice=f"INV-{i:03d}") for i, m in enumerate(moments)]
    rng.shuffle(events)
    await publish_domain(stack.kafka, topics, events)

    async def all_there() -> bool:
        return len((await view.tab(c, limit=100))["coupon_usage"]["items"]) == 25

    await eventually(all_there, timeout_s=20, what="25 redemptions projected")
    pages, cursor = [], None
    while True:
        body = await view.tab(c, limit=10, **({"cursor": cursor} if cursor else {}))
        pages.append(body["coupon_usage"]["items"])
        cursor = body["coupon_usage"]["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    seen = [i["invoice_number"] for p in pages for i in p]
    assert len(set(seen)) == 25, "no row twice, none missing"
    used = [datetime.fromisoformat(i["used_at"]) for p in pages for i in p]
    assert used == sorted(used, reverse=True), "newest first whatever the arrival order"
    first_page = await view.tab(c)
    assert len(first_page["coupon_usage"]["items"]) == 20, "default page size"
    capped = await view.tab(c, limit=5000)
    assert len(capped["coupon_usage"]["items"]) == 25, "limit is capped (at 100), not an error"
    bad = await view.get(c, cursor="not-a-cursor")
    assert bad.status_code == 400 and "cursor" in bad.json()["detail"]
    assert (await view.get(c, limit=0)).status_code == 422


async def test_etag_and_304(view: View, stack: Stack, topics: str) -> None:
    c = "C-ETAG-1"
    await publish_domain(stack.kafka, topics, [segments(c, 1, ("vip", "VIP", "2026-01-02", "manual", "x"))])

    async def projected() -> httpx.Response | None:
        response = await view.get(c)
        return response if response.json()["segments"] else None

    first = await eventually(projected, timeout_s=20, what="segments projected")
    tag = first.headers["etag"]
    assert tag.startswith('"') and first.headers["cache-control"] == "private, no-cache"
    not_modified = await view.client.get(f"/v1/customers/{c}/marketing", headers={**view.auth, "If-None-Match": tag})
    assert not_modified.status_code == 304 and not_modified.content == b"" and not_modified.headers["etag"] == tag
    await publish_domain(stack.kafka, topics, [segments(c, 2, ("vip", "VIP", "2026-01-02", "manual", "changed"))])

    async def changed() -> httpx.Response | None:
        response = await view.client.get(f"/v1/customers/{c}/marketing", headers={**view.auth, "If-None-Match": tag})
        return response if response.status_code == 200 else None

    fresh = await eventually(changed, timeout_s=20, what="a new ETag after a change")
    assert fresh.headers["etag"] != tag and fresh.json()["segments"][0]["notes"] == "changed"


async def test_unknown_customer_is_empty_and_malformed_id_is_400(view: View) -> None:
    body = await view.tab("C-NEVER-HEARD-OF")
    assert body["segments"] == [] and body["gift_cards"] == []
    assert body["coupon_usage"] == {"items": [], "next_cursor": None}
    assert body["insights"] == {"gift_card_balances": [], "coupon_price_sensitivity": None}
    for bad in ["-starts-with-dash", "has space", "x" * 65, "braces{1}", "é"]:
        response = await view.get(bad)
        assert response.status_code == 400, bad
        assert "customer_id" in response.json()["detail"]


async def test_authentication_and_scopes(stack: Stack, topics: str, isolation: str) -> None:
    read_only, manage_only = "read-key-" + isolation, "manage-key-" + isolation

    def entry(key: str, scopes: str) -> str:
        return f"sha256:{hashlib.sha256(key.encode()).hexdigest()}={scopes}"

    settings = view_settings(isolation, api_keys=f"{entry(read_only, 'read')};{entry(manage_only, 'manage')}")
    async with running(create_app(settings)) as client:
        url = "/v1/customers/C-AUTH-1/marketing"

        async def serving() -> bool:
            response = await client.get(url, headers={"Authorization": f"Bearer {read_only}"})
            return response.status_code == 200

        await eventually(serving, timeout_s=30, what="serving")
        assert (await client.get(url)).status_code == 401
        assert (await client.get(url, headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await client.get(url, headers={"Authorization": "Basic abc"})).status_code == 401
        assert (await client.get(url, headers={"Authorization": f"Bearer {manage_only}"})).status_code == 403
        # 401 comes before 400: nothing is said about ids to a stranger
        assert (await client.get("/v1/customers/bad id/marketing")).status_code == 401
        page = "/customers/C-AUTH-1/marketing"
        assert (await client.get(page, headers={"Authorization": f"Bearer {manage_only}"})).status_code == 403
        assert (await client.get(page, params={"key": manage_only})).status_code == 403


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_read_only_on_every_path(view: View, method: str) -> None:
    for path in ["/v1/customers/C-1/marketing", "/customers/C-1/marketing", "/metrics", "/healthz", "/readyz",
                 "/no/such/path", "/"]:
        response = await view.client.request(method, path, headers=view.auth)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == "GET, HEAD"


async def test_head_works_wherever_get_does(view: View) -> None:
    for path in ["/v1/customers/C-1/marketing", "/healthz", "/metrics"]:
        get = await view.client.get(path, headers=view.auth)
        head = await view.client.head(path, headers=view.auth)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b""
    assert (await view.client.head("/v1/customers/C-1/marketing")).status_code == 401


async def test_the_page_with_a_browser_session(view: View, stack: Stack, topics: str) -> None:
    c = "C-PAGE-1"
    await publish_domain(stack.kafka, topics, [
        segments(c, 1, ("vip", "VIP <b>", "2026-01-02", "manual", "<script>alert(1)</script>")),
        redemption(c, "r-old", invoice="INV-OLD", used_at="2026-01-01T10:00:00-05:00"),
        redemption(c, "r-new", invoice="INV-NEW", used_at="2026-06-01T10:00:00-04:00"),
        card("gc-page-1", c),
    ])

    async def projected() -> bool:
        tab = await view.tab(c)
        return len(tab["coupon_usage"]["items"]) == 2 and len(tab["gift_cards"]) == 1  # three topics, any order

    await eventually(projected, timeout_s=20, what="projected")
    url = f"/customers/{c}/marketing"
    anonymous = await view.client.get(url)
    assert anonymous.status_code == 401 and 'name="key"' in anonymous.text
    assert (await view.client.get(url, params={"key": "wrong"})).status_code == 401
    login = await view.client.get(url, params={"key": view.auth["Authorization"].split()[1]})
    assert login.status_code == 303 and login.headers["location"] == url
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and view.auth["Authorization"].split()[1] not in cookie
    view.client.cookies.clear()
    page = await view.client.get(url, headers={"Cookie": f"mv_session={login.cookies['mv_session']}"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert html.index("INV-NEW") < html.index("INV-OLD"), "newest coupon first"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert 'href="https://pos.example/invoices/INV-NEW"' in html
    assert "•••• •••• •••• 4821" in html
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert (await view.client.get(url, headers=view.auth)).status_code == 200, "Bearer works on the page too"
    assert (await view.client.get("/customers/bad id/marketing", headers=view.auth)).status_code == 400
