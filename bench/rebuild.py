"""Rebuild of marketing_view's read model from N typical customers' domain events; Redis bytes per customer."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from redis.asyncio import Redis

from bench.kafka_util import Encoded, publish_all, start_producer
from bench.system import Stack
from shared.contracts.topics import DOMAIN_TOPICS
from shared.kafka import delete_topics

CUSTOMER = "C-TPLXQXQXQX"
NUMBER = b"XQXQXQX"
SUFFIX = b"@@S@@"
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CARD = re.compile(rb"gc_[0-9a-f]{20}")
EVENTS_PER_CUSTOMER = 14
REPLAY_BATCH = 5000  # max_poll_records of the bare replay, as the rebuild's batch_records


def templates() -> list[tuple[str, bytes, bytes]]:
    """One typical customer's events (the memory test's: 3 segments, 10 coupon rows, insights, 2 gift cards),
    encoded once, with placeholders for the customer id and for the tail of every id, so that filling them per
    customer is two byte replacements (no model per event)."""
    from tests.integration.view.builders import topic_and_key
    from tests.integration.view.test_view_memory import typical

    out = []
    for event in typical(CUSTOMER, 1):
        topic, key = topic_and_key(event)
        value = event.model_dump_json().encode()
        value = _UUID.sub(lambda m: m.group(0)[:24] + SUFFIX, value)
        value = _CARD.sub(lambda m: m.group(0)[:11] + SUFFIX, value)
        key = _CARD.sub(lambda m: m.group(0)[:11] + SUFFIX, key)
        out.append((topic, key, value))
    return out


def customer_events(tpl: list[tuple[str, bytes, bytes]], n: int) -> list[Encoded]:
    """The events of customer number n: its id is C-TPL<n (7 digits)>, every other id ends with n (12 hex)."""
    customer = f"{n:07d}".encode()
    suffix = f"{n:012x}".encode()
    return [(topic, key.replace(NUMBER, customer).replace(SUFFIX, suffix),
             value.replace(NUMBER, customer).replace(SUFFIX, suffix)) for topic, key, value in tpl]


def fill(tpl: list[tuple[str, bytes, bytes]], first: int, count: int) -> list[Encoded]:
    out: list[Encoded] = []
    for n in range(first, first + count):
        out += customer_events(tpl, n)
    return out


async def _unlink_prefix(redis: Redis, prefix: str) -> None:
    batch = []
    async for key in redis.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            await redis.unlink(*batch)
            batch.clear()
    if batch:
        await redis.unlink(*batch)


async def _used_memory(redis: Redis, timeout_s: float = 30.0) -> int:
    """Redis's used_memory once the background frees of UNLINKed keys are done (else a 'before' counts
    memory that is about to be freed, and the next size's delta comes out too small)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        info = await redis.info("memory")
        if not info.get("lazyfree_pending_objects") or time.perf_counter() > deadline:
            return int(info["used_memory"])
        await asyncio.sleep(0.05)


async def _sample_usage(redis: Redis, key_prefix: str, gen: str, customers: list[str]) -> float:
    from services.marketing_view.keys import KeySpace

    keys = KeySpace(key_prefix)
    total = 0
    for c in customers:
        for k in keys.customer(gen, c):
            total += await redis.memory_usage(k, samples=0) or 0
        doc = await redis.hget(keys.doc(gen, c), "l")
        for card_id in (doc or b"").decode().split():
            total += await redis.memory_usage(keys.card_index(gen, card_id), samples=0) or 0
    return total / len(customers)


