"""Memory budget (issue 8): at most 2 KiB of Redis per typical customer (3 segments, 10 coupon rows,
2 gift cards), measured as used_memory growth over many customers on a redis-server of this test alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from services.marketing_view import scripts
from services.marketing_view.keys import KeySpace, new_generation
from services.marketing_view.projection import Projector
from tests.integration.view.builders import card, insights, redemption, segments
from tests.integration.view.conftest import PrivateRedis

CUSTOMERS = 1000
BUDGET = 2048
COUPONS = [("FALL10", "Fall 10% off", "percent", "10", "10.20"), ("SAVE5", "$5 off $50", "amount", "5.00", "5.00"),
           ("WELCOME15", "Welcome 15% off first order", "percent", "15", "7.35")]


def typical(c: str, n: int) -> list:
    events: list = [segments(
        c, 3,
        ("high-value", "High Value", "2026-11-28", "automatic",
         "Spent $1,240.50 in the last 365 days (rule: at least $1,000.00)"),
        ("frequent-buyer", "Frequent Buyer", "2026-10-01", "automatic",
         "5 purchases in the last 30 days (rule: at least 4)"),
        ("vip", "VIP", "2026-01-02", "manual", "Owner's friend, call before big sales"),
    )]
    start = datetime(2026, 1, 3, 14, 3, 12, tzinfo=UTC)
    for i in range(10):
        code, name, kind, value, amount = COUPONS[i % 3]
        events.append(redemption(c, str(uuid.uuid4()), version=1 + i % 2, code=code, name=name, kind=kind,
                                 value=value, amount=amount, used_at=start + timedelta(days=17 * i, minutes=n),
                                 invoice=f"INV-2026-{n * 10 + i:06d}", status="reversed" if i == 4 else "redeemed",
                                 reversed_at=start + timedelta(days=17 * i + 1) if i == 4 else None))
    events.append(insights(c, 4))
    events += [card(f"gc_{uuid.uuid4().hex[:20]}", c, version=3, current="20.00") for _ in range(2)]
    return events


async def test_a_typical_customer_takes_at_most_2_kib(private_redis: PrivateRedis) -> None:
    redis = Redis.from_url(private_redis.url)
    try:
        keys = KeySpace("mv")
        projector = Projector(redis, keys)
        gen = new_generation()
        await scripts.load(redis)
        await projector.apply(typical("C-WARMUP", 0), [gen])
        before = (await redis.info("memory"))["used_memory"]
        for n in range(1, CUSTOMERS + 1):
            await projector.apply(typical(f"C-{n:07d}", n), [gen])
        per_customer = ((await redis.info("memory"))["used_memory"] - before) / CUSTOMERS
        encodings = {await redis.object("encoding", k) for k in keys.customer(gen, "C-0000007")}
    finally:
        await redis.aclose()
    print(f"bytes per typical customer: {per_customer:.0f} (budget {BUDGET}); encodings {encodings}")
    assert encodings == {b"listpack"}, "the customer's hash and zset stay in Redis's compact encoding"
    assert per_customer <= BUDGET
