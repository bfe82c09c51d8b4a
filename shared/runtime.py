"""The I/O parts one service process owns (pool, producer, outbox relay, consumer), built in the lifespan.

Nothing connects at import time: a service's ``bootstrap`` calls ``open_runtime`` and the tests can too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from shared.consumer import BatchHandler, ConsumerRuntime, Decoder
from shared.contracts.codec import decode
from shared.db import create_pool, migrate
from shared.http import add_check
from shared.kafka import make_producer
from shared.outbox import OutboxRelay
from shared.settings import CommonSettings
from shared.tasks import cancel_and_wait

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    name: str
    settings: CommonSettings
    pool: asyncpg.Pool | None
    producer: AIOKafkaProducer
    relay: OutboxRelay | None
    consumer: ConsumerRuntime | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start_consumer(self, handlers: dict[str, BatchHandler], *, group_id: str | None = None,
                             decoder: Decoder = decode) -> ConsumerRuntime:
        self.consumer = ConsumerRuntime(
            settings=self.settings, service=self.name, group_id=group_id or self.name, handlers=handlers,
            decode=decoder, producer=self.producer,
        )
        await _retry_start(self.consumer.start, what="kafka consumer")
        return self.consumer

    def spawn(self, coro: object, name: str) -> None:
        """Run a background loop for as long as the runtime lives."""
        self.tasks.append(asyncio.create_task(coro, name=name))  # type: ignore[arg-type]

    async def close(self) -> None:
        await cancel_and_wait(self.tasks)
        if self.consumer:
            await self.consumer.stop()
        if self.relay:
            await self.relay.stop()
        await self.producer.stop()
        if self.pool:
            await self.pool.close()


async def open_runtime(*, name: str, settings: CommonSettings, schema: str | None, database_url: str | None,
                       migrations_dir: Path | None, pool_size: int = 10) -> Runtime:
    """Connect what the service uses. Without a database (marketing_view) there is no pool and no outbox."""
    if schema is None or database_url is None or migrations_dir is None:
        producer = make_producer(settings)
        await _retry_start(producer.start, what="kafka producer")
        return Runtime(name=name, settings=settings, pool=None, producer=producer, relay=None)
    await _retry_start(lambda: migrate(database_url, schema, migrations_dir), what="postgres migrations")
    pool = await _retry_start(
        lambda: create_pool(database_url, schema, max_size=pool_size, application_name=name), what="postgres"
    )
    producer = make_producer(settings)
    await _retry_start(producer.start, what="kafka producer")
    relay = OutboxRelay(pool=pool, producer=producer, service=name, schema=schema,
                        topic_prefix=settings.kafka_topic_prefix)
    await relay.start()
    return Runtime(name=name, settings=settings, pool=pool, producer=producer, relay=relay)


def add_runtime_checks(app: FastAPI, runtime: Runtime) -> None:
    async def postgres() -> None:
        assert runtime.pool is not None
        await runtime.pool.fetchval("SELECT 1")

    async def kafka() -> str:
        await runtime.producer.client.fetch_all_metadata()
        consumer = runtime.consumer
        if consumer is not None and not consumer.health.ready:
            return f"consumer paused: {consumer.health.last_error}"
        return "ok"

    if runtime.pool is not None:
        add_check(app, "postgres", postgres)
    add_check(app, "kafka", kafka)


async def _retry_start(start, *, what: str, attempts: int = 60):  # type: ignore[no-untyped-def]
    """Dependencies may still be starting (or restarting): wait for them, within reason."""
    for attempt in range(1, attempts + 1):
        try:
            return await start()
        except Exception as exc:
            if attempt == attempts:
                raise
            log.warning("waiting for dependency", dependency=what, attempt=attempt, error=repr(exc)[:200])
            await asyncio.sleep(min(0.25 * attempt, 2.0))
    return None
