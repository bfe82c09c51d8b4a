"""System figures on the running stack: ingest, freshness, read, resident memory; and the machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from bench import baselines
from bench.kafka_util import GROUP_TOPICS, Encoded, LagProbe, publish_all, start_producer
from bench.stats import PROBE_LEGS, percentile, rate
from ops.simulator import Config, simulate
from shared.contracts import topics as t

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("giftcard_ledger", "redemption_ledger", "segment_engine", "marketing_view")
OUTBOX_SCHEMAS = ("giftcard_ledger", "redemption_ledger", "segment_engine")


@dataclass(frozen=True)
class Stack:
    kafka: str
    database_url: str
    redis_url: str
    api_key: str
    view_url: str

    @classmethod
    def from_env(cls) -> Stack:
        env = dict(os.environ)
        path = ROOT / ".local" / "stack.env"
        if path.exists():
            for line in path.read_text().splitlines():
                if "=" in line and not line.startswith("#"):
                    k, v = line.split("=", 1)
                    env.setdefault(k.strip(), v.strip().strip("'\""))
                    os.environ.setdefault(k.strip(), env[k.strip()])  # in-process services read the same
        return cls(env["KAFKA_BOOTSTRAP_SERVERS"], env["DATABASE_URL"], env["REDIS_URL"], env["MARKETING_API_KEY"],
                   env.get("MARKETING_VIEW_URL", "http://127.0.0.1:8084"))


async def wait_read_model(stack: Stack, *, timeout_s: float = 900, say: Any = print) -> float:
    """Wait until the read API is ready. After ``make up`` the projector rebuilds the read model from the
    domain topics (the local Redis keeps nothing across restarts): minutes of CPU after a day of traffic, which
    every figure measured meanwhile would share. Returns the seconds waited."""
    started = time.perf_counter()
    next_say = 0.0
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            try:
                if (await http.get(f"{stack.view_url}/readyz")).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            waited = time.perf_counter() - started
            if waited > timeout_s:
                raise TimeoutError(f"the read API at {stack.view_url} was not ready within {timeout_s:.0f} s")
            if waited >= next_say:
                say(f"[bench] waiting for the read model (the projector rebuilds it after a restart): {waited:.0f} s")
                next_say = waited + 15
            await asyncio.sleep(1)


def pos_mix(customers: int, days: int, seed: int, prefix: str) -> tuple[list[Encoded], list[str]]:
    """A realistic POS mix from the simulator, pre-encoded; and the customer ids it mentions."""
    sim = simulate(Config(customers=customers, days=days, seed=seed, now=datetime.now(UTC), customer_prefix=prefix))
    return [(m.topic, m.key, orjson.dumps(m.event)) for m in sim.messages], sorted(sim.customers)


async def outbox_backlog(conn: asyncpg.Connection) -> int:
    """How many of the outboxes hold rows (0 = all empty). Cheap on purpose: it is polled ten times a second
    during the measurement, and a count(*) reads the whole table (dead rows too) in the services' Postgres."""
    total = 0
    for schema in OUTBOX_SCHEMAS:
        total += await conn.fetchval(f'SELECT count(*) FROM (SELECT 1 FROM "{schema}".outbox ORDER BY id LIMIT 1) x')
    return total


async def wait_caught_up(stack: Stack, *, timeout_s: float, interval_s: float = 0.1,
                         drained: dict[str, float] | None = None) -> float:
    """Poll until every group has lag 0 and every outbox is empty twice in a row; returns that moment.

    ``drained`` (if given) gets, per group and for the outboxes, the first moment of the last stretch with
    nothing left (perf_counter): which consumer finished last, i.e. which one bounds the ingest rate."""
    conn = await asyncpg.connect(stack.database_url, server_settings={"plan_cache_mode": "force_custom_plan"})
    try:
        async with LagProbe(stack.kafka, GROUP_TOPICS) as probe:
            deadline = time.perf_counter() + timeout_s
            first_clean: float | None = None
            while time.perf_counter() < deadline:
                now = time.perf_counter()
                lags = await probe.lags()
                backlog = await outbox_backlog(conn)
                if drained is not None:
                    for name, left in (*lags.items(), ("outbox", backlog)):
                        if left:
                            drained.pop(name, None)
                        else:
                            drained.setdefault(name, now)
                if not any(lags.values()) and backlog == 0:
                    if first_clean is not None:  # confirmed: outbox rows published and consumed in between
                        return first_clean
                    first_clean = now
                else:
                    first_clean = None
                await asyncio.sleep(interval_s)
            raise TimeoutError(f"not caught up within {timeout_s}s: lags {lags}, outboxes not empty {backlog}")
    finally:
        await conn.close()


