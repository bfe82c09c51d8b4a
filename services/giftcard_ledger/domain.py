"""Gift card rules (SPEC §2.3, §5). Pure: no database, no Kafka, no HTTP, no clock of its own.

A ``GiftCard`` is the aggregate. Its verbs (``reload``, ``redeem``, ``refund``, ``adjust``, ``expire``,
``deactivate``, ``assign``, and ``GiftCard.issue``) check everything first and either raise ``Rejected``
(nothing changed) or change the card and return the ledger ``Entry`` that records the change. Every change
bumps ``version`` and ``last_seq`` by one, so a card's entries form an unbroken chain:
``entry.balance_after == previous.balance_after + entry.amount``, and the card's balance is the last
``balance_after``, which is the sum of all amounts. The database checks the same chain (001_ledger.sql).

Transition table (``usable``: not deactivated, and not expired unless the store policy allows expired cards):

| verb       | allowed when                                              | amount          | state after  |
|------------|-----------------------------------------------------------|-----------------|--------------|
| issue      | number unknown; expires_on not before the issue day       | +amount (> 0)   | open         |
| reload     | usable; same currency; new balance <= max balance         | +amount (> 0)   | unchanged    |
| redeem     | usable; same currency; amount <= balance                  | -amount (> 0)   | unchanged    |
| refund     | usable; same currency; a redemption on the original       | +amount (> 0)   | unchanged    |
|            | invoice; refunds of that invoice never exceed it          |                 |              |
| adjust     | not deactivated; signed, non-zero; result in [0, max];    | +/-amount       | unchanged    |
|            | a reason code                                             |                 |              |
| expire     | state open (by staff, or by the sweep once the date passed)| 0              | expired      |
| deactivate | state open or expired                                     | 0               | deactivated  |
| assign     | not deactivated; a different customer                     | 0               | unchanged    |
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


class EntryType(StrEnum):
    ISSUE = "issue"  # issued through the management API
    ACTIVATE = "activate"  # sold and activated at the till
    RELOAD = "reload"
    REDEEM = "redeem"
    REFUND = "refund"
    ADJUST = "adjust"
    EXPIRE = "expire"
    DEACTIVATE = "deactivate"
    ASSIGN = "assign"


class CardState(StrEnum):
    """What the ledger records; the displayed ``CardStatus`` is derived from it at the moment of reading."""

    OPEN = "open"
    EXPIRED = "expired"
    DEACTIVATED = "deactivated"


class CardStatus(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    FULLY_REDEEMED = "fully_redeemed"
    DEACTIVATED = "deactivated"


class ExpiredRedemptionPolicy(StrEnum):
    REJECT = "reject"
    ALLOW = "allow"


class AdjustReason(StrEnum):
    """Why staff adjusted a balance (the reason code of an ``adjust`` entry)."""

    CORRECTION = "correction"
    GOODWILL = "goodwill"
    PROMOTION = "promotion"
    FRAUD = "fraud"
    SYSTEM_ERROR = "system_error"
    OTHER = "other"


class Reason(StrEnum):
    """Why a change was refused (sent to the POS on the rejections topic, or answered by the API)."""

    UNKNOWN_CARD = "unknown_card"
    INACTIVE_CARD = "inactive_card"  # deactivated
    CARD_EXPIRED = "card_expired"
    CURRENCY_MISMATCH = "currency_mismatch"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    REFUND_TOO_LARGE = "refund_too_large"
    NO_MATCHING_REDEMPTION = "no_matching_redemption"
    CARD_ALREADY_ACTIVE = "card_already_active"
    BALANCE_LIMIT_EXCEEDED = "balance_limit_exceeded"
    INVALID_AMOUNT = "invalid_amount"
    INVALID_EXPIRATION = "invalid_expiration"
    ALREADY_EXPIRED = "already_expired"
    ALREADY_DEACTIVATED = "already_deactivated"
    ALREADY_ASSIGNED = "already_assigned"


class Rejected(Exception):
    """A business refusal: recorded and announced, never an error of the system."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Policy:
    """The store's rules that vary by deployment (jurisdiction, business time zone)."""

    business_tz: ZoneInfo
    expired_redemption: ExpiredRedemptionPolicy = ExpiredRedemptionPolicy.REJECT
    max_balance: Decimal = Decimal("1000000.00")

    def business_date(self, moment: datetime) -> date:
        return moment.astimezone(self.business_tz).date()

    def end_of(self, day: date) -> datetime:
        """The moment a card with ``expires_on == day`` stops being valid: midnight after it, business tz."""
        return datetime.combine(day + timedelta(days=1), time(0), self.business_tz)


