"""Bad input on a real broker: parked on <topic>.dlq with reason and provenance; the consumer goes on."""

from __future__ import annotations

import uuid

import asyncpg
import orjson

from services.segment_engine.app import create_app
from services.segment_engine.config import Settings
from shared.contracts import topics as t
from tests.conftest import POS_EXAMPLES, Stack
from tests.helpers import eventually, publish, read_topic, running


def registration(customer_id: str, **changes: object) -> bytes:
    event = orjson.loads((POS_EXAMPLES / "customer.registered.json").read_bytes()) if POS_EXAMPLES.exists() else {
        "event_type": "customer.registered", "schema_version": 1, "occurred_at": "2025-03-14T09:12:00-04:00",
        "store_id": None, "registered_at": "2025-03-14T09:12:00-04:00", "home_store_id": "S-001",
        "loyalty_tier": "Silver",
    }
    event.update(event_id=str(uuid.uuid4()), customer_id=customer_id, **changes)
    return orjson.dumps(event)


async def test_poison_goes_to_dead_letter_topic_and_consumer_goes_on(stack: Stack, topics: str, isolation: str) -> None:
    settings = Settings(db_schema=f"se_{isolation}", consumer_group=f"se-{isolation}")
    poison = [
        (b"C-bad-1", b"{not json"),
        (b"C-bad-2", registration("C-bad-2", schema_version=2)),
        (b"C-bad-3", registration("C-bad-3", registered_at="yesterday")),
        (b"C-bad-4", b"[1, 2, 3]"),
    ]
    good = [(b"C-good-1", registration("C-good-1")), (b"C-good-2", registration("C-good-2"))]
    async with running(create_app(settings)):
        await publish(stack.kafka, topics + t.CRM_CUSTOMERS, [*poison, *good])

        async def customers_recorded() -> bool:
            conn = await asyncpg.connect(stack.database_url)
            try:
                ids = await conn.fetch(f"SELECT customer_id FROM se_{isolation}.customers")
            finally:
                await conn.close()
            return {r["customer_id"] for r in ids} == {"C-good-1", "C-good-2"}

        await eventually(customers_recorded, what="valid registrations applied")
        dead = await read_topic(stack.kafka, topics + t.dlq(t.CRM_CUSTOMERS), at_least=len(poison))

    assert len(dead) == len(poison)
    by_key = {r.key: r for r in dead}
    assert set(by_key) == {k for k, _ in poison}
    for key, value in poison:
        record = by_key[key]
        headers = {k: v.decode() for k, v in record.headers}
        assert record.value == value, "the original bytes are kept"
        assert headers["dlq.original.topic"] == t.CRM_CUSTOMERS
        assert int(headers["dlq.original.offset"]) >= 0 and int(headers["dlq.original.partition"]) >= 0
        assert headers["dlq.reason"]
    reasons = {r.key: dict(r.headers)["dlq.reason"].decode() for r in dead}
    assert reasons[b"C-bad-1"].startswith("not JSON")
    assert "schema_version 2" in reasons[b"C-bad-2"]
    assert "registered_at" in reasons[b"C-bad-3"]
    assert "not a JSON object" in reasons[b"C-bad-4"]
