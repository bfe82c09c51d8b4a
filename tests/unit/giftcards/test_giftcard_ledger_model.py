"""Stateful property test: the ledger against a deliberately simple oracle.

The oracle keeps integer cents and a handful of flags per card and decides, from first principles, whether each
operation is accepted and, if not, why. After every step the ledger must agree with it on balances, statuses,
customers, per-invoice refund totals and refusals, and keep its own invariants: balance = sum of entries = last
balance_after >= 0, an unbroken chain of sequence numbers, one version per change.

The ledger is reached through a small port (``Ledger``). Here it is the pure domain with an in-memory list of
entries; tests/integration/giftcards/test_giftcard_ledger_model_db.py runs the same machine against the real
use cases on Postgres (SQL, triggers, the POS batch handler and the API's idempotent writes).
Hypothesis prints the failing sequence and how to reproduce it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from services.giftcard_ledger.domain import (
    AdjustReason,
    CardState,
    Context,
    Entry,
    ExpiredRedemptionPolicy,
    GiftCard,
    InvoiceTotals,
    Policy,
    Reason,
    Rejected,
)

TZ = ZoneInfo("America/New_York")
MAX_CENTS = 50_000
START = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)
INVOICES = ("INV-1", "INV-2", "INV-3")
CUSTOMERS = ("C-1", "C-2", "C-3")

cents = st.integers(min_value=1, max_value=20_000)
currencies = st.sampled_from(["USD", "USD", "USD", "EUR"])


def money(c: int) -> Decimal:
    return (Decimal(c) / 100).quantize(Decimal("0.01"))


# --- the port: what the machine asks of a ledger --------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    balance: Decimal
    version: int
    state: str
    customer_id: str | None
    status: str
    entries: list[Entry]


class Ledger(Protocol):
    def set_now(self, moment: datetime) -> None: ...
    def issue(self, amount: Decimal, currency: str, expires_on: date | None, customer_id: str) -> str: ...
    def reload(self, card_id: str, amount: Decimal, currency: str) -> None: ...
    def redeem(self, card_id: str, amount: Decimal, currency: str, invoice: str) -> None: ...
    def refund(self, card_id: str, amount: Decimal, currency: str, invoice: str) -> None: ...
    def adjust(self, card_id: str, amount: Decimal, reason: AdjustReason) -> None: ...
    def expire(self, card_id: str) -> None: ...
    def deactivate(self, card_id: str) -> None: ...
    def assign(self, card_id: str, customer_id: str) -> None: ...
    def sweep(self) -> int: ...
    def snapshot(self, card_id: str) -> Snapshot: ...


class InMemoryLedger:
    """The domain verbs plus a list of entries per card: the ledger without a database."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.now = START
        self.cards: dict[str, GiftCard] = {}
        self.entries: dict[str, list[Entry]] = {}
        self.steps = 0

    def ctx(self, **kw: str | None) -> Context:
        self.steps += 1
        return Context(at=self.now, actor="test", source=f"step:{self.steps}", **kw)  # type: ignore[arg-type]

    def set_now(self, moment: datetime) -> None:
        self.now = moment

    def issue(self, amount: Decimal, currency: str, expires_on: date | None, customer_id: str) -> str:
        card_id = f"gc_{len(self.cards):022d}"
        card, entry = GiftCard.issue(card_id=card_id, last4="0000", customer_id=customer_id, amount=amount,
                                     currency=currency, expires_on=expires_on, ctx=self.ctx(), policy=self.policy)
        self.cards[card_id], self.entries[card_id] = card, [entry]
        return card_id

    def _do(self, card_id: str, entry: Entry | tuple[Entry, str | None]) -> None:
        self.entries[card_id].append(entry[0] if isinstance(entry, tuple) else entry)

    def reload(self, card_id: str, amount: Decimal, currency: str) -> None:
        self._do(card_id, self.cards[card_id].reload(amount, currency, self.ctx(), self.policy))

    def redeem(self, card_id: str, amount: Decimal, currency: str, invoice: str) -> None:
        self._do(card_id, self.cards[card_id].redeem(amount, currency, self.ctx(invoice_number=invoice), self.policy))

    def refund(self, card_id: str, amount: Decimal, currency: str, invoice: str) -> None:
        totals = InvoiceTotals.of(self.entries[card_id], invoice)
        self._do(card_id, self.cards[card_id].refund(amount, currency, invoice, totals, self.ctx(invoice_number="R"),
                                                     self.policy))

    def adjust(self, card_id: str, amount: Decimal, reason: AdjustReason) -> None:
        self._do(card_id, self.cards[card_id].adjust(amount, reason, self.ctx(), self.policy))

    def expire(self, card_id: str) -> None:
        self._do(card_id, self.cards[card_id].expire(self.ctx()))

    def deactivate(self, card_id: str) -> None:
        self._do(card_id, self.cards[card_id].deactivate(self.ctx()))

    def assign(self, card_id: str, customer_id: str) -> None:
        self._do(card_id, self.cards[card_id].assign(customer_id, self.ctx()))

    def sweep(self) -> int:
        today = self.now.astimezone(TZ).date()
        due = [c for c in self.cards.values()
               if c.state is CardState.OPEN and c.expires_on is not None and c.expires_on < today]
        for card in due:
            self.expire(card.card_id)
        return len(due)

    def snapshot(self, card_id: str) -> Snapshot:
        c = self.cards[card_id]
        return Snapshot(c.current_balance, c.version, c.state.value, c.customer_id, c.status_at(self.now, TZ).value,
                        list(self.entries[card_id]))