@dataclass(frozen=True, slots=True)
class Context:
    """Who did it, when, where, and what caused it (the event id or the idempotency key)."""

    at: datetime
    actor: str
    source: str
    store_id: str | None = None
    invoice_number: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One append-only ledger line."""

    card_id: str
    seq: int
    type: EntryType
    amount: Decimal
    balance_after: Decimal
    occurred_at: datetime
    actor: str
    source: str
    store_id: str | None = None
    invoice_number: str | None = None
    original_invoice_number: str | None = None
    customer_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class InvoiceTotals:
    """What was redeemed on one invoice of one card, and how much of it was already refunded."""

    redeemed: Decimal = ZERO
    refunded: Decimal = ZERO

    @classmethod
    def of(cls, entries: Iterable[Entry], invoice_number: str) -> InvoiceTotals:
        redeemed = refunded = ZERO
        for e in entries:
            if e.type is EntryType.REDEEM and e.invoice_number == invoice_number:
                redeemed -= e.amount
            elif e.type is EntryType.REFUND and e.original_invoice_number == invoice_number:
                refunded += e.amount
        return cls(redeemed, refunded)

    def after(self, entry: Entry, invoice_number: str) -> InvoiceTotals:
        """These totals once ``entry`` is applied (for several changes of one card in one batch)."""
        if entry.type is EntryType.REDEEM and entry.invoice_number == invoice_number:
            return replace(self, redeemed=self.redeemed - entry.amount)
        if entry.type is EntryType.REFUND and entry.original_invoice_number == invoice_number:
            return replace(self, refunded=self.refunded + entry.amount)
        return self


def money(amount: Decimal, *, signed: bool = False) -> Decimal:
    """An amount with two places, strictly positive (or non-zero when ``signed``)."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise Rejected(Reason.INVALID_AMOUNT, "amount must be a decimal number")
    if amount != amount.quantize(CENT):
        raise Rejected(Reason.INVALID_AMOUNT, "amount must have at most two decimal places")
    if signed and amount == 0:
        raise Rejected(Reason.INVALID_AMOUNT, "an adjustment must not be zero")
    if not signed and amount <= 0:
        raise Rejected(Reason.INVALID_AMOUNT, "amount must be greater than zero")
    return amount.quantize(CENT)


def status_of(state: CardState, balance: Decimal, expires_on: date | None, moment: datetime,
              tz: ZoneInfo) -> CardStatus:
    """The displayed status as of ``moment``: deactivated > expired > fully_redeemed > active.

    A card is valid through its expiration date (business time zone) and expired from the day after.
    """
    if state is CardState.DEACTIVATED:
        return CardStatus.DEACTIVATED
    if state is CardState.EXPIRED or (expires_on is not None and expires_on < moment.astimezone(tz).date()):
        return CardStatus.EXPIRED
    if balance <= 0:
        return CardStatus.FULLY_REDEEMED
    return CardStatus.ACTIVE


