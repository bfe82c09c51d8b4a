"""Limits under concurrent redemptions: 20 redemptions of a coupon limited to 5, recorded by transactions running
at the same time, flag exactly 15 over_limit (and per-customer limits likewise)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

from shared.consumer import Delivery
from shared.contracts import topics as t
from tests.helpers import eventually
from tests.integration.coupons.conftest import Ledger, LedgerFactory, redeemed


async def test_concurrent_transactions_flag_exactly_the_redemptions_beyond_the_limit(ledger: Ledger) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    await ledger.coupon("FIVE", max_redemptions=5, max_redemptions_per_customer=2)
    now = datetime.now(UTC)
    events = [redeemed(f"INV-{i}", "FIVE", f"C-{i % 4}", at=now) for i in range(20)]
    rng.shuffle(events)
    handler = ledger.app.state.ledger.on_coupon_events
    # One transaction per redemption, all at once (the pool lets 10 run together).
    await asyncio.gather(*(handler([Delivery(t.POS_COUPON_REDEMPTIONS, 0, n, None, e, 0)])
                           for n, e in enumerate(events)))

    rows = await ledger.sql("SELECT customer_id, flags FROM redemptions ORDER BY seq")
    assert len(rows) == 20
    assert sum("over_limit" in r["flags"] for r in rows) == 15
    assert all("over_limit" in r["flags"] for r in rows[5:]), "the first five recorded are the ones within the limit"
    seen: dict[str, int] = {}
    for r in rows:
        seen[r["customer_id"]] = seen.get(r["customer_id"], 0) + 1
        assert ("customer_over_limit" in r["flags"]) is (seen[r["customer_id"]] > 2)
    counters = {r["customer_id"]: r["used"] for r in await ledger.sql("SELECT * FROM usage_counters")}
    assert counters == {"": 20, "C-0": 5, "C-1": 5, "C-2": 5, "C-3": 5}


async def test_two_replicas_consuming_one_topic_flag_exactly_the_excess(ledger_factory: LedgerFactory) -> None:
    async with ledger_factory() as first, ledger_factory() as second:
        await first.coupon("KFIVE", max_redemptions=5)
        now = datetime.now(UTC)
        await first.send_coupons(*(redeemed(f"INV-{i}", "KFIVE", f"C-{i}", at=now) for i in range(20)))

        async def all_recorded() -> list:
            rows = await second.sql("SELECT flags FROM redemptions")
            assert len(rows) == 20, len(rows)
            return rows

        rows = await eventually(all_recorded, what="20 redemptions recorded by two replicas")
        assert sum("over_limit" in r["flags"] for r in rows) == 15
        stats = await second.call("GET", "/v1/coupons/KFIVE/stats")
        assert (stats["redemptions"], stats["flagged"], stats["unique_customers"]) == (20, 15, 20)
