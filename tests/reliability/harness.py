"""The services under test as separate processes (so kill -9 is real), on their own topics, schemas,
consumer groups, HTTP ports and Redis key prefix, next to the running stack and never touching it."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaProducer

from shared.kafka import ensure_topics
from shared.topology import topic_configs, topic_specs

ROOT = Path(__file__).resolve().parents[2]
LOGS = Path(os.environ.get("RELIABILITY_LOG_DIR", "/tmp/reliability-logs"))
SERVICES = ("giftcard_ledger", "redemption_ledger", "segment_engine", "marketing_view")
CONSUMERS = ("giftcard_ledger", "redemption_ledger", "segment_engine", "marketing_view")
SCALE = os.environ.get("RELIABILITY_SCALE", "ci")
FULL = SCALE == "full"


def seed() -> int:
    value = int(os.environ.get("RELIABILITY_SEED") or random.SystemRandom().randrange(1, 10**9))
    print(f"seed={value} (reproduce: RELIABILITY_SEED={value} RELIABILITY_SCALE={SCALE})")
    return value


def size(ci: int, full: int) -> int:
    return full if FULL else ci


@dataclass
class Proc:
    service: str
    replica: int
    port: int
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None
    kills: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = (LOGS / f"{self.env['KAFKA_TOPIC_PREFIX']}{self.service}.{self.replica}.log").open("ab")
        env = dict(self.env)
        env[f"{self.service.upper()}_HTTP_PORT"] = str(self.port)
        self.popen = subprocess.Popen([sys.executable, "-m", f"services.{self.service}", "serve"], cwd=ROOT,
                                      env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
            self.kills += 1
        self.popen = None

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.popen = None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    async def readyz(self) -> tuple[int, Any]:
        async with httpx.AsyncClient(timeout=3) as client:
            r = await client.get(self.url + "/readyz")
            try:
                return r.status_code, r.json()
            except ValueError:
                return r.status_code, r.text

    async def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise AssertionError(f"{self.service}.{self.replica} exited with {self.popen.returncode}")
            try:
                status, body = await self.readyz()
                if status == 200:
                    return
                last = body
            except httpx.HTTPError as exc:
                last = exc
            await asyncio.sleep(0.3)
        raise AssertionError(f"{self.service}.{self.replica} not ready within {timeout_s}s: {last!r}")


@dataclass
class World:
    """One isolated deployment of the four services: prefix, schemas, groups, Redis key prefix, ports."""

    stack: Any
    tag: str = field(default_factory=lambda: "rel" + uuid.uuid4().hex[:8])
    procs: list[Proc] = field(default_factory=list)
    view_prefix: str | None = None
    extra_view_prefixes: list[str] = field(default_factory=list)
    redis_url: str | None = None  # a private Redis instead of the stack's (scenario 5 flushes it)

    def __post_init__(self) -> None:
        self.prefix = f"{self.tag}."
        self.view_prefix = self.view_prefix or self.tag
        self.hmac_key = "reliability-hmac-key-" + self.tag
        self._next_port = 18000 + random.SystemRandom().randrange(0, 180) * 5

    def env(self, service: str, *, view_prefix: str | None = None, view_group: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(s.upper() + "_" for s in SERVICES))}
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": self.stack.kafka, "DATABASE_URL": self.stack.database_url,
            "REDIS_URL": self.redis_url or self.stack.redis_url, "MARKETING_API_KEY": self.stack.api_key,
            "KAFKA_TOPIC_PREFIX": self.prefix, "LOG_LEVEL": "WARNING",
            "MARKETING_RATE_LIMIT_PER_S": "100000", "MARKETING_RATE_LIMIT_BURST": "100000",
            "GIFTCARD_LEDGER_CARD_HMAC_KEY": self.hmac_key,
            "SEGMENT_ENGINE_SWEEP_ON_START": "false",
            # Widen the window between the database commit and the offset commit, so that a good share of
            # the random kills land in it (the crash scenario counts them).
            "MARKETING_FAULT_PAUSE_BEFORE_COMMIT_S": os.environ.get("RELIABILITY_COMMIT_PAUSE_S", "0.05"),
        }
        if service != "marketing_view":
            env[f"{service.upper()}_DB_SCHEMA"] = f"{service}_{self.tag}"
            env[f"{service.upper()}_CONSUMER_GROUP"] = f"{service}-{self.tag}"
        else:
            env["MARKETING_VIEW_KEY_PREFIX"] = view_prefix or self.view_prefix
            env["MARKETING_VIEW_CONSUMER_GROUP"] = view_group or f"marketing_view-{self.tag}"
        return env

    def port(self) -> int:
        self._next_port += 1
        return self._next_port

    def add(self, service: str, replica: int = 0, **kw: str) -> Proc:
        proc = Proc(service, replica, self.port(), self.env(service, **kw))
        self.procs.append(proc)
        return proc

    def of(self, service: str) -> list[Proc]:
        return [p for p in self.procs if p.service == service]

    async def create_topics(self) -> None:
        specs = {name: min(n, 3) for name, n in topic_specs(self.prefix).items()}
        await ensure_topics(self.stack.kafka, specs, config=topic_configs(self.prefix))

    async def start(self, procs: Iterable[Proc] | None = None) -> None:
        procs = list(procs if procs is not None else self.procs)
        for p in procs:
            p.start()
        await asyncio.gather(*(p.wait_ready() for p in procs))

    def stop_all(self) -> None:
        for p in self.procs:
            p.stop()

    async def drop(self) -> None:
        """Drop this world's schemas, topics and Redis keys (the broker's memory is shared with everyone)."""
        conn = await asyncpg.connect(self.stack.database_url)
        try:
            for service in SERVICES[:3]:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{service}_{self.tag}" CASCADE')
        finally:
            await conn.close()
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.kafka, request_timeout_ms=10000)
        try:
            await admin.start()
            await admin.delete_topics(list(topic_specs(self.prefix)))
        except Exception as exc:
            print(f"could not delete topics {self.prefix}*: {exc!r}")
        finally:
            await admin.close()
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.redis_url or self.stack.redis_url)
        try:
            for prefix in {self.view_prefix or self.tag, *self.extra_view_prefixes}:
                async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                    await client.unlink(key)
        finally:
            await client.aclose()


async def publish_raw(bootstrap: str, items: list[tuple[str, bytes | None, bytes]], *, rate: float = 0,
                      placed: dict[tuple[str, int], list[bytes]] | None = None) -> None:
    """(topic, key, value) in order; acks=all, idempotent, so per-key order is kept. ``rate``: messages per
    second (0: as fast as Kafka takes them). ``placed`` collects the values per (topic, partition) in offset order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    started = time.monotonic()
    try:
        pending: list[tuple[Any, bytes]] = []

        async def flush() -> None:
            for fut, value in pending:
                meta = await fut
                if placed is not None:
                    placed.setdefault((meta.topic, meta.partition), []).append(value)
            pending.clear()

        for i, (topic, key, value) in enumerate(items, 1):
            pending.append((await producer.send(topic, value, key=key), value))
            if len(pending) >= 500:
                await flush()
            if rate > 0 and i % 20 == 0:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    await flush()
                    await asyncio.sleep(ahead)
        await flush()
    finally:
        await producer.stop()


def encode(messages: list[Any], prefix: str) -> list[tuple[str, bytes | None, bytes]]:
    return [(prefix + m.topic, m.key, orjson.dumps(m.event)) for m in messages]


async def eventually(check: Any, *, timeout_s: float, interval_s: float = 1.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = await check()
            if result:
                return result
            last = result
        except (AssertionError, httpx.HTTPError, OSError, asyncpg.PostgresError) as exc:
            last = exc
        await asyncio.sleep(interval_s)
    raise AssertionError(f"{what} not reached within {timeout_s}s; last: {last!r}"[:6000])
