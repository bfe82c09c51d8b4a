"""Use cases of giftcard_ledger: each opens one transaction, locks the card(s), calls domain verbs, appends
ledger entries, writes the outbox, commits. POS events come in polled batches (one transaction per batch);
API writes come one at a time, each under its Idempotency-Key (stored in the same transaction)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import structlog

from services.giftcard_ledger import cardnumbers, store
from services.giftcard_ledger.cardnumbers import CardNumberHasher, normalize
from services.giftcard_ledger.domain import (
    AdjustReason,
    Context,
    Entry,
    EntryType,
    GiftCard,
    InvoiceTotals,
    Policy,
    Reason,
    Rejected,
)
from services.giftcard_ledger.schemas import CardOut, EntryOut
from shared import inbox, metrics, outbox
from shared.clock import Clock
from shared.consumer import Delivery
from shared.contracts import domain as contracts
from shared.contracts import topics
from shared.contracts.pos import GiftCardActivated, GiftCardRedeemed, GiftCardRefunded, GiftCardReloaded

log = structlog.get_logger(__name__)

SERVICE = "giftcard_ledger"
CONSUMER = "giftcard_ledger"
SWEEP_CHUNK = 200
_RETRIES = 3
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
# How the API answers a refusal: no such card, an invalid request, or (409) a conflict with the card's state.
_STATUS = {Reason.UNKNOWN_CARD: 404, Reason.INVALID_AMOUNT: 422, Reason.INVALID_EXPIRATION: 422}


class IdempotencyMismatch(Exception):
    """The Idempotency-Key was used before with another request."""


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    key: str
    method: str
    path: str
    canonical: bytes  # the validated body, canonical JSON
    actor: str


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: dict[str, Any]
    stored: dict[str, Any] | None = None  # what the idempotency store keeps, when it differs from ``body``
    replayed: bool = False


@dataclass
class _Changes:
    """What one transaction changes: written together at the end, in order."""

    cards: dict[str, GiftCard] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    rejections: list[store.RejectionRow] = field(default_factory=list)
    events: list[tuple[str, str, Any]] = field(default_factory=list)


class GiftCardLedger:
    def __init__(self, pool: asyncpg.Pool, wake_relay: Callable[[], None], hasher: CardNumberHasher,
                 policy: Policy, clock: Clock, *, idempotency_retention: timedelta = timedelta(days=30)) -> None:
        self._pool = pool
        self._idempotency_retention = idempotency_retention
        self._wake_relay = wake_relay
        self._hasher = hasher
        self.policy = policy
        self.clock = clock

    # --- from the POS: pos.giftcard-activity.v1 -------------------------------------------------------------

    async def on_giftcard_activity(self, batch: Sequence[Delivery]) -> None:
        """Apply one polled batch (all partitions of a poll) in one transaction; refusals recorded and announced."""
        now = self.clock.now()
        changes = _Changes()
        async with self._pool.acquire() as conn, conn.transaction():
            new_ids = await inbox.claim_many(conn, CONSUMER, (d.event.event_id for d in batch))
            events: list[Any] = []
            for d in batch:  # the same event twice in one poll counts once
                if d.event.event_id in new_ids:
                    new_ids.discard(d.event.event_id)
                    events.append(d.event)
            if not events:
                return
            candidates = {normalize(e.card_number): self._hasher.candidates(e.card_number) for e in events}
            found = await store.find_by_hmacs(conn, [h for c in candidates.values() for _, h in c])
            card_of_number: dict[str, str] = {}
            stale: list[tuple[str, str]] = []
            for number, options in candidates.items():
                match = next((found[h] for _, h in options if h in found), None)
                if match is not None:
                    card_of_number[number] = match.card_id
                    if match.key_version != self._hasher.current_version:
                        stale.append((match.card_id, number))
            changes.cards = await store.lock_cards(conn, card_of_number.values())
            for card_id, number in stale:  # found under a previous key: move it to the current one
                await store.rekey(conn, card_id, self._hasher.digest(number), self._hasher.current_version)
            totals = await store.invoice_totals(conn, (
                (card_of_number[normalize(e.card_number)], e.original_invoice_number)
                for e in events if isinstance(e, GiftCardRefunded) and normalize(e.card_number) in card_of_number
            ))
            for event in events:
                await self._apply_pos_event(conn, event, now, card_of_number, totals, changes)
            await self._write(conn, changes)
        self._after_commit(changes)

    async def _apply_pos_event(self, conn: asyncpg.Connection, event: Any, now: datetime,
                               card_of_number: dict[str, str], totals: dict[tuple[str, str], InvoiceTotals],
                               changes: _Changes) -> None:
        ctx = Context(at=min(event.occurred_at, now), actor=f"pos:{event.store_id}", source=f"event:{event.event_id}",
                      store_id=event.store_id, invoice_number=event.invoice_number)
        number = normalize(event.card_number)
        card_id = card_of_number.get(number)
        card = changes.cards.get(card_id) if card_id else None
        try:
            if isinstance(event, GiftCardActivated):
                if card is not None:
                    raise Rejected(Reason.CARD_ALREADY_ACTIVE, "a card with this number is already active")
                new, entry = GiftCard.issue(
                    card_id=cardnumbers.new_card_id(), last4=cardnumbers.last4(number),
                    customer_id=event.customer_id, amount=event.amount, currency=event.currency,
                    expires_on=event.expires_on, ctx=ctx, policy=self.policy, at_pos=True,
                )
                if not await store.insert_card(conn, new, self._hasher.digest(number), self._hasher.current_version,
                                               "pos"):  # issued meanwhile through the API
                    raise Rejected(Reason.CARD_ALREADY_ACTIVE, "a card with this number is already active")
                card = changes.cards[new.card_id] = new
                card_of_number[number] = new.card_id
            elif card is None:
                raise Rejected(Reason.UNKNOWN_CARD, "no gift card with this number")
            elif isinstance(event, GiftCardReloaded):
                entry = card.reload(event.amount, event.currency, ctx, self.policy)
            elif isinstance(event, GiftCardRedeemed):
                entry = card.redeem(event.amount, event.currency, ctx, self.policy)
            elif isinstance(event, GiftCardRefunded):
                pair = (card.card_id, event.original_invoice_number)
                entry = card.refund(event.amount, event.currency, event.original_invoice_number,
                                    totals.get(pair, InvoiceTotals()), ctx, self.policy)
            else:  # pragma: no cover - the contract's union is exhaustive
                raise TypeError(f"unexpected event {type(event).__name__}")
        except Rejected as rejected:
            self._reject(event, rejected, card, ctx, changes)
            return
        # Keep the per-invoice totals current for later refunds in this batch (the database has not seen
        # this entry yet). Every refund's pair of a pre-existing card was loaded; a new card starts at zero.
        invoice = entry.original_invoice_number if entry.type is EntryType.REFUND else entry.invoice_number
        if entry.type in (EntryType.REDEEM, EntryType.REFUND) and invoice:
            pair = (card.card_id, invoice)
            totals[pair] = totals.get(pair, InvoiceTotals()).after(entry, invoice)
        self._record(card, entry, changes)

    def _reject(self, event: Any, rejected: Rejected, card: GiftCard | None, ctx: Context, changes: _Changes) -> None:
        last4 = card.last4 if card else cardnumbers.last4(event.card_number)
        changes.rejections.append(store.RejectionRow(
            event_id=event.event_id, event_type=event.event_type, reason=rejected.reason.value,
            detail=rejected.detail, card_id=card.card_id if card else None, last4=last4, amount=event.amount,
            currency=event.currency, store_id=event.store_id, invoice_number=event.invoice_number,
            occurred_at=event.occurred_at,
        ))
        announcement = contracts.GiftCardActivityRejected(
            event_id=uuid.uuid4(), occurred_at=ctx.at, rejected_event_id=str(event.event_id),
            rejected_event_type=event.event_type, reason=rejected.reason.value, detail=rejected.detail,
            last4=last4, invoice_number=event.invoice_number, store_id=event.store_id,
            card_id=card.card_id if card else None, amount=event.amount, currency=event.currency,
        )
        changes.events.append((topics.GIFTCARD_REJECTIONS, card.card_id if card else last4, announcement))

    def _record(self, card: GiftCard, entry: Entry, changes: _Changes, previous_customer_id: str | None = None) -> None:
        changes.cards[card.card_id] = card
        changes.entries.append(entry)
        changes.events.append((topics.GIFTCARD_CARDS, card.card_id,
                               self._changed(card, entry, previous_customer_id)))

    def _changed(self, card: GiftCard, entry: Entry, previous_customer_id: str | None) -> contracts.GiftCardChanged:
        """The whole card as it stands after ``entry``: what marketing_view shows in the Gift Cards grid."""
        return contracts.GiftCardChanged(
            event_id=uuid.uuid4(), occurred_at=entry.occurred_at, version=card.version, card_id=card.card_id,
            customer_id=card.customer_id, previous_customer_id=previous_customer_id, last4=card.last4,
            card_number_masked=cardnumbers.mask(card.last4), original_balance=card.original_balance,
            current_balance=card.current_balance, currency=card.currency,
            issue_date=card.issue_date(self.policy.business_tz), expiration_date=card.expires_on,
            state=contracts.CardState(card.state.value), change=entry.type.value,
        )

    async def _write(self, conn: asyncpg.Connection, changes: _Changes) -> None:
        await store.insert_entries(conn, changes.entries)
        await store.save_cards(conn, (changes.cards[c] for c in dict.fromkeys(e.card_id for e in changes.entries)))
        await store.insert_rejections(conn, changes.rejections)
        await outbox.enqueue_many(conn, changes.events)

    def _after_commit(self, changes: _Changes) -> None:
        for r in changes.rejections:
            metrics.EVENTS_REJECTED.labels(SERVICE, r.event_type, r.reason).inc()
            log.info("gift card event rejected", event_id=str(r.event_id), event_type=r.event_type,
                     reason=r.reason, card_id=r.card_id, last4=r.last4)
        if changes.events:
            self._wake_relay()

    # --- management API: writes, each under an Idempotency-Key ----------------------------------------------

    async def issue(self, req: IdempotentRequest, *, customer_id: str, amount: Decimal, currency: str,
                    expires_on: date | None, card_number: str | None) -> Outcome:
        async def action(conn: asyncpg.Connection, ctx: Context, changes: _Changes) -> Outcome:
            number = card_number or await self._unused_number(conn)
            card, entry = GiftCard.issue(
                card_id=cardnumbers.new_card_id(), last4=cardnumbers.last4(number), customer_id=customer_id,
                amount=amount, currency=currency, expires_on=expires_on, ctx=ctx, policy=self.policy,
            )
            if await store.find_by_hmacs(conn, [h for _, h in self._hasher.candidates(number)]) or \
                    not await store.insert_card(conn, card, self._hasher.digest(number),
                                                self._hasher.current_version, "api"):
                raise Rejected(Reason.CARD_ALREADY_ACTIVE, "a card with this number already exists")
            self._record(card, entry, changes)
            out = CardOut.of(card, ctx.at, self.policy.business_tz).model_dump(mode="json")
            return Outcome(201, {**out, "card_number": number}, stored={**out, "card_number": None})

        outcome = await self._idempotent(req, action)
        if outcome.replayed and outcome.status == 201 and card_number:
            # The client sent the number again in this very request: echoing it back reveals nothing new.
            return Outcome(outcome.status, {**outcome.body, "card_number": card_number}, replayed=True)
        return outcome

    async def _unused_number(self, conn: asyncpg.Connection) -> str:
        for _ in range(10):
            number = cardnumbers.generate_number()
            if not await store.find_by_hmacs(conn, [h for _, h in self._hasher.candidates(number)]):
                return number
        raise RuntimeError("could not generate an unused card number")  # 10^15 numbers: never happens

    async def reload(self, req: IdempotentRequest, card_id: str, *, amount: Decimal, currency: str | None,
                     reason: str | None) -> Outcome:
        return await self._change(req, card_id, reason, lambda card, ctx: card.reload(
            amount, currency or card.currency, ctx, self.policy))

    async def redeem(self, req: IdempotentRequest, card_id: str, *, amount: Decimal, currency: str | None,
                     invoice_number: str | None, store_id: str | None, reason: str | None) -> Outcome:
        def verb(card: GiftCard, ctx: Context) -> Entry:
            ctx = Context(at=ctx.at, actor=ctx.actor, source=ctx.source, store_id=store_id,
                          invoice_number=invoice_number, reason=ctx.reason)
            return card.redeem(amount, currency or card.currency, ctx, self.policy)

        return await self._change(req, card_id, reason, verb)

    async def adjust(self, req: IdempotentRequest, card_id: str, *, amount: Decimal, reason: AdjustReason,
                     note: str | None) -> Outcome:
        return await self._change(req, card_id, note, lambda card, ctx: card.adjust(amount, reason, ctx, self.policy))

    async def expire(self, req: IdempotentRequest, card_id: str, *, reason: str | None) -> Outcome:
        return await self._change(req, card_id, reason, lambda card, ctx: card.expire(ctx))

    async def deactivate(self, req: IdempotentRequest, card_id: str, *, reason: str | None) -> Outcome:
        return await self._change(req, card_id, reason, lambda card, ctx: card.deactivate(ctx))

    async def assign(self, req: IdempotentRequest, card_id: str, *, customer_id: str, reason: str | None) -> Outcome:
        previous: list[str | None] = []

        def verb(card: GiftCard, ctx: Context) -> Entry:
            entry, before = card.assign(customer_id, ctx)
            previous.append(before)
            return entry

        return await self._change(req, card_id, reason, verb, previous=previous)

    async def _change(self, req: IdempotentRequest, card_id: str, reason: str | None,
                      verb: Callable[[GiftCard, Context], Entry], previous: list[str | None] | None = None) -> Outcome:
        async def action(conn: asyncpg.Connection, ctx: Context, changes: _Changes) -> Outcome:
            card = await store.lock_card(conn, card_id)
            if card is None:
                raise Rejected(Reason.UNKNOWN_CARD, f"no gift card {card_id}")
            entry = verb(card, Context(at=ctx.at, actor=ctx.actor, source=ctx.source, reason=reason))
            self._record(card, entry, changes, previous[0] if previous else None)
            return Outcome(200, CardOut.of(card, ctx.at, self.policy.business_tz).model_dump(mode="json"))

        return await self._idempotent(req, action)

    async def _idempotent(self, req: IdempotentRequest,
                          action: Callable[[asyncpg.Connection, Context, _Changes], Awaitable[Outcome]]) -> Outcome:
        """Run ``action`` once per Idempotency-Key: its effect and its answer commit together."""
        hashes = self._hasher.request_hashes(req.canonical)
        for attempt in range(_RETRIES):
            changes = _Changes()
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    if not await store.claim_idempotency_key(conn, req.key, hashes[0], req.method, req.path):
                        stored = await store.stored_response(conn, req.key)
                        if stored is None:
                            continue  # claimed by a request that rolled back meanwhile: try again
                        if stored.request_hash not in hashes:
                            raise IdempotencyMismatch
                        return Outcome(stored.status_code, stored.response, replayed=True)
                    ctx = Context(at=self.clock.now(), actor=req.actor, source=f"idem:{req.key}")
                    try:
                        async with conn.transaction():  # a savepoint: a refusal leaves nothing behind
                            outcome = await action(conn, ctx, changes)
                            await self._write(conn, changes)
                    except Rejected as rejected:
                        changes = _Changes()
                        outcome = Outcome(_STATUS.get(rejected.reason, 409),
                                          {"detail": rejected.detail, "reason": rejected.reason.value})
                    stored_body = outcome.stored if outcome.stored is not None else outcome.body
                    await store.complete_idempotency_key(conn, req.key, outcome.status, stored_body)
                self._after_commit(changes)
                return outcome
            except _RETRYABLE:
                if attempt == _RETRIES - 1:
                    raise
        raise RuntimeError("idempotency key could not be claimed")  # pragma: no cover

    # --- time: the sweep ---------------------------------------------------------------------------------------

    async def sweep(self, as_of: datetime | None = None) -> int:
        """Expire every open card whose expiration date has passed as of ``as_of``; emit each change."""
        as_of = as_of or self.clock.now()
        business_date = self.policy.business_date(as_of)
        expired = 0
        while True:
            changes = _Changes()
            async with self._pool.acquire() as conn, conn.transaction():
                cards = await store.lock_cards_to_expire(conn, business_date, SWEEP_CHUNK)
                for card in cards:
                    assert card.expires_on is not None
                    ctx = Context(at=self.policy.end_of(card.expires_on), actor="system:sweep",
                                  source=f"sweep:{card.expires_on.isoformat()}", reason="expiration date passed")
                    self._record(card, card.expire(ctx), changes)
                await self._write(conn, changes)
            self._after_commit(changes)
            expired += len(cards)
            if len(cards) < SWEEP_CHUNK:
                break
        forgotten = await store.forget_idempotency_keys(self._pool, as_of - self._idempotency_retention)
        if expired or forgotten:
            log.info("sweep done", as_of=as_of.isoformat(), expired=expired, idempotency_keys_forgotten=forgotten)
        return expired

    # --- reads -------------------------------------------------------------------------------------------------

    async def card(self, card_id: str) -> CardOut | None:
        card = await store.get_card(self._pool, card_id)
        return None if card is None else CardOut.of(card, self.clock.now(), self.policy.business_tz)

    async def lookup(self, card_number: str) -> CardOut | None:
        found = await store.find_by_hmacs(self._pool, [h for _, h in self._hasher.candidates(card_number)])
        if not found:
            return None
        return await self.card(next(iter(found.values())).card_id)

    async def transactions(self, card_id: str, *, before_seq: int | None,
                           limit: int) -> tuple[list[EntryOut], int | None] | None:
        async with self._pool.acquire() as conn:
            if await store.get_card(conn, card_id) is None:
                return None
            rows = await store.entries_page(conn, card_id, before_seq=before_seq, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return [EntryOut.of(r) for r in rows], (rows[-1].seq if more and rows else None)

    async def customer_cards(self, customer_id: str, *, after: tuple[datetime, str] | None,
                             limit: int) -> tuple[list[CardOut], GiftCard | None]:
        cards = await store.customer_cards(self._pool, customer_id, after=after, limit=limit + 1)
        now = self.clock.now()
        last = cards[limit - 1] if len(cards) > limit else None
        return [CardOut.of(c, now, self.policy.business_tz) for c in cards[:limit]], last

    async def expiring(self, within_days: int, *, after: tuple[date, str] | None,
                       limit: int) -> tuple[date, date, list[CardOut], GiftCard | None]:
        now = self.clock.now()
        today = self.policy.business_date(now)
        last_day = today + timedelta(days=within_days)
        cards = await store.expiring_cards(self._pool, first_day=today, last_day=last_day, after=after,
                                           limit=limit + 1)
        last = cards[limit - 1] if len(cards) > limit else None
        return today, last_day, [CardOut.of(c, now, self.policy.business_tz) for c in cards[:limit]], last

    async def rejections(self, card_id: str, limit: int) -> list[dict[str, Any]]:
        rows = await store.rejections_of_card(self._pool, card_id, limit)
        return [dict(r) for r in rows]

