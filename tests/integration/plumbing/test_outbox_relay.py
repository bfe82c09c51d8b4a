"""The outbox relay on real Postgres and Kafka: every committed event published, no rolled-back one, per-key order."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

from shared.contracts.domain import CustomerSegmentsChanged
from shared.db import create_pool, migrate
from shared.kafka import ensure_topics, make_producer
from shared.outbox import OutboxRelay, enqueue
from shared.settings import CommonSettings
from tests.conftest import Stack, delete_topics
from tests.helpers import eventually, read_topic


async def test_relay_publishes_exactly_the_committed_events_in_order_per_key(
    stack: Stack, isolation: str, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    schema = f"outbox_{isolation}"
    topic = f"t{isolation}.outbox-test"
    await ensure_topics(stack.kafka, {topic: 3})
    await migrate(stack.database_url, schema, tmp_path)  # the plumbing tables only
    pool = await create_pool(stack.database_url, schema, max_size=12)
    producer = make_producer(CommonSettings(kafka_bootstrap_servers=stack.kafka))
    await producer.start()
    relay = OutboxRelay(pool=pool, producer=producer, service="test", schema=schema, batch_size=7)
    await relay.start()
    committed: dict[str, list[int]] = {}

    async def writer(key: str, writes: int) -> None:
        committed[key] = []
        for seq in range(writes):
            rollback = rng.random() < 0.3
            try:
                async with pool.acquire() as conn, conn.transaction():
                    event = CustomerSegmentsChanged(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC),
                                                    version=seq + 1, customer_id=key, segments=[])
                    await enqueue(conn, topic, key, event)
                    await asyncio.sleep(rng.random() / 100)  # commits interleave with the relay's reads
                    if rollback:
                        raise _Rollback
            except _Rollback:
                continue
            committed[key].append(seq + 1)
            relay.wake()

    try:
        await asyncio.gather(*(writer(f"C-{i}", 25) for i in range(10)))
        total = sum(len(v) for v in committed.values())

        async def drained() -> bool:
            return await pool.fetchval("SELECT count(*) FROM outbox") == 0

        await eventually(drained, what="outbox drained")
        records = await read_topic(stack.kafka, topic, at_least=total)
    finally:
        await relay.stop()
        await producer.stop()
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")
        await pool.close()
        await delete_topics(stack.kafka, f"t{isolation}.")

    published: dict[str, list[int]] = {}
    for r in records:
        body = orjson.loads(r.value)
        published.setdefault(r.key.decode(), []).append(body["version"])
    assert len(records) == total, "every committed event exactly once, no rolled-back one"
    assert published == {k: v for k, v in committed.items() if v}, "order kept per key"


class _Rollback(Exception):
    pass
