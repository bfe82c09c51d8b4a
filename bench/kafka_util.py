"""Kafka helpers of the benchmarks: fast publication of pre-encoded events, consumer-group lag, topic clean-up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.contracts import topics as t

Encoded = tuple[str, bytes, bytes]  # topic, key, value

# Which topics each running service's consumer group reads (see services/*/app.py).
GROUP_TOPICS: dict[str, tuple[str, ...]] = {
    "giftcard_ledger": (t.POS_GIFTCARD_ACTIVITY,),
    "redemption_ledger": (t.POS_COUPON_REDEMPTIONS, t.POS_SALES),
    "segment_engine": (t.POS_SALES, t.CRM_CUSTOMERS),
    "marketing_view": t.DOMAIN_TOPICS,
}


async def start_producer(bootstrap: str, *, linger_ms: int = 5) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=linger_ms, max_batch_size=256 * 1024)
    await producer.start()
    return producer


async def publish_all(producer: AIOKafkaProducer, messages: Sequence[Encoded], *, prefix: str = "",
                      rate: float = 0, stop: asyncio.Event | None = None) -> int:
    """Publish in order; at `rate` per second if > 0 (paced in steps of 20 ms), else as fast as Kafka takes them.
    Returns how many were published (fewer if `stop` was set)."""
    pending = []
    started = time.perf_counter()
    sent = 0
    for topic, key, value in messages:
        if stop is not None and stop.is_set():
            break
        pending.append(await producer.send(prefix + topic, value, key=key))
        sent += 1
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending.clear()
        if rate > 0 and sent % max(1, int(rate / 50)) == 0:
            ahead = sent / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    await asyncio.gather(*pending)
    return sent


class LagProbe:
    """Committed offsets of consumer groups against the end offsets of the topics they read."""

    def __init__(self, bootstrap: str, groups: dict[str, Sequence[str]], prefix: str = "") -> None:
        self.bootstrap, self.groups, self.prefix = bootstrap, groups, prefix
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.partitions: dict[str, list[TopicPartition]] = {}

    async def __aenter__(self) -> LagProbe:
        await self.admin.start()
        await self.consumer.start()
        for topic in {x for ts in self.groups.values() for x in ts}:
            name = self.prefix + topic
            parts = self.consumer.partitions_for_topic(name)
            if parts is None:
                await self.consumer._client.force_metadata_update()
                parts = self.consumer.partitions_for_topic(name) or set()
            self.partitions[topic] = [TopicPartition(name, p) for p in sorted(parts)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def lags(self) -> dict[str, int]:
        """Per group: the number of records written but not yet committed by it."""
        all_tps = [tp for tps in self.partitions.values() for tp in tps]
        ends = await self.consumer.end_offsets(all_tps)
        out = {}
        for group, group_topics in self.groups.items():
            committed = await self.admin.list_consumer_group_offsets(group)
            lag = 0
            for topic in group_topics:
                for tp in self.partitions[topic]:
                    meta = committed.get(tp)
                    done = meta.offset if meta is not None and meta.offset >= 0 else 0
                    lag += max(0, ends[tp] - done)
            out[group] = lag
        return out

    async def end_offsets(self) -> dict[TopicPartition, int]:
        return await self.consumer.end_offsets([tp for tps in self.partitions.values() for tp in tps])
