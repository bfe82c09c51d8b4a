"""The Marketing tab in a real browser: headless Chromium against the running service (uvicorn on a real
port, fed through real Kafka and Redis with the test's own topics), grids' rows and order checked in the
DOM the browser built, and a screenshot saved under tests/e2e/view/artifacts/."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis

from services.marketing_view.app import create_app
from tests.conftest import Stack
from tests.e2e.view.browser import Grids, dump_dom, screenshot
from tests.helpers import eventually
from tests.integration.view.builders import card, insights, publish_domain, redemption, segments
from tests.integration.view.conftest import view_settings, wipe

ARTIFACTS = Path(__file__).parent / "artifacts"
C = "C-10042"


@pytest.fixture
async def live_view(stack: Stack, topics: str, isolation: str) -> AsyncIterator[str]:
    """marketing_view served by uvicorn on a free port, as in production (not an in-memory transport)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = view_settings(isolation, invoice_url_template="https://pos.example/invoices/{invoice_number}")
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        async def started() -> bool:
            return server.started

        await eventually(started, timeout_s=30, what="uvicorn started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        redis = Redis.from_url(stack.redis_url)
        await wipe(redis, settings.key_prefix)
        await redis.aclose()


async def test_the_tab_in_headless_chromium(live_view: str, stack: Stack, topics: str) -> None:
    today = datetime.now(ZoneInfo("America/New_York")).date()
    used = datetime(2026, 11, 28, 19, 3, 12, tzinfo=UTC)
    events = [
        segments(C, 2, ("high-value", "High Value", "2026-11-28", "automatic",
                        "Spent $1,240.50 in the last 365 days (rule: at least $1,000.00)"),
                 ("vip", "VIP", "2026-01-02", "manual", "Owner's friend <call first>")),
        # published oldest-last on purpose: the grid sorts by date used, not by arrival
        redemption(C, "r-1", code="WELCOME15", name="Welcome 15% off", value="15", amount="7.35",
                   used_at=used - timedelta(days=200), invoice="INV-2026-000011"),
        redemption(C, "r-4", code="FALL10", name="Fall 10% off", value="10", amount="10.20",
                   used_at=used, invoice="INV-2026-000184"),
        redemption(C, "r-3", version=2, code="SAVE5", name="$5 off $50", kind="amount", value="5.00",
                   amount="5.00", used_at=used - timedelta(days=30), invoice="INV-2026-000150", status="reversed",
                   reversed_at=used - timedelta(days=29)),
        redemption(C, "r-2", code="SAVE5", name="$5 off $50", kind="amount", value="5.00", amount="3.20",
                   used_at=used - timedelta(days=90), invoice="INV-2026-000097"),
        card("gc-active", C, last4="4821", original="50.00", current="20.00", issued="2026-01-02",
             expires=(today + timedelta(days=20)).isoformat()),
        card("gc-expired", C, last4="1177", original="25.00", current="25.00", issued="2025-01-10",
             expires=(today - timedelta(days=1)).isoformat()),
        card("gc-empty", C, last4="9034", original="100.00", current="0.00", issued="2025-06-01", expires=None),
        insights(C, 3, purchases=12, with_coupon=4, share="0.3333"),
    ]
    await publish_domain(stack.kafka, topics, events)
    key = stack.api_key
    async with httpx.AsyncClient(base_url=live_view, timeout=5) as client:

        async def projected() -> bool:
            r = await client.get(f"/v1/customers/{C}/marketing", headers={"Authorization": f"Bearer {key}"})
            body = r.json() if r.status_code == 200 else {}
            return (len(body.get("coupon_usage", {}).get("items", [])) == 4 and len(body["gift_cards"]) == 3
                    and body["insights"]["coupon_price_sensitivity"] is not None)

        await eventually(projected, timeout_s=30, what="events projected")

    url = f"{live_view}/customers/{C}/marketing"
    signed_in = f"{url}?key={quote(key, safe='')}"
    dom = Grids(await dump_dom(signed_in))

    assert dom.ids["customer-id"] == C
    assert dom.headers["segments-grid"] == ["Segment Name", "Date Assigned", "Assigned By", "Notes"]
    assert dom.rows["segments-grid"] == [
        ["High Value", "Nov 28, 2026", "Automatic", "Spent $1,240.50 in the last 365 days (rule: at least $1,000.00)"],
        ["VIP", "Jan 2, 2026", "Manual", "Owner's friend <call first>"],
    ]
    assert dom.headers["coupons-grid"] == ["Coupon Code", "Coupon Name", "Discount Amount", "Date Used",
                                           "Invoice Number"]
    assert [r[4] for r in dom.rows["coupons-grid"]] == ["INV-2026-000184", "INV-2026-000150", "INV-2026-000097",
                                                        "INV-2026-000011"], "newest coupon first"
    assert dom.rows["coupons-grid"][0] == ["FALL10", "Fall 10% off", "10% ($10.20)", "Nov 28, 2026, 2:03 PM EST",
                                           "INV-2026-000184"]
    assert dom.rows["coupons-grid"][1][0] == "SAVE5 Reversed"
    assert dom.rows["coupons-grid"][2][2] == "$5.00 ($3.20)"
    assert dom.links["coupons-grid"] == [f"https://pos.example/invoices/INV-2026-{n}"
                                         for n in ("000184", "000150", "000097", "000011")]
    assert dom.headers["gift-cards-grid"] == ["Card Number", "Original Balance", "Current Balance", "Status",
                                              "Issue Date", "Expiration Date"]
    cards = {r[0]: r for r in dom.rows["gift-cards-grid"]}
    assert [r[0] for r in dom.rows["gift-cards-grid"]] == ["•••• •••• •••• 4821", "•••• •••• •••• 9034",
                                                           "•••• •••• •••• 1177"], "newest card first"
    assert cards["•••• •••• •••• 4821"][1:4] == ["$50.00", "$20.00", "Active"]
    assert cards["•••• •••• •••• 1177"][3] == "Expired"
    assert cards["•••• •••• •••• 9034"][3:] == ["Fully redeemed", "Jun 1, 2025", ""]
    assert "$20.00" in dom.ids["gift-card-balance"] and "$20.00" in dom.ids["expiring-balance"]
    assert "33%" in dom.ids["coupon-share"] and "4 of 12 purchases" in dom.ids["coupon-share"]

    stranger = Grids(await dump_dom(url))
    assert "Sign in" in stranger.ids.get("message", "") or "sign in" in stranger.ids.get("message", "").lower()
    assert not stranger.rows, "no grid without authentication"

    empty = Grids(await dump_dom(f"{live_view}/customers/C-NOBODY-{topics.strip('.')}/marketing?key={quote(key)}"))
    assert empty.rows["segments-grid"] == [["This customer is not in any segment yet."]]
    assert empty.rows["coupons-grid"] == [["No coupons used yet."]]
    assert empty.rows["gift-cards-grid"] == [["No gift cards linked to this customer."]]

    shot = await screenshot(signed_in, ARTIFACTS / "marketing_tab.png")
    print(f"screenshot: {shot}")
