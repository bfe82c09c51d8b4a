"""Many redemptions of one card at once, through Kafka and the API of two replicas together, never overspend:
exactly as many succeed as the balance allows, and the ledger never goes below zero."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from decimal import Decimal

import httpx

from shared.clock import FixedClock
from tests.conftest import Stack
from tests.integration.giftcards.conftest import card_number, pos_event, start_ledger

KAFKA_REDEMPTIONS = 48
API_REDEMPTIONS = 48
AMOUNT = Decimal("3.00")
# 61 of the 96 can succeed: more than either path alone can spend, so both paths race for the last of it.
BALANCE = Decimal("184.50")


async def test_concurrent_redemptions_never_overspend(stack: Stack, topics: str, isolation: str,
                                                      clock: FixedClock) -> None:
    seed = int(os.environ.get("TEST_SEED") or random.randrange(2**32))
    print(f"seed={seed} (TEST_SEED={seed} reproduces it)")
    rng = random.Random(seed)
    number = card_number()
    async with start_ledger(stack, topics, isolation, clock) as one, \
            start_ledger(stack, topics, isolation, clock, drop=False) as two:  # two replicas: one schema and group
        activation = pos_event("giftcard.activated", number, amount=f"{BALANCE:.2f}")
        await one.publish(activation)
        await one.processed(activation)
        card = await one.card_by_number(number)
        assert card is not None
        card_id = card["card_id"]

        events = [pos_event("giftcard.redeemed", number, amount=f"{AMOUNT:.2f}") for _ in range(KAFKA_REDEMPTIONS)]

        async def via_api(i: int) -> httpx.Response:
            await asyncio.sleep(rng.random())  # spread over the same second as the Kafka chunks
            replica = one if i % 2 else two
            return await replica.post(f"/v1/gift-cards/{card_id}/redeem",
                                      {"amount": f"{AMOUNT:.2f}", "invoice_number": f"API-{i}"},
                                      key=uuid.uuid4().hex)

        async def via_kafka() -> None:
            for start in range(0, KAFKA_REDEMPTIONS, 8):  # several polls interleave with the API calls
                await one.publish(*events[start:start + 8])
                await asyncio.sleep(rng.random() / 5)

        results = await asyncio.gather(via_kafka(), *(via_api(i) for i in range(API_REDEMPTIONS)))
        answers = [r for r in results if isinstance(r, httpx.Response)]
        await one.processed(*events, timeout_s=60)

        assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers if a.status_code >= 500]
        api_ok = sum(a.status_code == 200 for a in answers)
        refused = [a.json()["reason"] for a in answers if a.status_code == 409]
        assert set(refused) <= {"insufficient_balance"}
        entries = await one.entries(card_id)
        redemptions = [e for e in entries if e["entry_type"] == "redeem"]
        kafka_ok = sum(e["source"].startswith("event:") for e in redemptions)
        kafka_refused = await one.fetch("SELECT reason FROM rejections WHERE card_id = $1", card_id)

        allowed = int(BALANCE // AMOUNT)
        print(f"api ok={api_ok} kafka ok={kafka_ok} allowed={allowed}")
        assert allowed > max(KAFKA_REDEMPTIONS, API_REDEMPTIONS) and allowed < KAFKA_REDEMPTIONS + API_REDEMPTIONS
        assert len(redemptions) == api_ok + kafka_ok == allowed, "successes are exactly what the balance allows"
        assert kafka_ok + len(kafka_refused) == KAFKA_REDEMPTIONS and api_ok + len(refused) == API_REDEMPTIONS
        assert {r["reason"] for r in kafka_refused} <= {"insufficient_balance"}
        assert all(e["balance_after"] >= 0 for e in entries)
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        assert await one.balance_consistent(card_id) == BALANCE - allowed * AMOUNT
        final = (await two.http.get(f"/v1/gift-cards/{card_id}", headers=two.auth)).json()
        assert final["current_balance"] == f"{BALANCE - allowed * AMOUNT:.2f}"
        assert final["version"] == 1 + allowed
