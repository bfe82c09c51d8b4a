"""Scenario 9: the outbox relay killed (SIGKILL) 20 times while concurrent writers commit and roll back:
every committed event published, no rolled-back one, order kept per key."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from shared.contracts.domain import CustomerSegmentsChanged
from shared.db import create_pool, migrate
from shared.kafka import ensure_topics
from shared.outbox import enqueue
from tests.reliability.harness import ROOT, eventually, seed, size


class _Rollback(Exception):
    pass


async def test_outbox_relay_killed_repeatedly_publishes_exactly_the_committed_events(stack, tmp_path: Path) -> None:
    s = seed()
    rng = random.Random(s)
    tag = "relo" + uuid.uuid4().hex[:8]
    schema, topic = tag, f"{tag}.outbox-test"
    kills_wanted = 20
    await ensure_topics(stack.kafka, {topic: 3})
    await migrate(stack.database_url, schema, tmp_path)  # the plumbing tables only
    pool = await create_pool(stack.database_url, schema, max_size=12)
    committed: dict[str, list[int]] = {}
    rolled_back: set[str] = set()
    committed_ids: set[str] = set()
    proc: subprocess.Popen[bytes] | None = None

    def start_relay() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "tests.reliability.relay_process", stack.database_url, schema,
                                 stack.kafka], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    writing = True

    async def writer(key: str) -> None:
        committed[key] = []
        version = 0
        while writing:
            version += 1
            rollback = rng.random() < 0.3
            event = CustomerSegmentsChanged(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), version=version,
                                            customer_id=key, segments=[])
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await enqueue(conn, topic, key, event)
                    await asyncio.sleep(rng.random() / 50)
                    if rollback:
                        raise _Rollback
            except _Rollback:
                rolled_back.add(str(event.event_id))
                continue
            committed[key].append(version)
            committed_ids.add(str(event.event_id))

    kills = 0
    try:
        proc = start_relay()
        writers = [asyncio.create_task(writer(f"C-{i}")) for i in range(size(8, 16))]
        while kills < kills_wanted:
            await asyncio.sleep(rng.uniform(0.8, 2.5))  # the process needs ~0.7 s to start relaying
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = start_relay()
        writing = False
        await asyncio.gather(*writers)

        async def drained() -> bool:
            return await pool.fetchval("SELECT count(*) FROM outbox") == 0

        await eventually(drained, timeout_s=60, what="outbox drained")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")
        await pool.close()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.kafka, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records = []
    try:
        idle = 0
        while idle < 5:
            got = await consumer.getmany(timeout_ms=500)
            idle = 0 if got else idle + 1
            for batch in got.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()

    first: dict[str, list[int]] = {}
    seen: set[str] = set()
    for r in records:
        body = orjson.loads(r.value)
        if body["event_id"] in seen:
            continue
        seen.add(body["event_id"])
        first.setdefault(r.key.decode(), []).append(body["version"])
    total = len(committed_ids)
    print(f"outbox: relay kills={kills} committed={total} rolled back={len(rolled_back)} records={len(records)} "
          f"republished after a kill={len(records) - len(seen)}")
    assert kills >= 20
    assert committed_ids <= seen, f"{len(committed_ids - seen)} committed events never published"
    assert not (seen & rolled_back), "a rolled-back event was published"
    assert first == {k: v for k, v in committed.items() if v}, "order kept per key (first publication of each)"
