"""Steps shared by the scenarios: start the four services, converge on the oracle, group offsets."""

from __future__ import annotations

import time
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from shared.contracts import topics
from tests.reliability import observe
from tests.reliability.harness import SERVICES, World, eventually
from tests.reliability.oracle import Expected

GROUP_TOPICS = {
    "giftcard_ledger": (topics.POS_GIFTCARD_ACTIVITY,),
    "redemption_ledger": (topics.POS_COUPON_REDEMPTIONS, topics.POS_SALES),
    "segment_engine": (topics.POS_SALES, topics.CRM_CUSTOMERS),
    "marketing_view": tuple(topics.DOMAIN_TOPICS),
}


def deploy(world: World, replicas: int = 1) -> None:
    for service in SERVICES:
        for r in range(replicas):
            world.add(service, r)


async def converge(world: World, exp: Expected, *, timeout_s: float, view: str | None = None) -> dict[str, Any]:
    """Wait until the ledgers, then every tab document, equal the oracle; then check they stay equal."""
    started = time.monotonic()
    view = view or next(p.url for p in world.of("marketing_view") if p.alive)
    last: dict[str, observe.Diff] = {}

    async def ledgers_ok() -> bool:
        for p in world.of("giftcard_ledger"):  # time passing is part of the expected state: sweep now
            if p.alive:
                async with httpx.AsyncClient(timeout=30) as client:
                    await client.post(p.url + "/v1/gift-cards/sweep",
                                      headers={"Authorization": f"Bearer {world.stack.api_key}"})
                break
        last["ledgers"] = await observe.ledgers(world, exp)
        return last["ledgers"].ok

    async def tabs_ok() -> bool:
        last["tabs"] = await observe.tabs(world, view, exp)
        return last["tabs"].ok

    try:
        await eventually(ledgers_ok, timeout_s=timeout_s, interval_s=2, what="ledgers equal the oracle")
        converged = time.monotonic() - started
        await eventually(tabs_ok, timeout_s=max(30.0, timeout_s - converged), interval_s=2,
                         what="tab documents equal the oracle")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast diffs: {', '.join(f'{k}: {v}' for k, v in last.items())}") from None
    # Stable: a doubled effect arriving late would show now.
    again = await observe.ledgers(world, exp)
    assert again.ok, f"ledgers changed after converging: {again}"
    return {"lost": again.lost, "doubled": again.doubled, "converged_s": round(time.monotonic() - started, 1),
            "customers": len(exp.customers), "cards": len(exp.cards), "card_rejections": exp.rejections,
            "coupon_redemptions": len(exp.redemptions), "invoices": len(exp.invoices)}


async def committed(world: World, service: str, group: str | None = None) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=world.stack.kafka)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group or f"{service}-{world.tag}")
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


async def end_offsets(world: World, logical: tuple[str, ...]) -> dict[tuple[str, int], int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=world.stack.kafka, group_id=None)
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        tps = []
        for t in logical:
            name = world.prefix + t
            parts = consumer.partitions_for_topic(name) or await _partitions(consumer, name)
            tps += [TopicPartition(name, p) for p in parts]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): n for tp, n in ends.items()}


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


async def lag(world: World) -> dict[str, int]:
    """Messages not yet committed by each service's group, over its input topics."""
    out = {}
    for service, logical in GROUP_TOPICS.items():
        ends = await end_offsets(world, logical)
        done = await committed(world, service)
        out[service] = sum(max(0, n - done.get(tp, 0)) for tp, n in ends.items())
    return out
