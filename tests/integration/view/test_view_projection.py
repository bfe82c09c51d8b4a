"""Every domain event kind, duplicates, out-of-order delivery and card re-assignment, through real Kafka
into real Redis, read back through the API."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.conftest import Stack
from tests.helpers import eventually
from tests.integration.view.builders import card, insights, publish_domain, redemption, segments
from tests.integration.view.conftest import View, drained

SPEC_KEYS = {"customer_id", "as_of", "segments", "coupon_usage", "gift_cards"}


async def until(view: View, customer_id: str, check, what: str) -> dict:  # type: ignore[no-untyped-def]
    async def probe() -> dict | None:
        body = await view.tab(customer_id)
        return body if check(body) else None

    return await eventually(probe, timeout_s=20, what=what)


async def test_every_domain_event_kind_shows_in_the_spec_shape(view: View, stack: Stack, topics: str) -> None:
    c = "C-ALL-1"
    await publish_domain(stack.kafka, topics, [
        segments(c, 1, ("high-value", "High Value", "2026-11-28", "automatic",
                        "Spent $1,240.50 in the last 365 days (rule: at least $1,000.00)")),
        redemption(c, "r-1", code="FALL10", invoice="INV-2026-000184"),
        insights(c, 1, purchases=12, with_coupon=5, share="0.4167"),
        card("gc-all-1", c, original="50.00", current="20.00", issued="2026-01-02", expires="2099-01-02"),
    ])
    body = await until(view, c, lambda b: b["segments"] and b["coupon_usage"]["items"] and b["gift_cards"]
                       and b["insights"]["coupon_price_sensitivity"], "all four kinds projected")
    assert SPEC_KEYS <= set(body)
    assert body["customer_id"] == c
    assert datetime.fromisoformat(body["as_of"].replace("Z", "+00:00")).tzinfo is not None
    assert body["segments"] == [{"segment_id": "high-value", "name": "High Value", "date_assigned": "2026-11-28",
                                 "assigned_by": "automatic",
                                 "notes": "Spent $1,240.50 in the last 365 days (rule: at least $1,000.00)"}]
    item = body["coupon_usage"]["items"][0]
    fields = ("coupon_code", "coupon_name", "used_at", "invoice_number", "invoice_url", "status")
    assert {k: item[k] for k in fields} == {
        "coupon_code": "FALL10", "coupon_name": "Fall 10% off", "used_at": "2026-11-28T14:03:12-05:00",
        "invoice_number": "INV-2026-000184", "invoice_url": "https://pos.example/invoices/INV-2026-000184",
        "status": "redeemed"}
    assert item["discount"] == {"type": "percent", "value": "10", "amount": "10.20", "currency": "USD",
                                "display": "10% ($10.20)"}
    assert body["coupon_usage"]["next_cursor"] is None
    assert body["gift_cards"] == [{"card_id": "gc-all-1", "card_number_masked": "•••• •••• •••• 4821",
                                   "last4": "4821", "original_balance": "50.00", "current_balance": "20.00",
                                   "currency": "USD", "status": "active", "issue_date": "2026-01-02",
                                   "expiration_date": "2099-01-02"}]
    assert body["insights"]["coupon_price_sensitivity"] == {
        "window_days": 365, "purchases": 12, "purchases_with_coupon": 5, "coupon_share": "0.4167",
        "coupon_only_buyer": False}
    assert body["insights"]["gift_card_balances"][0]["total_balance"] == "20.00"


async def test_duplicates_and_older_events_change_nothing(view: View, stack: Stack, topics: str) -> None:
    c = "C-ORDER-1"
    newest = [
        segments(c, 3, ("vip", "VIP", "2026-02-01", "manual", "newest")),
        redemption(c, "r-1", version=2, status="reversed", reversed_at=datetime(2026, 11, 30, tzinfo=UTC)),
        insights(c, 4, purchases=20, with_coupon=10, share="0.5000", only=True),
        card("gc-order-1", c, version=3, current="5.00", change="redeem"),
    ]
    older = [
        segments(c, 2, ("vip", "VIP", "2026-02-01", "manual", "older")),
        segments(c, 1),
        redemption(c, "r-1", version=1),
        insights(c, 2, purchases=3, with_coupon=0, share="0.0000"),
        card("gc-order-1", c, version=2, current="30.00"),
        card("gc-order-1", c, version=1, current="50.00"),
    ]
    await publish_domain(stack.kafka, topics, [*newest, *newest, *older, *newest])
    await drained(stack, topics, view.settings.consumer_group)  # every event applied, offsets committed
    body = await view.tab(c)
    again = await view.tab(c)
    assert body["segments"][0]["notes"] == "newest"
    assert [i["status"] for i in body["coupon_usage"]["items"]] == ["reversed"]
    assert body["insights"]["coupon_price_sensitivity"]["purchases"] == 20
    assert body["gift_cards"][0]["current_balance"] == "5.00"
    assert {k: v for k, v in body.items() if k != "as_of"} == {k: v for k, v in again.items() if k != "as_of"}

    await publish_domain(stack.kafka, topics, [segments(c, 4), card("gc-order-1", c, version=4, current="0.00")])
    await until(view, c, lambda b: not b["segments"] and b["gift_cards"][0]["status"] == "fully_redeemed",
                "an empty segment list and an emptied card (newer versions) applied")


async def test_a_reassigned_card_moves_and_an_old_event_cannot_move_it_back(view: View, stack: Stack,
                                                                            topics: str) -> None:
    a, b = "C-MOVE-A", "C-MOVE-B"
    first = card("gc-move-1", a, version=1)
    await publish_domain(stack.kafka, topics, [first])
    await until(view, a, lambda body: body["gift_cards"], "card with its first owner")

    await publish_domain(stack.kafka, topics, [card("gc-move-1", b, version=2, previous=a, change="reassign")])
    await until(view, b, lambda body: body["gift_cards"], "card with its new owner")
    assert (await view.tab(a))["gift_cards"] == []

    await publish_domain(stack.kafka, topics, [first])  # a late duplicate of the first owner's event
    await drained(stack, topics, view.settings.consumer_group)
    assert (await view.tab(a))["gift_cards"] == []
    assert [g["card_id"] for g in (await view.tab(b))["gift_cards"]] == ["gc-move-1"]

    await publish_domain(stack.kafka, topics, [card("gc-move-1", None, version=3, previous=b, change="unassign")])
    await until(view, b, lambda body: body["gift_cards"] == [], "unassigned card leaves its owner")


async def test_gift_card_status_is_computed_when_read(view: View, stack: Stack, topics: str) -> None:
    c = "C-STATUS-1"
    today = datetime.now(ZoneInfo(view.settings.business_timezone)).date()
    yesterday, tomorrow = today - timedelta(days=1), today + timedelta(days=1)
    issued = date(2025, 1, 1).isoformat()
    await publish_domain(stack.kafka, topics, [
        card("gc-s-expired-date", c, expires=yesterday.isoformat(), issued=issued),
        card("gc-s-expires-tomorrow", c, expires=tomorrow.isoformat(), current="12.00", issued=issued),
        card("gc-s-staff-expired", c, state="expired", expires=None, issued=issued),
        card("gc-s-empty", c, current="0.00", issued=issued),
        card("gc-s-deactivated", c, state="deactivated", issued=issued),
        card("gc-s-never", c, expires=None, current="8.00", issued=issued),
    ])
    body = await until(view, c, lambda b: len(b["gift_cards"]) == 6, "six cards")
    status = {g["card_id"]: g["status"] for g in body["gift_cards"]}
    assert status == {"gc-s-expired-date": "expired", "gc-s-expires-tomorrow": "active",
                      "gc-s-staff-expired": "expired", "gc-s-empty": "fully_redeemed",
                      "gc-s-deactivated": "deactivated", "gc-s-never": "active"}
    assert body["insights"]["gift_card_balances"] == [{
        "currency": "USD", "total_balance": "20.00", "expiring_balance": "12.00", "expiring_within_days": 30,
        "active_cards": 2}]
    await publish_domain(stack.kafka, topics, [card("gc-s-empty", c, version=2, current="15.00", change="reload")])
    reloaded = await until(view, c, lambda b: any(g["card_id"] == "gc-s-empty" and g["status"] == "active"
                                                  for g in b["gift_cards"]), "a reload makes it active again")
    assert reloaded["insights"]["gift_card_balances"][0]["total_balance"] == "35.00"
