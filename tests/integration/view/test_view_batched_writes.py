"""The batched write path: many customers in one Lua call, a customer with thousands of writes in one call
(beyond Lua's unpack limit), writes split across calls by the per-call bound, and the same result as one
write at a time. Real Redis, the real scripts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from services.marketing_view.keys import KeySpace
from services.marketing_view.projection import Projector
from tests.conftest import Stack
from tests.integration.view.builders import card, insights, redemption, segments
from tests.integration.view.conftest import wipe

START = datetime(2026, 1, 3, 14, 3, 12, tzinfo=UTC)


def customer_events(c: str, rows: int) -> list:
    events: list = [segments(c, 2, ("vip", "VIP", "2026-01-02", "manual", "x" * 150)), insights(c, 3)]
    events += [redemption(c, f"{c}-r{i}", version=1, invoice=f"INV-{i}", used_at=START + timedelta(minutes=i),
                          code=f"CODE{i % 3}", name=f"Coupon {i % 3}") for i in range(rows)]
    events += [card(f"gc-{c}-{i}", c, version=2) for i in range(2)]
    return events


async def snapshot(redis: Redis, keys: KeySpace, gen: str, customers: list[str]) -> dict:
    out = {}
    for c in customers:
        out[c] = (await redis.hgetall(keys.doc(gen, c)), await redis.zrange(keys.history(gen, c), 0, -1,
                                                                              withscores=True))
    return out


async def test_batched_calls_write_what_one_write_at_a_time_writes(stack: Stack, isolation: str) -> None:
    keys = KeySpace(f"mvbw{isolation}")
    redis = Redis.from_url(stack.redis_url)
    customers = [f"C-BW-{n}" for n in range(40)]
    big = "C-BW-BIG"
    try:
        events = [e for c in customers for e in customer_events(c, 10)] + customer_events(big, 2500)
        batched = await Projector(redis, keys).apply(events, ["vbatched"])  # many customers per call
        small = Projector(redis, keys, writes_per_call=1)  # one customer per call
        for e in events:
            await small.apply([e], ["vsingle"])
        assert batched.changed == len(events) and batched.unchanged == 0
        everyone = [*customers, big]
        got = await snapshot(redis, keys, "vbatched", everyone)
        assert got == await snapshot(redis, keys, "vsingle", everyone)
        doc, history = got[big]
        assert len(history) == 2500 and sum(1 for f in doc if f.startswith(b"r")) == 2500
        assert doc[b"l"] == f"gc-{big}-0 gc-{big}-1".encode()

        again = await Projector(redis, keys).apply(events, ["vbatched"])  # a replay changes nothing
        assert again.changed == 0 and again.unchanged == len(events)
        assert await snapshot(redis, keys, "vbatched", everyone) == got
    finally:
        await wipe(redis, keys.prefix)
        await redis.aclose()
