"""Scenarios 4 and 5: infrastructure outages and read model loss.

Scenario 4 stops the SHARED infrastructure of the local stack (Kafka restarted, Postgres stopped 30 s, Redis
stopped 30 s): marked `outage`, ordered last by tests/reliability/conftest.py. Scenario 5 flushes a PRIVATE
redis-server (a FLUSHALL on the shared one would wipe other tests' data)."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability import observe, traffic
from tests.reliability.common import converge, deploy
from tests.reliability.harness import ROOT, Proc, World, eventually, publish_raw, seed, size
from tests.reliability.oracle import compute

STACK_PY = ROOT / "deploy" / "local" / "stack.py"


def _stack_module() -> Any:
    spec = importlib.util.spec_from_file_location("local_stack", STACK_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _infra_up() -> None:
    subprocess.run([sys.executable, str(STACK_PY), "up", "--infra-only"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _not_ready(procs: list[Proc], timeout_s: float = 60) -> dict[str, Any]:
    """Each process reports the outage on /readyz (503 with the failing dependency)."""
    seen: dict[str, Any] = {}

    async def check() -> bool:
        for p in procs:
            if p.service in seen:
                continue
            try:
                status, body = await p.readyz()
            except httpx.HTTPError:
                continue
            if status != 200:
                seen[p.service] = body
        return len(seen) == len(procs)

    await eventually(check, timeout_s=timeout_s, interval_s=0.3, what="outage reported on /readyz")
    return seen


async def _main_stack_healthy(stack: Any) -> None:
    urls = [stack.env.get(f"{s.upper()}_URL") for s in ("giftcard_ledger", "redemption_ledger", "segment_engine",
                                                        "marketing_view")]

    async def ok() -> bool:
        async with httpx.AsyncClient(timeout=3) as client:
            for url in filter(None, urls):
                if (await client.get(url + "/readyz")).status_code != 200:
                    return False
        return True

    await eventually(ok, timeout_s=180, interval_s=1, what="the main stack's services ready again by themselves")


@pytest.mark.outage
@pytest.mark.timeout(size(600, 3600))
async def test_outages_kafka_restart_postgres_and_redis_stopped(world: World) -> None:
    """Scenario 4: the services report each outage on /readyz, pause, resume by themselves; final state = oracle."""
    s = seed()
    stack_py = _stack_module()
    log = traffic.events(s, customers=size(120, 1000), days=size(90, 365), prefix=world.prefix)
    exp = compute(log, world.prefix)
    chunks = [log[i * len(log) // 5:(i + 1) * len(log) // 5] for i in range(5)]
    deploy(world)
    await world.start()
    procs = list(world.procs)
    db_procs = [p for p in procs if p.service != "marketing_view"]
    view = world.of("marketing_view")
    report: dict[str, Any] = {}

    # Kafka restarted mid-run (SIGTERM, then started again as `stack.py up --infra-only` does).
    await publish_raw(world.stack.kafka, chunks[0])
    t0 = time.monotonic()
    assert stack_py.stop_pid("kafka")
    report["kafka_readyz"] = sorted(await _not_ready(procs))
    _infra_up()
    await asyncio.gather(*(p.wait_ready(180) for p in procs))
    report["kafka_recovered_s"] = round(time.monotonic() - t0, 1)

    # Postgres stopped for 30 s while events keep coming.
    await publish_raw(world.stack.kafka, chunks[1])
    t0 = time.monotonic()
    stack_py.stop_postgres()
    report["postgres_readyz"] = sorted(await _not_ready(db_procs))
    await publish_raw(world.stack.kafka, chunks[2])
    await asyncio.sleep(max(0.0, 30 - (time.monotonic() - t0)))
    _infra_up()
    await asyncio.gather(*(p.wait_ready(180) for p in procs))
    report["postgres_down_s"] = round(time.monotonic() - t0, 1)

    # Redis stopped for 30 s (a restart without persistence: the read model is lost and rebuilt).
    await publish_raw(world.stack.kafka, chunks[3])
    t0 = time.monotonic()
    assert stack_py.stop_pid("redis")
    report["redis_readyz"] = sorted(await _not_ready(view))
    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.get(f"{view[0].url}/v1/customers/C-10000/marketing",
                             headers={"Authorization": f"Bearer {world.stack.api_key}"})
        assert r.status_code == 503, f"Redis down: the API must answer 503, not {r.status_code} {r.text[:200]}"
    await publish_raw(world.stack.kafka, chunks[4])
    await asyncio.sleep(max(0.0, 30 - (time.monotonic() - t0)))
    _infra_up()
    await asyncio.gather(*(p.wait_ready(300) for p in procs))
    report["redis_down_s"] = round(time.monotonic() - t0, 1)

    result = await converge(world, exp, timeout_s=size(300, 1200))
    await _main_stack_healthy(world.stack)
    print(f"outages: events={len(log)} {report} {result}; main stack ready again")
    assert result["lost"] == 0 and result["doubled"] == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _private_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.timeout(size(400, 3600))
async def test_read_model_loss_detected_never_served_and_rebuilt(stack: Any, tmp_path: Path) -> None:
    """Scenario 5: FLUSHALL mid-run on the read model's Redis: detected within 10 s, the API never serves wrong or
    empty data as current, and after the rebuild every document equals the oracle."""
    s = seed()
    rng = random.Random(s)
    port = _free_port()
    redis = _private_redis(port, tmp_path)
    world = World(stack, redis_url=f"redis://127.0.0.1:{port}/0")
    await world.create_topics()
    try:
        log = traffic.events(s, customers=size(100, 1000), days=size(90, 365), prefix=world.prefix)
        exp = compute(log, world.prefix)
        deploy(world)
        await world.start()
        view = world.of("marketing_view")[0]
        half = len(log) // 2
        await publish_raw(world.stack.kafka, log[:half])
        customers = sorted(exp.customers)
        watched = rng.sample(customers, min(20, len(customers)))
        await asyncio.sleep(5)
        before = await observe.documents(world, view.url, watched)
        floor = {c: (len(d["gift_cards"]), len(d["coupon_usage"])) for c, d in before.items()}
        violations: list[str] = []
        served: dict[str, int] = {"200": 0, "503": 0}
        flushed_at: list[float] = []
        detected: list[float] = []
        stop = asyncio.Event()

        async def reader() -> None:
            headers = {"Authorization": f"Bearer {stack.api_key}"}
            async with httpx.AsyncClient(timeout=5) as client:
                while not stop.is_set():
                    c = rng.choice(watched)
                    try:
                        doc = await observe.tab(client, view.url, stack.api_key, c)
                    except httpx.HTTPStatusError as exc:
                        served[str(exc.response.status_code)] = served.get(str(exc.response.status_code), 0) + 1
                        if exc.response.status_code == 503 and flushed_at and not detected:
                            detected.append(time.monotonic() - flushed_at[0])
                        continue
                    served["200"] += 1
                    got = (len(doc["gift_cards"]), len(doc["coupon_usage"]))
                    if got[0] < floor[c][0] or got[1] < floor[c][1]:
                        violations.append(f"{c}: served {got} after having served {floor[c]}")
                    r = await client.get(view.url + "/readyz", headers=headers)
                    if r.status_code != 200 and flushed_at and not detected:
                        detected.append(time.monotonic() - flushed_at[0])
                    await asyncio.sleep(0.02)

        reading = asyncio.create_task(reader())
        await asyncio.sleep(1)
        import redis.asyncio as aioredis

        client = aioredis.from_url(world.redis_url)
        flushed_at.append(time.monotonic())
        await client.flushall()
        await client.aclose()
        await publish_raw(world.stack.kafka, log[half:])
        result = await converge(world, exp, timeout_s=size(240, 1200))
        stop.set()
        await reading
        print(f"read model loss: events={len(log)} detection_s={detected[:1]} reads={served} "
              f"wrong_or_empty_served={len(violations)} {result}")
        assert detected and detected[0] <= 10, f"loss detected after {detected}"
        assert not violations, violations[:5]
        assert result["lost"] == 0 and result["doubled"] == 0
    finally:
        world.stop_all()
        await world.drop()
        redis.terminate()
        redis.wait()
