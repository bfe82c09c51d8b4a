"""Transactional outbox: events are written with the change that caused them, published after commit.

``enqueue`` runs inside the caller's transaction. ``OutboxRelay`` publishes committed rows in id order
and deletes them once Kafka acknowledged them. It never skips a committed row: it keeps no cursor, every
pass reads whatever is still there, so a transaction that committed late is simply picked up on the next
pass. Per-key order holds because a service writes one aggregate's events while holding that
aggregate's row lock, so their ids grow in commit order. One relay per schema is active at a time
(advisory lock); a crash between publish and delete re-publishes, and consumers are idempotent.
"""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import suppress

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from shared import metrics
from shared.errors import is_transient
from shared.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

BACKLOG_COUNT_INTERVAL_S = 5.0


async def enqueue(conn: asyncpg.Connection, topic: str, key: str, event: BaseModel) -> None:
    """Add an event to the outbox, in the caller's transaction."""
    await conn.execute(
        "INSERT INTO outbox (topic, key, event_id, event_type, payload) VALUES ($1, $2, $3, $4, $5)",
        topic, key, event.event_id, event.event_type, event.model_dump_json().encode(),  # type: ignore[attr-defined]
    )


async def enqueue_many(conn: asyncpg.Connection, items: list[tuple[str, str, BaseModel]]) -> None:
    """Add several events in one statement (topic, key, event), in the caller's transaction."""
    if not items:
        return
    await conn.execute(
        "INSERT INTO outbox (topic, key, event_id, event_type, payload)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::bytea[])",
        [t for t, _, _ in items], [k for _, k, _ in items],
        [e.event_id for _, _, e in items],  # type: ignore[attr-defined]
        [e.event_type for _, _, e in items],  # type: ignore[attr-defined]
        [e.model_dump_json().encode() for _, _, e in items],
    )


class OutboxRelay:
    def __init__(self, *, pool: asyncpg.Pool, producer: AIOKafkaProducer, service: str, schema: str,
                 topic_prefix: str = "", batch_size: int = 500, idle_poll_s: float = 0.25) -> None:
        self._pool = pool
        self._producer = producer
        self._service = service
        self._prefix = topic_prefix
        self._batch_size = batch_size
        self._idle_poll_s = idle_poll_s
        self._lock_id = int.from_bytes(hashlib.sha256(f"outbox:{schema}".encode()).digest()[:8], "big", signed=True)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backlog_counted = 0.0
        self.published = 0

    def wake(self) -> None:
        """Tell the relay that a transaction with outbox rows just committed (saves a poll interval)."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self._service}-outbox-relay")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])

    async def _run(self) -> None:
        while True:
            try:
                async with self._pool.acquire() as conn:
                    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_id):
                        await asyncio.sleep(2)  # another replica relays; stand by
                        continue
                    # The outbox swings between empty (vacuumed to a few pages) and thousands of rows plus dead
                    # ones. A generic plan made while it was tiny is a sequential scan, kept for the life of the
                    # connection: at a backlog every SELECT and DELETE read ~1,000 pages. Planning each time
                    # picks the primary key once the table has grown (measured: DELETE 7 ms -> well under 1).
                    await conn.execute("SET plan_cache_mode = force_custom_plan")  # the pool's reset undoes it
                    try:
                        await self._relay(conn)
                    finally:
                        with suppress(Exception):
                            await conn.execute("SELECT pg_advisory_unlock($1)", self._lock_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("outbox relay failed", service=self._service)
                else:
                    log.warning("outbox relay waiting for a dependency", service=self._service, error=repr(exc))
                await asyncio.sleep(1)

    async def _relay(self, conn: asyncpg.Connection) -> None:
        while True:
            # Cleared BEFORE reading: a wake() that arrives while this pass publishes (a transaction that
            # committed after our SELECT) starts the next pass at once instead of waiting for the idle poll.
            self._wake.clear()
            sent = await self.publish_once(conn)
            if sent < self._batch_size and not self._wake.is_set():
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_poll_s)

    async def publish_once(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(
            "SELECT id, topic, key, event_id, event_type, payload FROM outbox ORDER BY id LIMIT $1",
            self._batch_size,
        )
        if not rows:
            metrics.OUTBOX_BACKLOG.labels(self._service).set(0)
            return 0
        futures = []
        for r in rows:
            headers = [("event_id", str(r["event_id"]).encode()), ("event_type", r["event_type"].encode())]
            futures.append(await self._producer.send(
                self._prefix + r["topic"], value=r["payload"], key=r["key"].encode(), headers=headers
            ))
        await asyncio.gather(*futures)
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        for r in rows:
            metrics.OUTBOX_PUBLISHED.labels(self._service, r["topic"]).inc()
        self.published += len(rows)
        if len(rows) == self._batch_size:
            now = asyncio.get_running_loop().time()
            if now - self._backlog_counted >= BACKLOG_COUNT_INTERVAL_S:  # count(*) reads the whole table
                self._backlog_counted = now
                metrics.OUTBOX_BACKLOG.labels(self._service).set(await conn.fetchval("SELECT count(*) FROM outbox"))
        else:
            metrics.OUTBOX_BACKLOG.labels(self._service).set(0)
        return len(rows)