@dataclass(slots=True)
class GiftCard:
    card_id: str
    last4: str
    customer_id: str | None
    currency: str
    original_balance: Decimal
    current_balance: Decimal
    issued_at: datetime
    expires_on: date | None
    state: CardState = CardState.OPEN
    expired_at: datetime | None = None
    deactivated_at: datetime | None = None
    version: int = 1
    last_seq: int = 1

    # --- reading -------------------------------------------------------------------------------------------

    def status_at(self, moment: datetime, tz: ZoneInfo) -> CardStatus:
        return status_of(self.state, self.current_balance, self.expires_on, moment, tz)

    def is_expired_at(self, moment: datetime, tz: ZoneInfo) -> bool:
        """Expired at ``moment``: by its date, or by an expiry (staff, sweep) that took effect by then. A POS event
        that happened before the expiry but arrives after the sweep ran is judged as of when it happened."""
        expired_by_entry = self.state is CardState.EXPIRED and (self.expired_at is None or self.expired_at <= moment)
        return expired_by_entry or (self.expires_on is not None and self.expires_on < moment.astimezone(tz).date())

    def issue_date(self, tz: ZoneInfo) -> date:
        return self.issued_at.astimezone(tz).date()

    # --- issuing -------------------------------------------------------------------------------------------

    @classmethod
    def issue(cls, *, card_id: str, last4: str, customer_id: str | None, amount: Decimal, currency: str,
              expires_on: date | None, ctx: Context, policy: Policy, at_pos: bool = False) -> tuple[GiftCard, Entry]:
        """A new card with its first entry (``issue`` from the API, ``activate`` when sold at the till)."""
        amount = money(amount)
        if amount > policy.max_balance:
            raise Rejected(Reason.BALANCE_LIMIT_EXCEEDED, f"a card holds at most {policy.max_balance:.2f}")
        issue_day = policy.business_date(ctx.at)
        if expires_on is not None and expires_on < issue_day:
            raise Rejected(Reason.INVALID_EXPIRATION,
                           f"expires_on {expires_on.isoformat()} is before the issue date {issue_day.isoformat()}")
        card = cls(card_id=card_id, last4=last4, customer_id=customer_id, currency=currency,
                   original_balance=amount, current_balance=amount, issued_at=ctx.at, expires_on=expires_on)
        entry = Entry(card_id=card_id, seq=1, type=EntryType.ACTIVATE if at_pos else EntryType.ISSUE,
                      amount=amount, balance_after=amount, occurred_at=ctx.at, actor=ctx.actor, source=ctx.source,
                      store_id=ctx.store_id, invoice_number=ctx.invoice_number, customer_id=customer_id,
                      reason=ctx.reason)
        return card, entry

    # --- money in and out ----------------------------------------------------------------------------------

    def reload(self, amount: Decimal, currency: str, ctx: Context, policy: Policy) -> Entry:
        amount = money(amount)
        self._require_usable(ctx, policy, "reloaded")
        self._require_currency(currency)
        self._require_within_limit(amount, policy)
        return self._record(EntryType.RELOAD, amount, ctx)

    def redeem(self, amount: Decimal, currency: str, ctx: Context, policy: Policy) -> Entry:
        amount = money(amount)
        self._require_usable(ctx, policy, "redeemed")
        self._require_currency(currency)
        if amount > self.current_balance:
            raise Rejected(Reason.INSUFFICIENT_BALANCE,
                           f"balance {self.current_balance:.2f} is less than {amount:.2f}")
        return self._record(EntryType.REDEEM, -amount, ctx)

    def refund(self, amount: Decimal, currency: str, original_invoice_number: str, totals: InvoiceTotals,
               ctx: Context, policy: Policy) -> Entry:
        """Money back on the card for a return, linked to the redemption on ``original_invoice_number``."""
        amount = money(amount)
        self._require_usable(ctx, policy, "refunded")
        self._require_currency(currency)
        if totals.redeemed <= 0:
            raise Rejected(Reason.NO_MATCHING_REDEMPTION,
                           f"no redemption of this card on invoice {original_invoice_number}")
        refundable = totals.redeemed - totals.refunded
        if amount > refundable:
            raise Rejected(Reason.REFUND_TOO_LARGE,
                           f"{refundable:.2f} of the {totals.redeemed:.2f} redeemed on invoice "
                           f"{original_invoice_number} can still be refunded, not {amount:.2f}")
        self._require_within_limit(amount, policy)
        return self._record(EntryType.REFUND, amount, ctx, original_invoice_number=original_invoice_number)

    def adjust(self, amount: Decimal, reason: AdjustReason, ctx: Context, policy: Policy) -> Entry:
        """Staff correct the balance up or down, with a reason code (allowed on expired cards, for the books)."""
        amount = money(amount, signed=True)
        self._require_not_deactivated()
        if self.current_balance + amount < 0:
            raise Rejected(Reason.INSUFFICIENT_BALANCE,
                           f"balance {self.current_balance:.2f} cannot go down by {-amount:.2f}")
        self._require_within_limit(amount, policy)
        note = f"{reason.value}: {ctx.reason}" if ctx.reason else reason.value
        return self._record(EntryType.ADJUST, amount, replace(ctx, reason=note))

    # --- lifecycle -----------------------------------------------------------------------------------------

    def expire(self, ctx: Context) -> Entry:
        """Expired by staff, or by the sweep once the expiration date has passed. The balance stays."""
        self._require_not_deactivated()
        if self.state is CardState.EXPIRED:
            raise Rejected(Reason.ALREADY_EXPIRED, "the card is already expired")
        self.state = CardState.EXPIRED
        self.expired_at = ctx.at
        return self._record(EntryType.EXPIRE, ZERO, ctx)

    def deactivate(self, ctx: Context) -> Entry:
        """Permanently disabled: no change of any kind is accepted afterwards."""
        if self.state is CardState.DEACTIVATED:
            raise Rejected(Reason.ALREADY_DEACTIVATED, "the card is already deactivated")
        self.state = CardState.DEACTIVATED
        self.deactivated_at = ctx.at
        return self._record(EntryType.DEACTIVATE, ZERO, ctx)

    def assign(self, customer_id: str, ctx: Context) -> tuple[Entry, str | None]:
        """Re-assign to another customer; returns the entry and the previous customer."""
        self._require_not_deactivated()
        if customer_id == self.customer_id:
            raise Rejected(Reason.ALREADY_ASSIGNED, f"the card is already assigned to {customer_id}")
        previous, self.customer_id = self.customer_id, customer_id
        return self._record(EntryType.ASSIGN, ZERO, ctx, customer_id=customer_id), previous

    # --- guards --------------------------------------------------------------------------------------------

    def _require_not_deactivated(self) -> None:
        if self.state is CardState.DEACTIVATED:
            raise Rejected(Reason.INACTIVE_CARD, "the card is deactivated")

    def _require_usable(self, ctx: Context, policy: Policy, verb: str) -> None:
        self._require_not_deactivated()
        if policy.expired_redemption is ExpiredRedemptionPolicy.REJECT and self.is_expired_at(ctx.at,
                                                                                           policy.business_tz):
            when = f" on {self.expires_on.isoformat()}" if self.expires_on and self.state is CardState.OPEN else ""
            raise Rejected(Reason.CARD_EXPIRED, f"the card expired{when} and cannot be {verb}")

    def _require_currency(self, currency: str) -> None:
        if currency != self.currency:
            raise Rejected(Reason.CURRENCY_MISMATCH, f"the card is in {self.currency}, not {currency}")

    def _require_within_limit(self, amount: Decimal, policy: Policy) -> None:
        if self.current_balance + amount > policy.max_balance:
            raise Rejected(Reason.BALANCE_LIMIT_EXCEEDED,
                           f"a card holds at most {policy.max_balance:.2f} (balance {self.current_balance:.2f})")

    def _record(self, type_: EntryType, amount: Decimal, ctx: Context, *, original_invoice_number: str | None = None,
                customer_id: str | None = None) -> Entry:
        self.current_balance += amount
        self.last_seq += 1
        self.version += 1
        return Entry(card_id=self.card_id, seq=self.last_seq, type=type_, amount=amount,
                     balance_after=self.current_balance, occurred_at=ctx.at, actor=ctx.actor, source=ctx.source,
                     store_id=ctx.store_id, invoice_number=ctx.invoice_number,
                     original_invoice_number=original_invoice_number, customer_id=customer_id, reason=ctx.reason)
