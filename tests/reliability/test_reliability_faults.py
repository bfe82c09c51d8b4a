"""Scenarios 1, 2, 3, 6 and 8 of the fault-tolerance suite (docs/reliability.md): crashes, duplicates and
disorder, poison, replay into a fresh read model, scale-out. The services run as separate processes."""

from __future__ import annotations

import asyncio
import random
import uuid

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from shared.contracts import topics
from tests.reliability import observe, traffic
from tests.reliability.common import GROUP_TOPICS, committed, converge, deploy, lag
from tests.reliability.harness import FULL, Proc, World, eventually, publish_raw, seed, size
from tests.reliability.oracle import compute

DB_SERVICES = ("giftcard_ledger", "redemption_ledger", "segment_engine")


async def _applied_beyond_commit(world: World, proc: Proc, placed: dict[tuple[str, int], list[bytes]]) -> int:
    """Right after a kill: events whose effect is committed in Postgres (inbox) but whose offset is not.
    More than 0 means the kill fell between the database commit and the offset commit."""
    offsets = await committed(world, proc.service)
    covered: set[str] = set()
    for (topic, partition), values in list(placed.items()):
        if topic.removeprefix(world.prefix) not in GROUP_TOPICS[proc.service]:
            continue
        upto = offsets.get((topic, partition), 0)
        for value in values[:upto]:
            try:
                covered.add(orjson.loads(value)["event_id"])
            except (ValueError, KeyError, TypeError):
                pass
    conn = await asyncpg.connect(world.stack.database_url)
    try:
        inbox = {str(r[0]) for r in await conn.fetch(
            f'SELECT event_id FROM "{proc.service}_{world.tag}".processed_messages')}
    finally:
        await conn.close()
    return len(inbox - covered)


@pytest.mark.timeout(size(400, 3600))
async def test_crashes_kill9_each_consumer_at_random_moments(world: World) -> None:
    """Scenario 1: kill -9 every consumer service many times during a run; final state equals the oracle."""
    s = seed()
    rng = random.Random(s)
    kills_each = size(3, 20)
    log = traffic.events(s, customers=size(120, 1000), days=size(90, 365), prefix=world.prefix)
    exp = compute(log, world.prefix)
    deploy(world)
    await world.start()
    placed: dict[tuple[str, int], list[bytes]] = {}
    rate = len(log) / (kills_each * size(9, 11))
    publisher = asyncio.create_task(publish_raw(world.stack.kafka, log, rate=rate, placed=placed))
    windows: dict[str, int] = {}

    async def killer(proc: Proc, rng: random.Random) -> None:
        for _ in range(kills_each):
            await proc.wait_ready()
            await asyncio.sleep(rng.uniform(0.2, 3.0))
            proc.kill9()
            if proc.service in DB_SERVICES and await _applied_beyond_commit(world, proc, placed) > 0:
                windows[proc.service] = windows.get(proc.service, 0) + 1
            proc.start()

    try:
        await asyncio.gather(*(killer(p, random.Random(rng.random())) for p in world.procs))
        await publisher
    finally:
        publisher.cancel()
    result = await converge(world, exp, timeout_s=size(240, 1200))
    kills = {p.service: p.kills for p in world.procs}
    print(f"crashes: events={len(log)} distinct={exp.applied} kills={kills} "
          f"kills between db commit and offset commit={windows} {result}")
    assert all(k >= kills_each for k in kills.values())
    assert result["lost"] == 0 and result["doubled"] == 0
    assert await eventually(lambda: _lag_zero(world), timeout_s=60, what="lag 0")


async def _lag_zero(world: World) -> bool:
    lags = await lag(world)
    return all(v == 0 for v in lags.values()) or (print(f"lag {lags}") and False)


