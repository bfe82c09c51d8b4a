"""The same service on a three-node Redis Cluster: every script touches one slot (the customer's hash tag,
or the card's), pipelines and the clean-up span slots. Projection with a card moving between customers in
different slots, reads, a rebuild, and a loss on every node repaired by itself."""

from __future__ import annotations

import asyncio

from services.marketing_view.app import make_rebuilder
from tests.conftest import Stack
from tests.helpers import eventually
from tests.integration.view.builders import card, insights, publish_domain, redemption, segments
from tests.integration.view.conftest import PrivateCluster, serving, view_settings

CUSTOMERS = [f"C-CL-{i}" for i in range(12)]  # spread over the three nodes


async def test_on_a_redis_cluster(stack: Stack, topics: str, isolation: str, private_cluster: PrivateCluster) -> None:
    settings = view_settings(isolation, redis_url=private_cluster.url, redis_cluster=True)
    async with serving(settings, stack.api_key) as view:
        events: list = []
        for n, c in enumerate(CUSTOMERS):
            events += [segments(c, 1, ("vip", "VIP", "2026-01-02", "manual", c)), insights(c, 1),
                       redemption(c, f"{c}-r1", invoice=f"INV-CL-{n}"), card(f"gc-cl-{n}", c)]
        # a card moving across slots: customer 0 -> 5 -> 9
        events += [card("gc-cl-0", CUSTOMERS[5], version=2, previous=CUSTOMERS[0]),
                   card("gc-cl-0", CUSTOMERS[9], version=3, previous=CUSTOMERS[5])]
        await publish_domain(stack.kafka, topics, events)

        async def projected() -> dict[str, dict]:
            tabs = {c: await view.tab(c) for c in CUSTOMERS}
            assert all(t["segments"] and t["coupon_usage"]["items"] and t["insights"]["coupon_price_sensitivity"]
                       for t in tabs.values())
            assert sorted(g["card_id"] for g in tabs[CUSTOMERS[9]]["gift_cards"]) == ["gc-cl-0", "gc-cl-9"]
            assert [g["card_id"] for g in tabs[CUSTOMERS[0]]["gift_cards"]] == []
            assert all(f"gc-cl-{n}" in {g["card_id"] for g in tabs[c]["gift_cards"]}  # every card's partition
                       for n, c in enumerate(CUSTOMERS) if n)  # is projected, not only gc-cl-0's
            return {c: {k: v for k, v in t.items() if k != "as_of"} for c, t in tabs.items()}

        before = await eventually(projected, timeout_s=30, what="projected on the cluster")
        generation = await make_rebuilder(settings, view.redis, None).run("command")

        async def switched() -> bool:
            return view.model.current == generation

        await eventually(switched, timeout_s=10, what="switched")
        assert await projected() == before

        await asyncio.to_thread(private_cluster.flushall)

        async def unavailable() -> bool:
            return (await view.get(CUSTOMERS[0])).status_code == 503

        await eventually(unavailable, timeout_s=10, what="the loss noticed")
        await eventually(projected, timeout_s=30, what="rebuilt by itself on the cluster")
        assert await projected() == before
