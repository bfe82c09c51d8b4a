"""The POS batch handler on real Postgres, called with deliveries (no Kafka): edge cases of one batch and a race
between a POS activation and an API issue of the same number."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.giftcard_ledger import cardnumbers, store
from services.giftcard_ledger.app import MIGRATIONS
from services.giftcard_ledger.cardnumbers import CardNumberHasher
from services.giftcard_ledger.domain import Context, GiftCard, Policy
from services.giftcard_ledger.handlers import GiftCardLedger
from shared.clock import FixedClock
from shared.consumer import Delivery
from shared.contracts import topics
from shared.contracts.pos import GiftCardActivated, GiftCardRedeemed
from shared.db import create_pool, migrate
from tests.conftest import Stack
from tests.helpers import eventually
from tests.integration.giftcards.conftest import START, card_number


@dataclass
class Handler:
    ledger: GiftCardLedger
    pool: asyncpg.Pool
    hasher: CardNumberHasher
    schema: str
    offsets: Any

    async def apply(self, *events: Any) -> None:
        await self.ledger.on_giftcard_activity([
            Delivery(topics.POS_GIFTCARD_ACTIVITY, 0, next(self.offsets), e.card_number.encode(), e, 0) for e in events
        ])


@pytest.fixture
async def handler(stack: Stack, isolation: str) -> AsyncIterator[Handler]:
    schema = f"giftcards_h_{isolation}"
    await migrate(stack.database_url, schema, MIGRATIONS)
    pool = await create_pool(stack.database_url, schema, max_size=4, application_name=f"gc-{isolation}")
    hasher = CardNumberHasher(b"handler-test-key-" + isolation.encode())
    policy = Policy(business_tz=ZoneInfo("America/New_York"))
    ledger = GiftCardLedger(pool, lambda: None, hasher, policy, FixedClock(START))
    try:
        yield Handler(ledger, pool, hasher, schema, iter(range(10**6)))
    finally:
        await pool.close()
        conn = await asyncpg.connect(stack.database_url)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()


def activated(number: str, amount: str = "20.00") -> GiftCardActivated:
    return GiftCardActivated(event_id=uuid.uuid4(), occurred_at=START - timedelta(minutes=5), store_id="S-1",
                             card_number=number, amount=Decimal(amount), currency="USD", customer_id="C-1",
                             expires_on=None, invoice_number="INV-A")


def redeemed(number: str, amount: str) -> GiftCardRedeemed:
    return GiftCardRedeemed(event_id=uuid.uuid4(), occurred_at=START - timedelta(minutes=4), store_id="S-1",
                            card_number=number, amount=Decimal(amount), currency="USD", invoice_number="INV-B")


async def test_one_card_in_one_batch_whatever_the_letter_case(handler: Handler) -> None:
    number = "gift" + uuid.uuid4().hex[:12]
    events = [activated(number.lower()), redeemed(number.upper(), "5.00"), redeemed(number.lower(), "5.00"),
              activated(number.upper())]
    await handler.apply(*events)
    rows = await handler.pool.fetch("SELECT * FROM cards")
    assert len(rows) == 1 and rows[0]["current_balance"] == Decimal("10.00")
    assert rows[0]["last4"] == number[-4:].upper()
    rejected = await handler.pool.fetch("SELECT event_id, reason, card_id FROM rejections")
    assert [(r["event_id"], r["reason"], r["card_id"]) for r in rejected] == [
        (events[3].event_id, "card_already_active", rows[0]["card_id"])]


async def test_an_activation_racing_an_api_issue_of_the_same_number_is_refused(handler: Handler,
                                                                                stack: Stack) -> None:
    number = card_number()
    other = await asyncpg.connect(stack.database_url, server_settings={"search_path": handler.schema})
    try:
        tx = other.transaction()
        await tx.start()
        card, entry = GiftCard.issue(card_id=cardnumbers.new_card_id(), last4=number[-4:], customer_id="C-9",
                                     amount=Decimal("5.00"), currency="USD", expires_on=None,
                                     ctx=Context(at=START, actor="api:test", source="idem:race"),
                                     policy=handler.ledger.policy)
        assert await store.insert_card(other, card, handler.hasher.digest(number), handler.hasher.current_version,
                                       "api")
        await store.insert_entries(other, [entry])

        batch = asyncio.create_task(handler.apply(activated(number), redeemed(number, "1.00")))

        async def waiting_for_the_issue() -> bool:
            return bool(await other.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                f"gc-{handler.schema.removeprefix('giftcards_h_')}"))

        await eventually(waiting_for_the_issue, what="the batch waits on the uncommitted card")
        await tx.commit()
        await batch
    finally:
        await other.close()
    rejected = await handler.pool.fetch("SELECT reason, card_id FROM rejections ORDER BY id")
    assert [(r["reason"], r["card_id"]) for r in rejected] == [("card_already_active", None), ("unknown_card", None)]
    cards = await handler.pool.fetch("SELECT card_id, current_balance FROM cards")
    assert [(c["card_id"], c["current_balance"]) for c in cards] == [(card.card_id, Decimal("5.00"))]