@pytest.mark.timeout(size(400, 3600))
async def test_duplicates_and_disorder(world: World) -> None:
    """Scenario 2: 10 % of events published twice, 5 % swapped within their key: final state equals the oracle."""
    s = seed()
    rng = random.Random(s)
    log = traffic.events(s, customers=size(150, 1000), days=size(90, 365), prefix=world.prefix)
    noisy, swaps, dups = traffic.disorder(log, rng, swap=0.05, duplicate=0.10)
    exp = compute(noisy, world.prefix)
    deploy(world)
    await world.start()
    await publish_raw(world.stack.kafka, noisy)
    result = await converge(world, exp, timeout_s=size(240, 1200))
    print(f"duplicates/disorder: events={len(log)} published={len(noisy)} duplicates={dups} swaps={swaps} {result}")
    assert result["lost"] == 0 and result["doubled"] == 0


def _fix(value: bytes) -> bytes | None:
    """The 'fix' applied before replaying a dead letter: repairable ones are repaired, the rest stay dead."""
    try:
        body = orjson.loads(value)
    except ValueError:
        return None
    if body.get("schema_version") == 99:
        return orjson.dumps({**body, "schema_version": 1})
    if body.get("occurred_at") == "yesterday":
        return orjson.dumps({**body, "occurred_at": "2026-11-30T10:00:00+00:00"})
    if "event_id" not in body:
        return orjson.dumps({**body, "event_id": str(uuid.UUID(int=hash(value) & (2**128 - 1), version=4))})
    return None


