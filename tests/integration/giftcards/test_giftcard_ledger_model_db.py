"""The oracle's stateful test (tests/unit/giftcards/test_giftcard_ledger_model.py) against the real ledger: the use
cases on Postgres, with its SQL, triggers and constraints. Money moves through both entrances in turn: the POS
batch handler (activation, reload, redemption, refund) and the API's idempotent writes (issue, reload, redeem,
adjust, expire, deactivate, assign), plus the sweep. No Kafka is needed: the handler is called with deliveries.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from services.giftcard_ledger import cardnumbers
from services.giftcard_ledger.app import MIGRATIONS
from services.giftcard_ledger.cardnumbers import CardNumberHasher
from services.giftcard_ledger.domain import (
    AdjustReason,
    Entry,
    EntryType,
    ExpiredRedemptionPolicy,
    Reason,
    Rejected,
)
from services.giftcard_ledger.handlers import GiftCardLedger, IdempotentRequest, Outcome
from shared.clock import FixedClock
from shared.consumer import Delivery
from shared.contracts import topics
from shared.contracts.pos import GiftCardActivated, GiftCardRedeemed, GiftCardRefunded, GiftCardReloaded
from shared.db import create_pool, migrate
from tests.conftest import Stack
from tests.unit.giftcards.test_giftcard_ledger_model import START, LedgerMachine, Snapshot

T = TypeVar("T")
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


class PostgresLedger:
    """The machine's port, served by GiftCardLedger on a real database (driven from a loop of its own)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ledger: GiftCardLedger, clock: FixedClock,
                 pool: asyncpg.Pool) -> None:
        self.loop, self.ledger, self.clock, self.pool = loop, ledger, clock, pool
        self.numbers: dict[str, str] = {}
        self.turn = itertools.count()
        self.offsets = itertools.count()

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def set_now(self, moment: datetime) -> None:
        self.clock.set(moment)

    def via_pos(self) -> bool:
        return next(self.turn) % 2 == 0

    # --- the two entrances ---------------------------------------------------------------------------------------

    def api(self, call: Any, *args: Any, **kwargs: Any) -> Outcome:
        key = uuid.uuid4().hex
        req = IdempotentRequest(key=key, method="POST", path="/test", canonical=key.encode(), actor="api:test")
        outcome: Outcome = self.run(call(req, *args, **kwargs))
        if outcome.status >= 400:
            raise Rejected(Reason(outcome.body["reason"]), outcome.body["detail"])
        return outcome

    def pos(self, event_type: type, card_number: str, **fields: Any) -> None:
        event = event_type(event_id=uuid.uuid4(), occurred_at=self.clock.now(), store_id="S-1",
                           card_number=card_number, invoice_number=fields.pop("invoice_number", "INV-X"), **fields)
        delivery = Delivery(topics.POS_GIFTCARD_ACTIVITY, 0, next(self.offsets), card_number.encode(), event, 0)
        self.run(self.ledger.on_giftcard_activity([delivery]))
        refused = self.run(self.pool.fetchrow("SELECT reason, detail FROM rejections WHERE event_id = $1",
                                              event.event_id))
        if refused is not None:
            raise Rejected(Reason(refused["reason"]), refused["detail"])

    # --- the port ------------------------------------------------------------------------------------------------

    def issue(self, amount: Decimal, currency: str, expires_on: date | None, customer_id: str) -> str:
        if self.via_pos():
            number = cardnumbers.generate_number()
            self.pos(GiftCardActivated, number, amount=amount, currency=currency, customer_id=customer_id,
                     expires_on=expires_on)
            card = self.run(self.ledger.lookup(number))
            assert card is not None
            card_id = card.card_id
        else:
            body = self.api(self.ledger.issue, customer_id=customer_id, amount=amount, currency=currency,
                            expires_on=expires_on, card_number=None).body
            card_id, number = body["card_id"], body["card_number"]
        self.numbers[card_id] = number
        return card_id

    def reload(self, card_id: str, amount: Decimal, currency: str) -> None:
        if self.via_pos():
            self.pos(GiftCardReloaded, self.numbers[card_id], amount=amount, currency=currency)
        else:
            self.api(self.ledger.reload, card_id, amount=amount, currency=currency, reason=None)

    def redeem(self, card_id: str, amount: Decimal, currency: str, invoice: str) -> None:
        if self.via_pos():
            self.pos(GiftCardRedeemed, self.numbers[card_id], amount=amount, currency=currency, invoice_number=invoice)
        else:
            self.api(self.ledger.redeem, card_id, amount=amount, currency=currency, invoice_number=invoice,
                     store_id="S-1", reason=None)

    def refund(self, card_id: str, amount: Decimal, currency: str, invoice: str) -> None:
        self.pos(GiftCardRefunded, self.numbers[card_id], amount=amount, currency=currency,
                 invoice_number=f"RET-{uuid.uuid4().hex[:6]}", original_invoice_number=invoice)

    def adjust(self, card_id: str, amount: Decimal, reason: AdjustReason) -> None:
        self.api(self.ledger.adjust, card_id, amount=amount, reason=reason, note=None)

    def expire(self, card_id: str) -> None:
        self.api(self.ledger.expire, card_id, reason=None)

    def deactivate(self, card_id: str) -> None:
        self.api(self.ledger.deactivate, card_id, reason=None)

    def assign(self, card_id: str, customer_id: str) -> None:
        self.api(self.ledger.assign, card_id, customer_id=customer_id, reason=None)

    def sweep(self) -> int:
        return self.run(self.ledger.sweep())

    def snapshot(self, card_id: str) -> Snapshot:
        pool = self.pool
        card = self.run(pool.fetchrow("SELECT * FROM cards WHERE card_id = $1", card_id))
        rows = self.run(pool.fetch("SELECT * FROM ledger_entries WHERE card_id = $1 ORDER BY seq", card_id))
        shown = self.run(self.ledger.card(card_id))
        assert card is not None and shown is not None
        entries = [Entry(card_id=r["card_id"], seq=r["seq"], type=EntryType(r["entry_type"]), amount=r["amount"],
                         balance_after=r["balance_after"], occurred_at=r["occurred_at"], actor=r["actor"],
                         source=r["source"], store_id=r["store_id"], invoice_number=r["invoice_number"],
                         original_invoice_number=r["original_invoice_number"], customer_id=r["customer_id"],
                         reason=r["reason"]) for r in rows]
        assert shown.current_balance == card["current_balance"] and shown.version == card["version"]
        return Snapshot(card["current_balance"], card["version"], card["state"], card["customer_id"],
                        shown.status.value, entries)

    def forget(self) -> None:
        """Between examples: expire every card still open, so the next example's sweeps see only its own."""
        self.run(self.ledger.sweep(FAR_FUTURE))


