"""Price sensitivity from pos.sales.v1: share of a customer's purchases made with a coupon over the window,
the coupon-only flag, voids taken out, windows that age with no event (the sweep), published for the tab."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tests.helpers import eventually
from tests.integration.coupons.conftest import Ledger, sale, void


async def insights_events(ledger: Ledger, customer_id: str) -> list[dict[str, Any]]:
    events = [e for _, e in await ledger.domain_events(at_least=1)
              if e["event_type"] == "customer.coupon_insights_changed" and e["customer_id"] == customer_id]
    return sorted(events, key=lambda e: e["version"])


async def test_coupon_share_and_coupon_only_buyers(ledger: Ledger) -> None:
    await ledger.send_sales(sale("INV-P1", "C-P", coupons=("A",)), sale("INV-P2", "C-P"),
                            sale("INV-P3", "C-P", coupons=("A", "B")), sale("INV-P4", "C-P", coupons=("C",)),
                            sale("INV-ANON", None, coupons=("A",)))

    async def published(share: str, only: bool, purchases: int) -> dict[str, Any]:
        events = await insights_events(ledger, "C-P")
        assert events, "no insights yet"
        last = events[-1]
        assert (last["coupon_share"], last["coupon_only_buyer"], last["purchases"]) == (share, only, purchases), last
        return last

    first = await eventually(lambda: published("0.7500", False, 4), what="share of 3 in 4")
    assert (first["window_days"], first["purchases_with_coupon"], first["coupon_only_threshold"]) == (365, 3, "0.8")

    await ledger.send_sales(sale("INV-P5", "C-P", coupons=("D",)))
    at_threshold = await eventually(lambda: published("0.8000", True, 5), what="4 in 5 is coupon-only")
    assert at_threshold["version"] > first["version"]
    body = await ledger.call("GET", "/v1/customers/C-P/coupon-insights")
    assert (body["coupon_share"], body["coupon_only_buyer"], body["purchases"], body["version"]) == (
        "0.8000", True, 5, at_threshold["version"])

    # A void takes the purchase out (the voided sale carries no customer: the ledger knows whose it was); a
    # return changes nothing here; neither does a sale repeated under a new event id.
    returned = orjson.dumps({
        "event_id": str(uuid.uuid4()), "event_type": "sale.returned", "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(), "store_id": "S-001", "invoice_number": "RET-1",
        "original_invoice_number": "INV-P1", "customer_id": "C-P", "currency": "USD",
        "lines": [{"sku": "SKU-1", "category": "Footwear", "quantity": 1, "line_total": "50.00"}],
        "refund_total": "50.00",
    })
    await ledger.send_sales(void("INV-P5", None), (b"C-P", returned), sale("INV-P2", "C-P", coupons=("Z",)))
    after_void = await eventually(lambda: published("0.7500", False, 4), what="void taken out")
    assert after_void["version"] == at_threshold["version"] + 1
    assert (await ledger.call("GET", "/v1/customers/C-NEW/coupon-insights"))["purchases"] == 0
    assert await ledger.sql("SELECT 1 FROM customer_purchases WHERE invoice_number = 'INV-ANON'") == []


async def test_the_sweep_ages_windows_without_any_event(ledger: Ledger) -> None:
    now = datetime.now(UTC)
    await ledger.send_sales(sale("INV-OLD", "C-Q", coupons=("A",), at=now - timedelta(days=364)),
                            sale("INV-NEW", "C-Q", at=now - timedelta(days=1)))

    async def half() -> bool:
        events = await insights_events(ledger, "C-Q")
        return bool(events) and events[-1]["coupon_share"] == "0.5000"

    await eventually(half, what="1 in 2")
    published = await ledger.app.state.ledger.sweep_insights(now=now + timedelta(days=2))
    assert published == 1

    async def aged() -> dict[str, Any]:
        events = await insights_events(ledger, "C-Q")
        assert (events[-1]["purchases"], events[-1]["coupon_share"]) == (1, "0.0000"), events[-1]
        return events[-1]

    await eventually(aged, what="the old purchase left the window")
    assert await ledger.app.state.ledger.sweep_insights(now=now + timedelta(days=2)) == 0, "nothing new to age"
