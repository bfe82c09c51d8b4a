"""Scenario 7: 64 concurrent redemptions of one gift card, half through Kafka and half through the API, over
many trials: the balance never drops below zero and successes equal what the balance allowed."""

from __future__ import annotations

import asyncio
import random
import uuid
from decimal import Decimal

import asyncpg
import httpx
import orjson
import pytest

from shared.contracts import topics
from tests.reliability.harness import World, eventually, publish_raw, seed, size

AMOUNT = Decimal("5.00")
CONCURRENT = 64


@pytest.mark.timeout(size(400, 3600))
async def test_double_spend_never_overdraws(world: World) -> None:
    s = seed()
    rng = random.Random(s)
    trials = size(20, 200)
    ledger = world.add("giftcard_ledger")
    await world.start()
    headers = {"Authorization": f"Bearer {world.stack.api_key}"}
    schema = f'"giftcard_ledger_{world.tag}"'
    conn = await asyncpg.connect(world.stack.database_url)
    totals = {"api_ok": 0, "kafka_ok": 0, "refused": 0}
    try:
        async with httpx.AsyncClient(base_url=ledger.url, headers=headers, timeout=30,
                                     limits=httpx.Limits(max_connections=40)) as client:
            for trial in range(trials):
                allowed = rng.randint(1, CONCURRENT - 1)
                balance = AMOUNT * allowed + Decimal(rng.randrange(0, 500)) / 100
                number = "7" + "".join(str(rng.randrange(10)) for _ in range(15))
                r = await client.post("/v1/gift-cards", headers={"Idempotency-Key": uuid.uuid4().hex},
                                      json={"customer_id": f"C-DS-{trial}", "amount": f"{balance:.2f}",
                                            "currency": "USD", "card_number": number})
                assert r.status_code == 201, r.text
                card_id = r.json()["card_id"]
                via = [rng.random() < 0.5 for _ in range(CONCURRENT)]  # True: API, False: Kafka

                async def api_redeem(i: int, card_id: str = card_id, trial: int = trial) -> bool:
                    for attempt in range(3):  # a kept-alive connection the server just closed: retry, same key
                        try:
                            resp = await client.post(f"/v1/gift-cards/{card_id}/redeem",
                                                     headers={"Idempotency-Key": f"{card_id}-{i}"},
                                                     json={"amount": f"{AMOUNT:.2f}",
                                                           "invoice_number": f"INV-DS-{trial}-{i}"})
                            break
                        except httpx.TransportError:
                            if attempt == 2:
                                raise
                    assert resp.status_code in (200, 409), resp.text
                    return resp.status_code == 200

                messages = [(world.prefix + topics.POS_GIFTCARD_ACTIVITY, number.encode(), orjson.dumps({
                    "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "event_type": "giftcard.redeemed",
                    "schema_version": 1, "occurred_at": "2026-12-01T12:00:00+00:00", "store_id": "S-001",
                    "card_number": number, "amount": f"{AMOUNT:.2f}", "currency": "USD",
                    "invoice_number": f"INV-DS-{trial}-{i}", "customer_id": None,
                })) for i in range(CONCURRENT) if not via[i]]
                results = await asyncio.gather(publish_raw(world.stack.kafka, messages),
                                               *(api_redeem(i) for i in range(CONCURRENT) if via[i]))
                api_ok = sum(1 for ok in results[1:] if ok)

                async def all_decided(card_id: str = card_id, api_ok: int = api_ok, n: int = len(messages)) -> bool:
                    entries = await conn.fetchval(
                        f"SELECT count(*) FROM {schema}.ledger_entries WHERE card_id = $1 AND entry_type = 'redeem'",
                        card_id)
                    refused = await conn.fetchval(f"SELECT count(*) FROM {schema}.rejections WHERE card_id = $1",
                                                  card_id)
                    return entries + refused - api_ok == n and (entries, refused)

                entries, _ = await eventually(all_decided, timeout_s=60, interval_s=0.2,
                                                          what=f"trial {trial}: every redemption decided")
                row = await conn.fetchrow(f"SELECT current_balance FROM {schema}.cards WHERE card_id = $1", card_id)
                lowest = await conn.fetchval(
                    f"SELECT min(balance_after) FROM {schema}.ledger_entries WHERE card_id = $1", card_id)
                assert lowest >= 0 and row["current_balance"] >= 0
                assert entries == allowed, f"trial {trial}: {entries} redemptions succeeded, balance allowed {allowed}"
                assert row["current_balance"] == balance - AMOUNT * allowed
                totals["api_ok"] += api_ok
                totals["kafka_ok"] += entries - api_ok
                totals["refused"] += CONCURRENT - entries
    finally:
        await conn.close()
    print(f"double spend: trials={trials} x {CONCURRENT} concurrent redemptions {totals}; "
          f"balance never below 0, successes == allowed in every trial")