def test_the_ledger_on_postgres_agrees_with_the_oracle(stack: Stack, isolation: str) -> None:
    schema = f"giftcards_model_{isolation}"
    loop = asyncio.new_event_loop()
    clock = FixedClock(START)
    hasher = CardNumberHasher(b"stateful-test-key-" + isolation.encode())
    loop.run_until_complete(migrate(stack.database_url, schema, MIGRATIONS))
    pool = loop.run_until_complete(create_pool(stack.database_url, schema, max_size=2))
    try:
        for kind, examples in ((ExpiredRedemptionPolicy.REJECT, 30), (ExpiredRedemptionPolicy.ALLOW, 15)):

            class OnPostgres(LedgerMachine):
                policy_kind = kind

                def make_ledger(self) -> PostgresLedger:
                    ledger = GiftCardLedger(pool, lambda: None, hasher, self.policy, clock)
                    return PostgresLedger(loop, ledger, clock, pool)

                def teardown(self) -> None:
                    self.ledger.forget()  # type: ignore[attr-defined]

            run_state_machine_as_test(OnPostgres, settings=settings(max_examples=examples, stateful_step_count=30,
                                                                    deadline=None))
        violations = loop.run_until_complete(pool.fetchval(
            "SELECT count(*) FROM cards c WHERE current_balance <> (SELECT sum(amount) FROM ledger_entries e"
            " WHERE e.card_id = c.card_id)"))
        assert violations == 0
    finally:
        loop.run_until_complete(pool.close())

        async def drop() -> None:
            conn = await asyncpg.connect(stack.database_url)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

        loop.run_until_complete(drop())
        loop.close()