# --- the oracle ------------------------------------------------------------------------------------------------


@dataclass
class Model:
    """The oracle's view of one card."""

    balance: int
    currency: str
    expires_on: date | None
    customer: str
    expired_by_staff: bool = False
    deactivated: bool = False
    redeemed: dict[str, int] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)
    changes: int = 1

    def past_date(self, now: datetime) -> bool:
        return self.expires_on is not None and self.expires_on < now.astimezone(TZ).date()

    def expired(self, now: datetime) -> bool:
        return self.expired_by_staff or self.past_date(now)

    def status(self, now: datetime) -> str:
        if self.deactivated:
            return "deactivated"
        if self.expired(now):
            return "expired"
        return "fully_redeemed" if self.balance == 0 else "active"

    def state(self) -> str:
        return "deactivated" if self.deactivated else "expired" if self.expired_by_staff else "open"


class LedgerMachine(RuleBasedStateMachine):
    policy_kind = ExpiredRedemptionPolicy.REJECT
    cards = Bundle("cards")

    def __init__(self) -> None:
        super().__init__()
        self.policy = Policy(business_tz=TZ, expired_redemption=self.policy_kind, max_balance=money(MAX_CENTS))
        self.now = START
        self.ledger: Ledger = self.make_ledger()
        self.ledger.set_now(self.now)
        self.model: dict[str, Model] = {}

    def make_ledger(self) -> Ledger:
        return InMemoryLedger(self.policy)

    def blocked(self, m: Model) -> str | None:
        """Why money cannot move on this card now (the oracle's reading of the rules)."""
        if m.deactivated:
            return "inactive_card"
        if m.expired(self.now) and self.policy_kind is ExpiredRedemptionPolicy.REJECT:
            return "card_expired"
        return None

    def check(self, card_id: str, expected: str | None, action: object) -> bool:
        """Run ``action``: accepted iff the oracle expects no refusal, else refused for the same reason."""
        before = self.ledger.snapshot(card_id)
        try:
            action()  # type: ignore[operator]
        except Rejected as rejected:
            assert expected is not None, f"refused ({rejected}) but the oracle accepts"
            assert rejected.reason == Reason(expected), f"refused for {rejected.reason}, oracle says {expected}"
            after = self.ledger.snapshot(card_id)
            assert (after.balance, after.version, after.state, after.customer_id, len(after.entries)) == (
                before.balance, before.version, before.state, before.customer_id, len(before.entries))
            return False
        assert expected is None, f"accepted but the oracle refuses: {expected}"
        self.model[card_id].changes += 1
        return True

    # --- rules ---------------------------------------------------------------------------------------------------

    @initialize(target=cards, amount=cents, expires_in=st.none() | st.integers(0, 30))
    def first_card(self, amount: int, expires_in: int | None) -> str:
        return self.issue(amount, "USD", expires_in, "C-1")

    @rule(target=cards, amount=cents, currency=currencies, expires_in=st.none() | st.integers(-2, 30),
          customer=st.sampled_from(CUSTOMERS))
    def issue(self, amount: int, currency: str, expires_in: int | None, customer: str) -> str:
        today = self.now.astimezone(TZ).date()
        expires_on = None if expires_in is None else today + timedelta(days=expires_in)
        try:
            card_id = self.ledger.issue(money(amount), currency, expires_on, customer)
        except Rejected as rejected:
            assert expires_on is not None and expires_on < today, f"refused: {rejected}"
            assert rejected.reason is Reason.INVALID_EXPIRATION
            return self.issue(amount, currency, None, customer)
        assert expires_on is None or expires_on >= today, "a past expiration date must be refused"
        self.model[card_id] = Model(amount, currency, expires_on, customer)
        return card_id

    @rule(card_id=cards, amount=cents, currency=currencies)
    def reload(self, card_id: str, amount: int, currency: str) -> None:
        m = self.model[card_id]
        expected = self.blocked(m) or ("currency_mismatch" if currency != m.currency else None) or (
            "balance_limit_exceeded" if m.balance + amount > MAX_CENTS else None)
        if self.check(card_id, expected, lambda: self.ledger.reload(card_id, money(amount), currency)):
            m.balance += amount

    @rule(card_id=cards, amount=cents, currency=currencies, invoice=st.sampled_from(INVOICES))
    def redeem(self, card_id: str, amount: int, currency: str, invoice: str) -> None:
        m = self.model[card_id]
        expected = self.blocked(m) or ("currency_mismatch" if currency != m.currency else None) or (
            "insufficient_balance" if amount > m.balance else None)
        if self.check(card_id, expected, lambda: self.ledger.redeem(card_id, money(amount), currency, invoice)):
            m.balance -= amount
            m.redeemed[invoice] = m.redeemed.get(invoice, 0) + amount

    @rule(card_id=cards, amount=cents, currency=currencies, invoice=st.sampled_from(INVOICES))
    def refund(self, card_id: str, amount: int, currency: str, invoice: str) -> None:
        m = self.model[card_id]
        redeemed, refunded = m.redeemed.get(invoice, 0), m.refunded.get(invoice, 0)
        expected = self.blocked(m) or ("currency_mismatch" if currency != m.currency else None) or (
            "no_matching_redemption" if redeemed == 0 else None) or (
            "refund_too_large" if refunded + amount > redeemed else None) or (
            "balance_limit_exceeded" if m.balance + amount > MAX_CENTS else None)
        if self.check(card_id, expected, lambda: self.ledger.refund(card_id, money(amount), currency, invoice)):
            m.balance += amount
            m.refunded[invoice] = refunded + amount

    # Boundaries: amounts at exactly the balance, the refundable rest, the limit, and one cent either side.

    @rule(card_id=cards, delta=st.integers(-1, 1), invoice=st.sampled_from(INVOICES))
    def redeem_near_the_balance(self, card_id: str, delta: int, invoice: str) -> None:
        if self.model[card_id].balance + delta > 0:
            self.redeem(card_id, self.model[card_id].balance + delta, self.model[card_id].currency, invoice)

    @rule(card_id=cards, delta=st.integers(-1, 1), invoice=st.sampled_from(INVOICES))
    def refund_near_what_is_left(self, card_id: str, delta: int, invoice: str) -> None:
        m = self.model[card_id]
        amount = m.redeemed.get(invoice, 0) - m.refunded.get(invoice, 0) + delta
        if amount > 0:
            self.refund(card_id, amount, m.currency, invoice)

    @rule(card_id=cards, delta=st.integers(-1, 1))
    def reload_near_the_limit(self, card_id: str, delta: int) -> None:
        m = self.model[card_id]
        if MAX_CENTS - m.balance + delta > 0:
            self.reload(card_id, MAX_CENTS - m.balance + delta, m.currency)

    @rule(card_id=cards, delta=st.integers(-1, 1), reason=st.sampled_from(AdjustReason))
    def adjust_near_zero(self, card_id: str, delta: int, reason: AdjustReason) -> None:
        if -self.model[card_id].balance + delta != 0:
            self.adjust(card_id, -self.model[card_id].balance + delta, reason)

    @rule(card_id=cards, amount=st.integers(-20_000, 20_000).filter(bool), reason=st.sampled_from(AdjustReason))
    def adjust(self, card_id: str, amount: int, reason: AdjustReason) -> None:
        m = self.model[card_id]
        expected = ("inactive_card" if m.deactivated else None) or (
            "insufficient_balance" if m.balance + amount < 0 else None) or (
            "balance_limit_exceeded" if m.balance + amount > MAX_CENTS else None)
        if self.check(card_id, expected, lambda: self.ledger.adjust(card_id, money(amount), reason)):
            m.balance += amount

    @rule(card_id=cards, often=st.integers(0, 3))
    def expire(self, card_id: str, often: int) -> None:
        if often:  # 1 in 4: expired or deactivated cards refuse most things, keep them a minority
            return
        m = self.model[card_id]
        expected = "inactive_card" if m.deactivated else ("already_expired" if m.expired_by_staff else None)
        if self.check(card_id, expected, lambda: self.ledger.expire(card_id)):
            m.expired_by_staff = True

    @rule()
    def sweep(self) -> None:
        """The scheduled sweep: every open card whose date has passed is expired, once."""
        due = [m for m in self.model.values()
               if not m.deactivated and not m.expired_by_staff and m.past_date(self.now)]
        assert self.ledger.sweep() == len(due)
        for m in due:
            m.expired_by_staff = True
            m.changes += 1

    @rule(card_id=cards, often=st.integers(0, 3))
    def deactivate(self, card_id: str, often: int) -> None:
        if often:
            return
        m = self.model[card_id]
        expected = "already_deactivated" if m.deactivated else None
        if self.check(card_id, expected, lambda: self.ledger.deactivate(card_id)):
            m.deactivated = True

    @rule(card_id=cards, customer=st.sampled_from(CUSTOMERS))
    def assign(self, card_id: str, customer: str) -> None:
        m = self.model[card_id]
        expected = ("inactive_card" if m.deactivated else None) or (
            "already_assigned" if customer == m.customer else None)
        if self.check(card_id, expected, lambda: self.ledger.assign(card_id, customer)):
            m.customer = customer

    @rule(hours=st.integers(1, 24 * 3) | st.integers(1, 24 * 40))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)
        self.ledger.set_now(self.now)

    # --- invariants ----------------------------------------------------------------------------------------------

    @invariant()
    def ledger_agrees_with_the_oracle(self) -> None:
        for card_id, m in self.model.items():
            s = self.ledger.snapshot(card_id)
            assert s.balance == money(m.balance)
            assert s.balance == sum((e.amount for e in s.entries), Decimal("0")) == s.entries[-1].balance_after
            assert [e.seq for e in s.entries] == list(range(1, len(s.entries) + 1))
            assert s.version == len(s.entries) == m.changes, "one version and one entry per change"
            running = Decimal("0")
            for e in s.entries:
                running += e.amount
                assert e.balance_after == running >= 0
            assert s.status == m.status(self.now) and s.state == m.state()
            assert s.customer_id == m.customer
            for invoice in INVOICES:
                totals = InvoiceTotals.of(s.entries, invoice)
                assert totals == InvoiceTotals(money(m.redeemed.get(invoice, 0)), money(m.refunded.get(invoice, 0)))
                assert totals.refunded <= totals.redeemed


class AllowingLedgerMachine(LedgerMachine):
    policy_kind = ExpiredRedemptionPolicy.ALLOW


TestLedgerAgainstOracle = LedgerMachine.TestCase
TestLedgerAgainstOracle.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLedgerAgainstOracleExpiredAllowed = AllowingLedgerMachine.TestCase
TestLedgerAgainstOracleExpiredAllowed.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
