"""Reversals on a real broker and database: coupon.redemption_reversed, sale.voided, a reversal before its
redemption, a void before its redemption, void plus reversal once; usage given back; version 2 announced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.helpers import eventually
from tests.integration.coupons.conftest import Ledger, redeemed, reversal, sale, void


async def test_reversals_voids_and_holds(ledger: Ledger) -> None:
    t0 = datetime.now(UTC)
    await ledger.coupon("ONE", max_redemptions=1)
    await ledger.coupon("TEN")

    # A redemption of a coupon limited to one use: the till refuses the next one...
    await ledger.send_coupons(redeemed("INV-1", "ONE", "C-1", at=t0 + timedelta(seconds=1)))
    await eventually(lambda: _count(ledger, "redemptions", 1), what="first redemption recorded")
    answer = await ledger.call("POST", "/v1/coupons/validate",
                               json={"code": "one", "customer_id": "C-2", "subtotal": "20.00", "currency": "USD"})
    assert (answer["valid"], answer["reason"], answer["discount_amount"]) == (False, "limit_reached", "0.00")

    # ...until it is reversed: the usage is given back.
    await ledger.send_coupons(reversal("INV-1", "one", "C-1", reason="return", at=t0 + timedelta(seconds=2)))
    await eventually(lambda: _count(ledger, "redemption_reversals", 1), what="reversal recorded")
    answer = await ledger.call("POST", "/v1/coupons/validate",
                               json={"code": "ONE", "customer_id": "C-2", "subtotal": "20.00", "currency": "USD"})
    assert (answer["valid"], answer["reason"], answer["discount_amount"]) == (True, None, "2.00")
    assert (await ledger.call("GET", "/v1/coupons/ONE"))["times_used"] == 0

    at = t0 + timedelta(seconds=3)
    await ledger.send_coupons(
        reversal("INV-2", "TEN", "C-1", at=at),                       # before its redemption: held
        redeemed("INV-3", "TEN", "C-1", at=at), redeemed("INV-3", "ONE", "C-1", at=at),
        redeemed("INV-4", "TEN", "C-1", at=at),
    )
    await eventually(lambda: _count(ledger, "redemptions", 4), what="redemptions recorded")
    await ledger.send_sales(
        void("INV-3", "C-1", at=at + timedelta(seconds=1)),            # both redemptions of INV-3
        void("INV-5", "C-1", at=at + timedelta(seconds=1)),            # before its redemption
        void("INV-4", None, at=at + timedelta(seconds=1)),             # void and reversal of INV-4: once
        void("INV-1", "C-1", at=at + timedelta(seconds=1)),            # INV-1 was reversed already: once
    )
    await eventually(lambda: _count(ledger, "voided_invoices", 4), what="voids applied")
    assert await _count(ledger, "redemption_reversals", 4)
    late = reversal("INV-4", "TEN", "C-1", at=at + timedelta(seconds=2))
    await ledger.send_coupons(late)

    async def late_reversal_seen() -> bool:
        return bool(await ledger.sql("SELECT 1 FROM processed_messages WHERE event_id = $1", late.event_id))

    await eventually(late_reversal_seen, what="the reversal after the void consumed")
    assert (await _count(ledger, "redemption_reversals", 4)), "the void already reversed INV-4: nothing more"
    held = await ledger.call("GET", "/v1/reports/held-reversals")
    assert [(h["invoice_number"], h["coupon_code"]) for h in held["items"]] == [("INV-2", "TEN")]

    await ledger.send_coupons(redeemed("INV-2", "TEN", "C-1", at=at), redeemed("INV-5", "TEN", "C-1", at=at),
                              redeemed("INV-6", "TEN", "C-1", at=at))
    await eventually(lambda: _count(ledger, "redemption_reversals", 6), what="held reversals matched")
    assert (await ledger.call("GET", "/v1/reports/held-reversals"))["items"] == []

    rows = await ledger.sql(
        "SELECT r.invoice_number, r.coupon_code, v.source, v.reason, v.held_since IS NOT NULL AS held"
        " FROM redemption_reversals v JOIN redemptions r USING (redemption_id) ORDER BY v.seq"
    )
    assert sorted((r["invoice_number"], r["coupon_code"], r["source"], r["reason"], r["held"]) for r in rows) == [
        ("INV-1", "ONE", "coupon.redemption_reversed", "return", False),
        ("INV-2", "TEN", "coupon.redemption_reversed", "correction", True),
        ("INV-3", "ONE", "sale.voided", "void", False),
        ("INV-3", "TEN", "sale.voided", "void", False),
        ("INV-4", "TEN", "sale.voided", "void", False),
        ("INV-5", "TEN", "sale.voided", "void", True),
    ]

    history = await ledger.call("GET", "/v1/customers/C-1/coupon-redemptions")
    status = {(i["invoice_number"], i["coupon_code"]): i["status"] for i in history["items"]}
    assert status == {("INV-1", "ONE"): "reversed", ("INV-2", "TEN"): "reversed", ("INV-3", "TEN"): "reversed",
                      ("INV-3", "ONE"): "reversed", ("INV-4", "TEN"): "reversed", ("INV-5", "TEN"): "reversed",
                      ("INV-6", "TEN"): "redeemed"}
    inv1 = next(i for i in history["items"] if i["invoice_number"] == "INV-1")
    assert inv1["reversal_reason"] == "return" and datetime.fromisoformat(inv1["reversed_at"]) == t0 + timedelta(
        seconds=2)

    counters = {(r["coupon_code"], r["customer_id"]): r["used"]
                for r in await ledger.sql("SELECT * FROM usage_counters")}
    assert counters == {("ONE", ""): 0, ("ONE", "C-1"): 0, ("TEN", ""): 1, ("TEN", "C-1"): 1}
    stats = await ledger.call("GET", "/v1/coupons/TEN/stats")
    assert (stats["redemptions"], stats["reversals"], stats["net_redemptions"], stats["unique_customers"]) == (
        5, 4, 1, 1)

    # The tab hears the final state of each redemption; a reversed one carries version 2. (How many events
    # that takes depends on how the two topics interleaved: a redemption reversed on arrival is one event.)
    async def final_states_published() -> dict[str, dict]:
        latest: dict[str, dict] = {}
        for _, e in await ledger.domain_events(at_least=8):
            if e["event_type"] == "coupon.redemption_recorded":
                if e["redemption_id"] not in latest or latest[e["redemption_id"]]["version"] < e["version"]:
                    latest[e["redemption_id"]] = e
        assert {(e["invoice_number"], e["coupon_code"]): (e["status"], e["version"]) for e in latest.values()} == {
            key: (value, 2 if value == "reversed" else 1) for key, value in status.items()}
        return latest

    latest = await eventually(final_states_published, what="final states published")
    assert all(e["reversed_at"] and e["reversal_reason"] for e in latest.values() if e["status"] == "reversed")


async def _count(ledger: Ledger, table: str, expected: int) -> bool:
    rows = await ledger.sql(f"SELECT count(*) AS n FROM {table}")
    assert rows[0]["n"] == expected, f"{table}: {rows[0]['n']} rows, expecting {expected}"
    return True


async def test_a_sale_void_on_an_invoice_without_coupons_is_harmless(ledger: Ledger) -> None:
    await ledger.send_sales(sale("INV-9", "C-9"), void("INV-9", "C-9"))
    await eventually(lambda: _count(ledger, "voided_invoices", 1), what="void recorded")
    assert await ledger.sql("SELECT * FROM redemption_reversals") == []
