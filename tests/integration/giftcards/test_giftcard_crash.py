"""A crash in the middle of a stream (SIGKILL of the service's process): after a restart every POS event is
applied exactly once, every balance is right, and each card's published versions have no gap."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import asyncpg
import orjson

from shared.contracts import topics as t
from tests.conftest import Stack
from tests.helpers import eventually, publish, read_topic
from tests.integration.giftcards.conftest import card_number, drop_schema, pos_event

ROOT = Path(__file__).resolve().parents[3]
CARDS = 30
REDEMPTIONS, RELOADS = 20, 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "services.giftcard_ledger"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


async def test_a_killed_service_resumes_without_losing_or_doubling_anything(
    stack: Stack, topics: str, isolation: str, service_env: dict[str, str], tmp_path: Path,
) -> None:
    schema = f"giftcards_crash_{isolation}"
    env = {**os.environ, **service_env, "GIFTCARD_LEDGER_DB_SCHEMA": schema,
           "GIFTCARD_LEDGER_CONSUMER_GROUP": f"giftcards-crash-{isolation}",
           "GIFTCARD_LEDGER_HTTP_PORT": str(free_port()), "LOG_LEVEL": "WARNING"}
    numbers = [card_number() for _ in range(CARDS)]
    events = [pos_event("giftcard.activated", n, amount="100.00") for n in numbers]
    for i in range(max(REDEMPTIONS, RELOADS)):
        for n in numbers:
            if i < REDEMPTIONS:
                events.append(pos_event("giftcard.redeemed", n, amount="1.00"))
            if i < RELOADS:
                events.append(pos_event("giftcard.reloaded", n, amount="1.00"))
    conn = await asyncpg.connect(stack.database_url)
    process = start(env, tmp_path / "service.log")
    try:
        await publish(stack.kafka, topics + t.POS_GIFTCARD_ACTIVITY,
                      [(e["card_number"].encode(), orjson.dumps(e)) for e in events])

        async def some_applied() -> bool:
            try:
                return bool(await conn.fetchval(f'SELECT count(*) > 150 FROM "{schema}".ledger_entries'))
            except asyncpg.UndefinedTableError:
                return False

        await eventually(some_applied, timeout_s=60, interval_s=0.02, what="the service is half-way")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        applied_before = await conn.fetchval(f'SELECT count(*) FROM "{schema}".processed_messages')
        print(f"killed after {applied_before} of {len(events)} events")

        process = start(env, tmp_path / "service.log")

        async def all_applied() -> bool:
            return await conn.fetchval(f'SELECT count(*) FROM "{schema}".processed_messages') == len(events)

        await eventually(all_applied, timeout_s=90, what="every event applied after the restart")

        async def outbox_drained() -> bool:
            return await conn.fetchval(f'SELECT count(*) FROM "{schema}".outbox') == 0

        await eventually(outbox_drained, timeout_s=60, what="the outbox drained")
        cards = await conn.fetch(f'SELECT card_id, current_balance, version FROM "{schema}".cards')
        assert len(cards) == CARDS
        expected = Decimal("100.00") - REDEMPTIONS + RELOADS
        assert {c["current_balance"] for c in cards} == {expected}, "every event applied exactly once"
        assert {c["version"] for c in cards} == {1 + REDEMPTIONS + RELOADS}
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".rejections') == 0
        mismatched = await conn.fetchval(
            f'SELECT count(*) FROM "{schema}".cards c WHERE current_balance <> '
            f'(SELECT sum(amount) FROM "{schema}".ledger_entries e WHERE e.card_id = c.card_id)')
        assert mismatched == 0

        total = CARDS * (1 + REDEMPTIONS + RELOADS)
        records = await read_topic(stack.kafka, topics + t.GIFTCARD_CARDS, at_least=total, timeout_s=60)
        versions: dict[bytes, set[int]] = defaultdict(set)
        for r in records:
            versions[r.key].add(orjson.loads(r.value)["version"])
        assert len(versions) == CARDS
        assert all(v == set(range(1, 2 + REDEMPTIONS + RELOADS)) for v in versions.values()), \
            "every version published (a re-publish after the crash is allowed, a gap is not)"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
        await conn.close()
        await drop_schema(stack, schema)