async def _dead_letters(world: World, at_least: int) -> list:
    consumer = AIOKafkaConsumer(*(world.prefix + topics.dlq(t) for t in topics.INBOUND_TOPICS),
                                bootstrap_servers=world.stack.kafka, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records: list = []
    try:
        for _ in range(300):
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            if len(records) >= at_least:
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    records.extend(batch)
                break
    finally:
        await consumer.stop()
    return records


@pytest.mark.timeout(size(400, 3600))
async def test_poison_reaches_dead_letters_and_replay_adds_nothing_twice(world: World) -> None:
    """Scenario 3: 100 bad messages over every inbound topic and many partitions: each dead-lettered with its
    provenance by each group that reads it, everything else processed, lag 0; replaying the fixed dead letters
    (twice) applies each of them exactly once."""
    s = seed()
    rng = random.Random(s)
    log = traffic.events(s, customers=size(80, 600), days=size(60, 365), prefix=world.prefix)
    bad = traffic.poison(rng, 100, world.prefix)
    mixed = list(log)
    for item in bad:
        mixed.insert(rng.randrange(len(mixed) + 1), item)
    exp = compute(mixed, world.prefix)
    deploy(world)
    await world.start()
    placed: dict[tuple[str, int], list[bytes]] = {}
    await publish_raw(world.stack.kafka, mixed, placed=placed)
    bad_values = {v for _, _, v in bad}
    where = {(t, p, o) for (t, p), values in placed.items() for o, v in enumerate(values) if v in bad_values}
    consumers_of = {t: [svc for svc, ts in GROUP_TOPICS.items() if t in ts] for t in topics.INBOUND_TOPICS}
    expected_dlq = {(t.removeprefix(world.prefix), p, o, f"{svc}-{world.tag}")
                    for t, p, o in where for svc in consumers_of[t.removeprefix(world.prefix)]}
    result = await converge(world, exp, timeout_s=size(180, 900))
    records = await _dead_letters(world, len(expected_dlq))
    got = set()
    for r in records:
        h = {k: v.decode() for k, v in r.headers}
        assert h["dlq.reason"], h
        got.add((h["dlq.original.topic"], int(h["dlq.original.partition"]), int(h["dlq.original.offset"]),
                 h["dlq.consumer.group"]))
    assert got == expected_dlq, f"missing {sorted(expected_dlq - got)[:5]} unexpected {sorted(got - expected_dlq)[:5]}"
    assert len(records) == len(expected_dlq), "a message was dead-lettered twice"
    assert await eventually(lambda: _lag_zero(world), timeout_s=60, what="lag 0")
    partitions = {(t, p) for t, p, _ in where}
    # Replay after the fix, twice (an operator re-running the replay): each repaired event applied once.
    originals = {}
    for r in records:
        h = {k: v.decode() for k, v in r.headers}
        originals[(h["dlq.original.topic"], int(h["dlq.original.partition"]), int(h["dlq.original.offset"]))] = r
    replay = []
    for (topic, partition, offset) in sorted(originals):
        raw = placed[(world.prefix + topic, partition)][offset]  # the original bytes (gift card DLQ is redacted)
        fixed = _fix(raw)
        if fixed is not None:
            replay.append((world.prefix + topic, originals[(topic, partition, offset)].key, fixed))
    replay = replay + replay
    exp2 = compute(mixed + replay, world.prefix)
    await publish_raw(world.stack.kafka, replay)
    result2 = await converge(world, exp2, timeout_s=size(120, 600))
    print(f"poison: events={len(log)} poison={len(bad)} partitions={len(partitions)} dead letters={len(records)} "
          f"replayed={len(replay)} (each of the {len(replay) // 2} repaired ones twice) {result} "
          f"after replay {result2}")
    assert exp2.applied - exp.applied == len(replay) // 2, "every repaired dead letter counts once"
    assert result2["lost"] == 0 and result2["doubled"] == 0


@pytest.mark.timeout(size(400, 3600))
async def test_replay_into_fresh_read_model_gives_identical_documents(world: World) -> None:
    """Scenario 6: every topic replayed from the beginning into a fresh read model: identical documents."""
    s = seed()
    log = traffic.events(s, customers=size(100, 1000), days=size(90, 365), prefix=world.prefix)
    exp = compute(log, world.prefix)
    deploy(world)
    await world.start()
    await publish_raw(world.stack.kafka, log)
    await converge(world, exp, timeout_s=size(180, 900))
    customers = sorted(exp.customers | {c for c in exp.invoices.values() if c})
    live = await observe.documents(world, world.of("marketing_view")[0].url, customers)
    fresh_prefix = world.tag + "r"
    world.extra_view_prefixes.append(fresh_prefix)
    fresh = world.add("marketing_view", 1, view_prefix=fresh_prefix, view_group=f"marketing_view-{world.tag}-fresh")
    await world.start([fresh])
    await converge(world, exp, timeout_s=size(180, 900), view=fresh.url)
    replayed = await observe.documents(world, fresh.url, customers)

    def strip(doc: dict) -> dict:
        return {k: v for k, v in doc.items() if k != "as_of"}

    different = [c for c in customers if strip(live[c]) != strip(replayed[c])]
    print(f"replay: events={len(log)} documents={len(customers)} different={len(different)}")
    assert not different, f"{different[:3]}: {strip(live[different[0]])} != {strip(replayed[different[0]])}"


@pytest.mark.timeout(size(400, 3600))
async def test_scale_out_two_replicas_one_killed(world: World) -> None:
    """Scenario 8: two replicas of each consumer service in one group; one of each killed mid-run."""
    s = seed()
    rng = random.Random(s)
    log = traffic.events(s, customers=size(120, 1000), days=size(90, 365), prefix=world.prefix)
    exp = compute(log, world.prefix)
    deploy(world, replicas=2)
    await world.start()
    publisher = asyncio.create_task(publish_raw(world.stack.kafka, log, rate=len(log) / size(20, 120)))
    await asyncio.sleep(rng.uniform(5, size(10, 60)))
    victims = [world.of(svc)[rng.randrange(2)] for svc in GROUP_TOPICS]
    for v in victims:
        v.kill9()
    try:
        await publisher
    finally:
        publisher.cancel()
    result = await converge(world, exp, timeout_s=size(240, 1200),
                            view=next(p.url for p in world.of("marketing_view") if p.alive))
    assert await eventually(lambda: _lag_zero(world), timeout_s=90, what="lag 0 with one replica each")
    print(f"scale-out: events={len(log)} replicas=2 killed={[f'{v.service}.{v.replica}' for v in victims]} {result}")
    assert result["lost"] == 0 and result["doubled"] == 0
    assert FULL or len(log) > 1000
