"""Bare limits of this machine, measured in the same run as the system figures they are compared with."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from shared.kafka import ensure_topics

HERE = Path(__file__).parent
POS_SIZED = orjson.dumps({  # a typical sale.completed, about 700 bytes
    "event_id": "8f0c6c1e-3b1a-4c55-9a52-1d1f5b0f2a01", "event_type": "sale.completed", "schema_version": 1,
    "occurred_at": "2026-11-28T14:03:12-05:00", "store_id": "S-001", "register_id": "R-03",
    "invoice_number": "INV-2026-000184", "customer_id": "C-10042", "currency": "USD",
    "lines": [{"sku": "SKU-88231", "category": "Footwear", "quantity": 1, "unit_price": "89.99", "line_total": "89.99"},
              {"sku": "SKU-11002", "category": "Socks", "quantity": 3, "unit_price": "4.00", "line_total": "12.00"}],
    "subtotal": "101.99", "discount_total": "10.20", "tax_total": "7.34", "total": "99.13", "coupon_codes": ["FALL10"],
    "tenders": [{"type": "gift_card", "amount": "50.00"}, {"type": "credit_card", "amount": "49.13"}],
})


async def passthrough(bootstrap: str, run_id: str, events: int) -> dict[str, float]:
    """A plain aiokafka hop: read POS-sized events and produce them to another topic, batched, no decoding."""
    source, sink = f"bench.{run_id}.in", f"bench.{run_id}.out"
    await ensure_topics(bootstrap, {source: 6, sink: 6})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        pending = [await producer.send(source, POS_SIZED, key=f"C-{i % 5000}".encode()) for i in range(events)]
        await asyncio.gather(*pending)
        consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"bench-{run_id}",
                                    auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=500)
        await consumer.start()
        moved = 0
        started = time.perf_counter()
        try:
            while moved < events:
                batches = await consumer.getmany(timeout_ms=500)
                futures = []
                for _tp, records in batches.items():
                    for r in records:
                        futures.append(await producer.send(sink, r.value, key=r.key))
                await asyncio.gather(*futures)
                if batches:
                    await consumer.commit()
                moved += len(futures)
            elapsed = time.perf_counter() - started
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    return {"passthrough_events_per_s": events / elapsed, "passthrough_events": events}


async def bare_redis(url: str, run_id: str, customers: int, doc_bytes: int) -> dict[str, float]:
    """Pipelined writes and reads of tab-sized documents."""
    redis = Redis.from_url(url)
    doc = b"x" * doc_bytes
    keys = [f"bench:{run_id}:{{C-{i}}}" for i in range(customers)]
    try:
        started = time.perf_counter()
        for chunk in range(0, customers, 500):
            pipe = redis.pipeline(transaction=False)
            for key in keys[chunk:chunk + 500]:
                pipe.set(key, doc)
            await pipe.execute()
        write_s = time.perf_counter() - started
        started = time.perf_counter()
        for chunk in range(0, customers, 500):
            pipe = redis.pipeline(transaction=False)
            for key in keys[chunk:chunk + 500]:
                pipe.get(key)
            await pipe.execute()
        read_s = time.perf_counter() - started
        for chunk in range(0, customers, 1000):
            await redis.delete(*keys[chunk:chunk + 1000])
    finally:
        await redis.aclose()
    return {"bare_redis_writes_per_s": customers / write_s, "bare_redis_reads_per_s": customers / read_s}


BARE_APP = '''
import orjson, uvicorn
from fastapi import FastAPI, Response
BODY = orjson.dumps({"customer_id": "C-1", "as_of": "2026-12-03T15:04:05Z", "segments": [], "pad": "x" * %d})
app = FastAPI()
@app.get("/v1/customers/{customer_id}/marketing")
async def tab(customer_id: str) -> Response:
    return Response(BODY, media_type="application/json")
uvicorn.run(app, host="127.0.0.1", port=%d, loop="uvloop", log_config=None, access_log=False)
'''


def loadgen() -> str:
    binary = HERE / ".build" / "loadgen"
    if not binary.exists():
        binary.parent.mkdir(exist_ok=True)
        subprocess.run(["go", "build", "-o", str(binary), "."], cwd=HERE / "loadgen", check=True,
                       env={**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"})
    return str(binary)


def run_load(urls: list[str], *, rate: float = 0, connections: int = 16, seconds: float = 10,
             header: str | None = None) -> dict[str, Any]:
    args = [loadgen(), "-duration", f"{seconds}s", "-connections", str(connections), "-rate", str(rate)]
    for u in urls:
        args += ["-url", u]
    if header:
        args += ["-header", header]
    return orjson.loads(subprocess.run(args, check=True, capture_output=True).stdout)


def bare_http(port: int, body_bytes: int, seconds: float, rate: float) -> dict[str, float]:
    """The same server and framework as the read API (uvicorn + FastAPI on uvloop), answering a constant.

    It runs in a session of its own, as the stack's services do: with the kernel's autogroup scheduling a
    server sharing the benchmark's session (and its load generator) gets a different share of the CPU.
    """
    server = subprocess.Popen([sys.executable, "-c", BARE_APP % (body_bytes, port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/v1/customers/C-1/marketing"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                run_load([url], seconds=0.2, connections=1)
                break
            except subprocess.CalledProcessError:
                time.sleep(0.2)
        closed = run_load([url], seconds=seconds, connections=16)
        fixed = run_load([url], seconds=seconds, rate=rate, connections=64)
    finally:
        server.terminate()
        server.wait(10)
    return {"bare_http_rps": closed["rps"], "bare_http_p99_ms": fixed["p99_ms"], "bare_http_p50_ms": fixed["p50_ms"],
            "bare_http_p90_ms": fixed["p90_ms"],
            "bare_http_fixed_rate": rate}
