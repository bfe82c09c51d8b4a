"""Small tools for tests on the real stack: publish, read a topic, wait for a condition, run an app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from fastapi import FastAPI
from pydantic import BaseModel

T = TypeVar("T")


async def publish(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | BaseModel]]) -> None:
    """Publish (key, value) pairs and wait until Kafka acknowledged all of them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = []
        for key, value in messages:
            raw = value.model_dump_json().encode() if isinstance(value, BaseModel) else value
            futures.append(await producer.send(topic, raw, key=key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, *, at_least: int, timeout_s: float = 30) -> list[ConsumerRecord]:
    """Everything on ``topic`` from the beginning, once at least ``at_least`` records arrived."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            if len(records) >= at_least:
                # A short grace period shows whether more than expected arrive.
                for batch in (await consumer.getmany(timeout_ms=300)).values():
                    records.extend(batch)
                return records
    finally:
        await consumer.stop()
    raise AssertionError(f"{topic}: expected at least {at_least} records within {timeout_s}s, got {len(records)}")


async def eventually(check: Callable[[], Awaitable[T]], *, timeout_s: float = 30, interval_s: float = 0.1,
                     what: str = "condition") -> T:
    """Call ``check`` until it returns a truthy value without raising; fail with the last error after the timeout."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = await check()
            if result:
                return result
            last = result
        except AssertionError as exc:
            last = exc
        await asyncio.sleep(interval_s)
    raise AssertionError(f"{what} not reached within {timeout_s}s; last: {last!r}")


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan (its consumers, relay, pools) in-process and give an HTTP client to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client
