"""Bad input on both topics the ledger reads: parked on <topic>.dlq with reason and provenance; the consumer
goes on. A message that passes the contract but cannot be stored is dead-lettered alone, the rest applied."""

from __future__ import annotations

import orjson

from shared.contracts import topics as t
from tests.helpers import eventually, read_topic
from tests.integration.coupons.conftest import Ledger, redeemed, sale


async def test_poison_is_dead_lettered_and_the_rest_applied(ledger: Ledger) -> None:
    good = redeemed("INV-GOOD", "ANY", "C-1")
    raw = orjson.loads(redeemed("INV-X", "ANY", "C-2").model_dump_json())
    unstorable = redeemed("INV-NUL", "BAD\u0000CODE", "C-3")
    poison = [
        (b"C-bad-1", b"{not json"),
        (b"C-bad-2", orjson.dumps(raw | {"schema_version": 2})),
        (b"C-bad-3", orjson.dumps({k: v for k, v in raw.items() if k != "coupon_code"})),
        (b"C-bad-4", orjson.dumps(raw | {"discount_amount": 5.0})),
        (b"C-3", unstorable.model_dump_json().encode()),
    ]
    await ledger.send_coupons(poison[0], good, *poison[1:], redeemed("INV-GOOD-2", "ANY", "C-1"))
    await ledger.send_sales((b"C-bad-5", b"[]"), sale("INV-S", "C-1"))

    async def applied() -> bool:
        rows = await ledger.sql("SELECT invoice_number FROM redemptions")
        purchases = await ledger.sql("SELECT invoice_number FROM customer_purchases")
        return {r["invoice_number"] for r in rows} == {"INV-GOOD", "INV-GOOD-2"} and len(purchases) == 1

    await eventually(applied, what="valid events applied")
    dead = await read_topic(ledger.stack.kafka, ledger.prefix + t.dlq(t.POS_COUPON_REDEMPTIONS), at_least=5)
    reasons = {r.key: dict(r.headers)["dlq.reason"].decode() for r in dead}
    assert set(reasons) == {b"C-bad-1", b"C-bad-2", b"C-bad-3", b"C-bad-4", b"C-3"}
    assert reasons[b"C-bad-1"].startswith("not JSON")
    assert "schema_version 2" in reasons[b"C-bad-2"]
    assert "coupon_code" in reasons[b"C-bad-3"]
    assert "discount_amount" in reasons[b"C-bad-4"]
    assert reasons[b"C-3"].startswith("processing failed")
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["dlq.original.topic"] == t.POS_COUPON_REDEMPTIONS
        assert int(headers["dlq.original.offset"]) >= 0
    assert next(r for r in dead if r.key == b"C-bad-1").value == b"{not json"

    sales_dead = await read_topic(ledger.stack.kafka, ledger.prefix + t.dlq(t.POS_SALES), at_least=1)
    assert [r.key for r in sales_dead] == [b"C-bad-5"]
    assert dict(sales_dead[0].headers)["dlq.original.topic"] == t.POS_SALES.encode()
