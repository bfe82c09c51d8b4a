"""POS redemptions on a real broker and database: recorded with the coupon's terms as they were, every flag,
duplicates ignored, anonymous ones kept off the tab, domain events through the outbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.redemption_ledger.ledger import redemption_id_for
from tests.helpers import eventually
from tests.integration.coupons.conftest import Ledger, redeemed


async def test_redemptions_are_recorded_flagged_and_announced(ledger: Ledger) -> None:
    now = datetime.now(UTC)
    await ledger.coupon("SAVE5", name="$5 off", discount_type="amount", discount_value="5.00", currency="USD",
                        campaign="fall-2026", max_redemptions_per_customer=1)
    await ledger.coupon("FALL10", name="Fall 10% off", campaign="fall-2026")
    await ledger.coupon("OLD", valid_until=(now - timedelta(days=1)).isoformat())
    await ledger.coupon("SOON", valid_from=(now + timedelta(days=1)).isoformat())
    await ledger.coupon("OFF")
    await ledger.call("POST", "/v1/coupons/off/deactivate")
    await ledger.coupon("ONCE", max_redemptions=1)
    await asyncio.sleep(0.01)  # the POS's clock: after the catalog edits above

    first = redeemed("INV-1", "save5", "C-A")
    events = [
        first,
        first,                                                     # the same event twice
        redeemed("INV-1", "SAVE5", "C-A", amount="99.00"),         # the same redemption under a new event id
        redeemed("INV-2", "NOSUCH", "C-A", amount="1.00"),         # unknown_code
        redeemed("INV-3", "OFF", "C-A"),                           # inactive
        redeemed("INV-4", "SOON", "C-A"),                          # not_yet_valid
        redeemed("INV-5", "OLD", "C-A"),                           # expired
        redeemed("INV-6", "ONCE", "C-B"),
        redeemed("INV-7", "ONCE", "C-C"),                          # over_limit
        redeemed("INV-8", "SAVE5", "C-A"),                         # customer_over_limit
        redeemed("INV-9", "SAVE5", "C-D", currency="CAD"),         # currency_mismatch
        redeemed("INV-10", "FALL10", None, amount="3.10"),         # anonymous
        redeemed("INV-11", "FALL10", "C-A", amount="10.20"),
    ]
    await ledger.send_coupons(*events)

    async def all_recorded() -> list[dict]:
        rows = await ledger.sql("SELECT * FROM redemptions ORDER BY seq")
        assert len(rows) == 11, len(rows)
        return [dict(r) for r in rows]

    rows = await eventually(all_recorded, what="11 redemptions recorded")
    flags = {r["invoice_number"]: r["flags"] for r in rows}
    # INV-6 and INV-7 are two customers' (two partitions): which of them came second is up to Kafka.
    assert sorted([flags.pop("INV-6"), flags.pop("INV-7")]) == [[], ["over_limit"]]
    assert flags == {
        "INV-1": [], "INV-2": ["unknown_code"], "INV-3": ["inactive"], "INV-4": ["not_yet_valid"],
        "INV-5": ["expired"], "INV-8": ["customer_over_limit"],
        "INV-9": ["currency_mismatch"], "INV-10": [], "INV-11": [],
    }
    inv1 = next(r for r in rows if r["invoice_number"] == "INV-1")
    assert (inv1["coupon_code"], inv1["pos_coupon_code"], str(inv1["discount_amount"])) == ("SAVE5", "save5", "5.00")
    assert inv1["source_event_id"] == first.event_id and inv1["redemption_id"] == redemption_id_for("INV-1", "SAVE5")

    # The customer's history: newest first, the coupon's terms as they were.
    page = await ledger.call("GET", "/v1/customers/C-A/coupon-redemptions")
    assert [i["invoice_number"] for i in page["items"]] == ["INV-11", "INV-8", "INV-5", "INV-4", "INV-3", "INV-2",
                                                             "INV-1"]
    assert page["next_cursor"] is None
    fall = page["items"][0]
    assert fall["discount"] == {"type": "percent", "value": "10", "amount": "10.20", "currency": "USD",
                                "display": "10% ($10.20)"}
    assert (fall["coupon_name"], fall["campaign"], fall["status"]) == ("Fall 10% off", "fall-2026", "redeemed")
    assert datetime.fromisoformat(fall["used_at"]).utcoffset() == ledger.settings.tz.utcoffset(now.replace(tzinfo=None))

    # Later catalog edits never rewrite history.
    await ledger.call("PATCH", "/v1/coupons/FALL10", json={"name": "Renamed", "discount_value": "50"})
    again = await ledger.call("GET", "/v1/customers/C-A/coupon-redemptions", params={"limit": 1})
    assert again["items"][0]["coupon_name"] == "Fall 10% off" and again["items"][0]["discount"]["value"] == "10"
    assert again["next_cursor"]

    # The flagged-redemptions report, and the metrics.
    report = await ledger.call("GET", "/v1/reports/flagged-redemptions")
    over_limit = next(r["invoice_number"] for r in rows if r["flags"] == ["over_limit"])
    assert {i["invoice_number"] for i in report["items"]} == {f"INV-{n}" for n in (2, 3, 4, 5, 8, 9)} | {over_limit}
    assert report["counts"] == {"unknown_code": 1, "inactive": 1, "not_yet_valid": 1, "expired": 1,
                                "over_limit": 1, "customer_over_limit": 1, "currency_mismatch": 1}
    only = await ledger.call("GET", "/v1/reports/flagged-redemptions", params={"flag": "over_limit"})
    assert [i["invoice_number"] for i in only["items"]] == [over_limit]
    metrics = (await ledger.http.get("/metrics")).text
    assert 'marketing_coupon_redemptions_flagged_total{flag="currency_mismatch"}' in metrics
    assert 'marketing_coupon_redemptions_total{outcome="duplicate"}' in metrics

    # Per-coupon and per-campaign figures.
    save5 = await ledger.call("GET", "/v1/coupons/save5/stats")
    assert {k: save5[k] for k in ("redemptions", "reversals", "unique_customers", "flagged", "discount_given")} == {
        "redemptions": 3, "reversals": 0, "unique_customers": 2, "flagged": 2,
        "discount_given": {"CAD": "5.00", "USD": "10.00"}}
    campaign = await ledger.call("GET", "/v1/campaigns/fall-2026/stats")
    assert (campaign["redemptions"], campaign["anonymous"], campaign["unique_customers"]) == (5, 1, 2)
    assert [c["coupon_code"] for c in campaign["coupons"]] == ["FALL10", "SAVE5"]
    assert (await ledger.http.get("/v1/campaigns/nothing-here/stats", headers=ledger.auth)).status_code == 404

    # Domain events: one per identified redemption (not the anonymous one), keyed by customer, version 1.
    published = await ledger.domain_events(at_least=10)
    recorded = [(r, e) for r, e in published if e["event_type"] == "coupon.redemption_recorded"]
    expected = sorted(f"INV-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11))
    assert sorted(e["invoice_number"] for _, e in recorded) == expected
    for record, event in recorded:
        assert record.key.decode() == event["customer_id"] and event["version"] == 1
        assert event["status"] == "redeemed" and event["reversed_at"] is None
    by_invoice = {e["invoice_number"]: e for _, e in recorded}
    assert by_invoice["INV-2"]["discount_type"] == "unknown" and by_invoice["INV-2"]["flags"] == ["unknown_code"]
    assert (by_invoice["INV-1"]["coupon_name"], by_invoice["INV-1"]["discount_value"]) == ("$5 off", "5.00")
    assert datetime.fromisoformat(by_invoice["INV-1"]["used_at"]) == first.occurred_at


async def test_the_ledger_refuses_edits_and_deletes(ledger: Ledger) -> None:
    await ledger.send_coupons(redeemed("INV-1", "ANY", "C-A"))

    async def recorded() -> bool:
        return bool(await ledger.sql("SELECT 1 FROM redemptions"))

    await eventually(recorded, what="redemption recorded")
    for statement in ("UPDATE redemptions SET discount_amount = 0", "DELETE FROM redemptions",
                      "TRUNCATE redemptions CASCADE"):
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await ledger.sql(statement)