async def ingest(stack: Stack, messages: list[Encoded], *, timeout_s: float) -> dict[str, Any]:
    await wait_caught_up(stack, timeout_s=120)  # start from a quiet system
    producer = await start_producer(stack.kafka)
    try:
        started = time.perf_counter()
        await publish_all(producer, messages)
        published = time.perf_counter()
    finally:
        await producer.stop()
    drained: dict[str, float] = {}
    done = await wait_caught_up(stack, timeout_s=timeout_s, drained=drained)
    elapsed = done - started
    return {"ingest_events": len(messages), "ingest_seconds": elapsed,
            "ingest_drained_s": {name: round(at - started, 3) for name, at in sorted(drained.items())},
            "ingest_events_per_s": rate(len(messages), elapsed),
            "ingest_publish_events_per_s": rate(len(messages), published - started)}


class Background:
    """POS traffic at a fixed rate, in the background, until stopped."""

    def __init__(self, stack: Stack, messages: list[Encoded], events_per_s: float) -> None:
        self.stack, self.messages, self.rate = stack, messages, events_per_s
        self.stop = asyncio.Event()
        self.task: asyncio.Task[int] | None = None
        self.started = 0.0

    async def __aenter__(self) -> Background:
        self.producer = await start_producer(self.stack.kafka)
        self.started = time.perf_counter()
        self.task = asyncio.create_task(publish_all(self.producer, self.messages, rate=self.rate, stop=self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        self.sent = await self.task
        self.achieved = rate(self.sent, time.perf_counter() - self.started)
        await self.producer.stop()


def probe_event(customer_id: str, n: int) -> bytes:
    return orjson.dumps({
        "event_id": str(uuid.uuid4()), "event_type": "coupon.redeemed", "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(), "store_id": "S-001", "register_id": "R-01",
        "invoice_number": f"INV-PROBE-{customer_id}-{n}", "customer_id": customer_id, "coupon_code": "FALL10",
        "discount_amount": "10.20", "currency": "USD",
    })


async def freshness(stack: Stack, background: list[Encoded], events_per_s: float, *, probes: int,
                    run_tag: str, spacing_s: float = 0.1, timeout_s: float = 10.0) -> dict[str, Any]:
    """Publication of a probe coupon.redeemed -> keyspace notification of its customer's document."""
    redis = Redis.from_url(stack.redis_url)
    previous = (await redis.config_get("notify-keyspace-events")).get("notify-keyspace-events", "")
    await redis.config_set("notify-keyspace-events", "Kh")
    pubsub = redis.pubsub()
    await pubsub.psubscribe(f"__keyspace@*__:mv:*:{{C-P{run_tag}-*}}:d")
    arrived: dict[str, float] = {}
    sent: dict[str, float] = {}
    arrived_wall: dict[str, float] = {}
    sent_wall: dict[str, float] = {}
    relayed_wall: dict[str, float] = {}
    all_arrived = asyncio.Event()

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                channel = message["channel"].decode()
                customer = channel[channel.index("{") + 1:channel.index("}")]
                arrived.setdefault(customer, time.perf_counter())
                arrived_wall.setdefault(customer, time.time())
                if len(arrived) >= probes:
                    all_arrived.set()

    listener = asyncio.create_task(listen())
    max_lag: dict[str, int] = {}

    async def watch_lag() -> None:  # which consumer falls behind, if any (explains a slow probe)
        async with LagProbe(stack.kafka, GROUP_TOPICS) as lag_probe:
            while True:
                for group, lag in (await lag_probe.lags()).items():
                    max_lag[group] = max(lag, max_lag.get(group, 0))
                await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_lag())
    relayed = await _domain_reader(stack.kafka, t.COUPON_REDEMPTIONS, f"C-P{run_tag}-".encode(), relayed_wall)
    producer = await start_producer(stack.kafka, linger_ms=0)
    try:
        async with Background(stack, background, events_per_s) as bg:
            await asyncio.sleep(2.0)  # reach the steady state first
            for n in range(probes):
                customer = f"C-P{run_tag}-{n:05d}"
                value = probe_event(customer, n)
                sent[customer] = time.perf_counter()
                sent_wall[customer] = time.time()
                await producer.send(t.POS_COUPON_REDEMPTIONS, value, key=customer.encode())
                await asyncio.sleep(spacing_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_arrived.wait(), timeout_s)
    finally:
        await producer.stop()
        listener.cancel()
        watcher.cancel()
        relayed.cancel()
        await pubsub.aclose()
        await redis.config_set("notify-keyspace-events", previous)
        await redis.aclose()
    samples = [1000 * (arrived[c] - s) for c, s in sent.items() if c in arrived]
    lost = len(sent) - len(samples)
    if not samples:
        raise RuntimeError("no probe reached Redis")
    hops = await _probe_hops(stack, run_tag, sent_wall, relayed_wall, arrived_wall)
    return {"freshness_p50_ms": percentile(samples, 50), "freshness_p90_ms": percentile(samples, 90),
            "freshness_p99_ms": percentile(samples, 99), "freshness_max_ms": max(samples),
            "freshness_hops_ms": hops,
            "freshness_probes": len(samples), "freshness_probes_timed_out": lost,
            "freshness_rate_events_per_s": bg.achieved, "freshness_max_lag_per_group": max_lag,
            "freshness_samples_ms": sorted(samples)}


async def _domain_reader(bootstrap: str, topic: str, key_prefix: bytes, seen: dict[str, float]) -> asyncio.Task[None]:
    """Reads ``topic`` from its end; the producer timestamp of each record keyed ``key_prefix...`` is when the
    outbox relay handed it to Kafka."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50,
                                auto_offset_reset="latest")  # no group: every partition, from its end
    await consumer.start()
    for tp in consumer.assignment():
        await consumer.position(tp)  # resolves "latest" now, before the first probe

    async def read() -> None:
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        if r.key is not None and r.key.startswith(key_prefix):
                            seen.setdefault(r.key.decode(), r.timestamp / 1000)
        finally:
            await consumer.stop()

    return asyncio.create_task(read())


async def _probe_hops(stack: Stack, run_tag: str, sent: dict[str, float], relayed: dict[str, float],
                      arrived: dict[str, float]) -> dict[str, dict[str, float]]:
    """Where a probe's time goes (wall clocks of one machine): publication -> start of redemption_ledger's
    transaction (the redemption row's ``recorded_at``) -> the outbox relay's send -> the tab in Redis."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch(
            "SELECT customer_id, extract(epoch FROM recorded_at)::float8 AS at FROM redemption_ledger.redemptions"
            " WHERE customer_id LIKE $1", f"C-P{run_tag}-%")
    finally:
        await conn.close()
    return probe_legs(sent, {r["customer_id"]: r["at"] for r in rows}, relayed, arrived)


def probe_legs(sent: dict[str, float], applied: dict[str, float], relayed: dict[str, float],
               arrived: dict[str, float]) -> dict[str, dict[str, float]]:
    """Percentiles (ms) of each leg of the probes seen at every point; the legs of one probe add up to its
    freshness (up to the clocks' resolution)."""
    legs: dict[str, list[float]] = {leg: [] for leg in PROBE_LEGS}
    for customer, at in sent.items():
        if customer in applied and customer in relayed and customer in arrived:
            legs["to_ledger_transaction"].append(1000 * (applied[customer] - at))
            legs["ledger_to_relay_send"].append(1000 * (relayed[customer] - applied[customer]))
            legs["relay_to_tab"].append(1000 * (arrived[customer] - relayed[customer]))
    return {leg: {"p50": percentile(v, 50), "p90": percentile(v, 90), "p99": percentile(v, 99), "n": len(v)}
            for leg, v in legs.items() if v}


def read_urls(stack: Stack, customers: list[str], limit: int = 500) -> list[str]:
    return [f"{stack.view_url}/v1/customers/{c}/marketing" for c in customers[:limit]]


async def read_and_bare_http(stack: Stack, customers: list[str], background: list[Encoded], events_per_s: float,
                             *, seconds: float, bare_port: int, bare_body_bytes: int) -> dict[str, Any]:
    urls = read_urls(stack, customers)
    header = f"Authorization: Bearer {stack.api_key}"
    loop = asyncio.get_running_loop()
    async with Background(stack, background, events_per_s) as bg:
        closed = await loop.run_in_executor(None, lambda: baselines.run_load(urls, seconds=seconds, connections=16,
                                                                             header=header))
    fixed_rate = max(10.0, round(0.5 * closed["rps"] / 10) * 10)
    bare = await loop.run_in_executor(None, lambda: baselines.bare_http(bare_port, bare_body_bytes, seconds,
                                                                        fixed_rate))
    async with Background(stack, background[bg.sent:], events_per_s) as bg2:
        fixed = await loop.run_in_executor(None, lambda: baselines.run_load(urls, seconds=seconds, rate=fixed_rate,
                                                                            connections=64, header=header))
    # Not a target, an explanation: the same bare server under the same background ingest as the read API,
    # i.e. what the machine alone does to a constant answer's throughput and tail while the cores are busy.
    async with Background(stack, background[bg.sent + bg2.sent:], events_per_s):
        busy = await loop.run_in_executor(None, lambda: baselines.bare_http(bare_port, bare_body_bytes, seconds,
                                                                            fixed_rate))
    return {"read_rps": closed["rps"], "read_closed_errors": closed["errors"], "read_fixed_rate": fixed_rate,
            "read_p50_ms": fixed["p50_ms"], "read_p90_ms": fixed["p90_ms"], "read_p99_ms": fixed["p99_ms"],
            "read_fixed_errors": fixed["errors"], "read_background_events_per_s": bg2.achieved, **bare,
            **{key.replace("bare_http_", "bare_http_during_ingest_"): value for key, value in busy.items()
               if key != "bare_http_fixed_rate"}}


PROCESSES = (*SERVICES, "marketing_view_projector")  # the stack runs marketing_view as API + projector


def service_memory() -> dict[str, Any]:
    rss, hwm = {}, {}
    for service in PROCESSES:
        pid_file = ROOT / ".local" / "run" / f"{service}.pid"
        try:
            pid = pid_file.read_text().split()[0]
            status = Path(f"/proc/{pid}/status").read_text()
        except (OSError, IndexError):
            continue
        fields = {line.split(":")[0]: line.split(":")[1].split() for line in status.splitlines() if ":" in line}
        rss[service] = int(fields["VmRSS"][0]) / 1024
        hwm[service] = int(fields["VmHWM"][0]) / 1024
    return {"service_rss_mb": rss, "service_peak_rss_mb": hwm}


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


async def machine(stack: Stack) -> dict[str, Any]:
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    redis = Redis.from_url(stack.redis_url)
    try:
        redis_version = (await redis.info("server"))["redis_version"]
    finally:
        await redis.aclose()
    conn = await asyncpg.connect(stack.database_url)
    try:
        pg = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    kafka = "?"
    for jar_dir in (ROOT / ".local").glob("**/kafka*/libs"):
        jars = [p.name for p in jar_dir.glob("kafka-clients-*.jar")]
        if jars:
            kafka = jars[0].removeprefix("kafka-clients-").removesuffix(".jar")
            break
    import aiokafka
    import fastapi
    import redis as redis_py
    return {"cores": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1), "cpu": cpu,
            "python": platform.python_version(), "kernel": platform.release(), "redis": redis_version,
            "postgres": pg, "kafka": kafka, "aiokafka": aiokafka.__version__, "fastapi": fastapi.__version__,
            "redis_py": redis_py.__version__, "go": _version(["go", "version"]),
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg())}