async def bare_replay(bootstrap: str, physical_topics: list[str]) -> tuple[int, float]:
    """The floor of reading the history here: a plain aiokafka consumer (same fetch settings as the rebuild)
    reads every record of the topics from the beginning to the end offsets, without decoding anything.
    Returns (records, seconds)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from services.marketing_view.rebuild import FETCH_MAX_BYTES, PARTITION_FETCH_BYTES

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed",
                                max_poll_records=REPLAY_BATCH, fetch_max_bytes=FETCH_MAX_BYTES,
                                max_partition_fetch_bytes=PARTITION_FETCH_BYTES)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(t, p) for t in physical_topics for p in cluster.partitions_for_topic(t) or []]
        consumer.assign(partitions)
        begin = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, begin[tp])
        pending = {tp for tp in partitions if end[tp] > begin[tp]}
        records = 0
        started = time.perf_counter()  # reading only: metadata and offset look-ups are start-up, not per record
        while pending:
            polled = await consumer.getmany(*pending, timeout_ms=500, max_records=REPLAY_BATCH)
            for batch in polled.values():
                records += len(batch)
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        return records, time.perf_counter() - started
    finally:
        await consumer.stop()


async def bare_redis_docs(redis: Redis, key_prefix: str, sample: dict[bytes, bytes], count: int) -> float:
    """The floor of writing the result: one pipelined HSET per customer of a real rebuilt customer's hash
    (no script, no version check, no history zset). Returns seconds."""
    started = time.perf_counter()
    for first in range(0, count, 1000):
        pipe = redis.pipeline(transaction=False)
        for n in range(first, min(count, first + 1000)):
            pipe.hset(f"{key_prefix}:bare:{{C-TPL{n:07d}}}:d", mapping=sample)  # type: ignore[arg-type]
        await pipe.execute()
    return time.perf_counter() - started


async def rebuild(stack: Stack, sizes: list[int], run_tag: str) -> dict[str, Any]:
    """Produce the customers in steps up to each size, rebuild after each step into a fresh key prefix."""
    from services.marketing_view.app import make_rebuilder
    from services.marketing_view.config import Settings
    from services.marketing_view.keys import KeySpace
    from shared.kafka import ensure_topics

    prefix = f"bench{run_tag}.mv."
    key_prefix = f"mvb{run_tag}"
    await ensure_topics(stack.kafka, {prefix + t: 6 for t in DOMAIN_TOPICS})
    settings = Settings(kafka_topic_prefix=prefix, key_prefix=key_prefix, rebuild_settle_s=0.0, auto_rebuild=False,
                        redis_url=stack.redis_url, kafka_bootstrap_servers=stack.kafka)
    tpl = templates()
    redis = Redis.from_url(stack.redis_url)
    points: list[tuple[int, float]] = []
    bare_replay_points: list[tuple[int, float]] = []
    bare_redis_points: list[tuple[int, float]] = []
    out: dict[str, Any] = {}
    produced = 0
    try:
        producer = await start_producer(stack.kafka, linger_ms=20)
        try:
            for size in sorted(sizes):
                started = time.perf_counter()
                messages = fill(tpl, produced + 1, size - produced)
                await publish_all(producer, messages, prefix=prefix)  # never the live topics
                out[f"rebuild_produce_{size}_s"] = time.perf_counter() - started
                produced = size
                await _unlink_prefix(redis, key_prefix)
                before = await _used_memory(redis)
                started, cpu = time.perf_counter(), time.process_time()
                gen = await make_rebuilder(settings, redis, None, None).run("benchmark")
                seconds = time.perf_counter() - started
                out[f"rebuild_{size}_cpu_s"] = time.process_time() - cpu  # this process only (not Redis, Kafka)
                after = await _used_memory(redis)
                points.append((size, seconds))
                out[f"rebuild_{size}_s"] = seconds
                out[f"redis_bytes_per_customer_{size}"] = (after - before) / size
                sample = [f"C-TPL{n:07d}" for n in range(1, size + 1, max(1, size // 200))]
                out["redis_memory_usage_sample_bytes"] = await _sample_usage(redis, key_prefix, gen, sample)
                # the floors, measured on the same records right after the rebuild
                records, bare = await bare_replay(stack.kafka, [prefix + t for t in DOMAIN_TOPICS])
                out[f"rebuild_bare_replay_{size}_s"] = bare
                out["rebuild_bare_replay_records"] = records
                bare_replay_points.append((size, bare))
                doc = await redis.hgetall(KeySpace(key_prefix).doc(gen, sample[0]))
                bare = await bare_redis_docs(redis, key_prefix, doc, size)
                out[f"rebuild_bare_redis_{size}_s"] = bare
                bare_redis_points.append((size, bare))
        finally:
            await producer.stop()
    finally:
        await _unlink_prefix(redis, key_prefix)
        await redis.aclose()
        await delete_topics(stack.kafka, prefix)
    out["rebuild_points"] = points
    out["rebuild_bare_replay_points"] = bare_replay_points
    out["rebuild_bare_redis_points"] = bare_redis_points
    out["rebuild_events_per_customer"] = EVENTS_PER_CUSTOMER
    return out
