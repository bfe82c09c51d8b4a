"""Stateful property test: the ledger (domain verbs + append-only entries) against a deliberately simple oracle.

The oracle keeps integer cents and a handful of flags per card and decides, from first principles, whether each
operation is accepted and, if not, why. After every step the ledger must agree with it on balances, statuses and
refusals, and keep its own invariants: balance = sum of entries = last balance_after >= 0, an unbroken chain of
sequence numbers, one version per change. Hypothesis prints the failing sequence and its seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from services.giftcard_ledger.domain import (
    AdjustReason,
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


class LedgerMachine(RuleBasedStateMachine):
    policy_kind = ExpiredRedemptionPolicy.REJECT
    cards = Bundle("cards")

    def __init__(self) -> None:
        super().__init__()
        self.policy = Policy(business_tz=TZ, expired_redemption=self.policy_kind, max_balance=money(MAX_CENTS))
        self.now = START
        self.real: dict[str, GiftCard] = {}
        self.entries: dict[str, list[Entry]] = {}
        self.model: dict[str, Model] = {}
        self.steps = 0

    def ctx(self, **kw: str) -> Context:
        self.steps += 1
        return Context(at=self.now, actor="test", source=f"step:{self.steps}", **kw)  # type: ignore[arg-type]

    def blocked(self, m: Model) -> str | None:
        """Why money cannot move on this card now (the oracle's reading of the rules)."""
        if m.deactivated:
            return "inactive_card"
        if m.expired(self.now) and self.policy_kind is ExpiredRedemptionPolicy.REJECT:
            return "card_expired"
        return None

    def check(self, card_id: str, expected: str | None, action: object) -> None:
        """Run ``action`` on the real card: accepted iff the oracle expects no refusal, else the same reason."""
        card = self.real[card_id]
        before = (card.current_balance, card.version, card.state, card.customer_id)
        try:
            entry = action()  # type: ignore[operator]
        except Rejected as rejected:
            assert expected is not None, f"refused ({rejected}) but the oracle accepts"
            assert rejected.reason == Reason(expected), f"refused for {rejected.reason}, oracle says {expected}"
            assert (card.current_balance, card.version, card.state, card.customer_id) == before
            return
        assert expected is None, f"accepted but the oracle refuses: {expected}"
        self.entries[card_id].append(entry[0] if isinstance(entry, tuple) else entry)

    # --- rules ---------------------------------------------------------------------------------------------------

    @initialize(target=cards, amount=cents, expires_in=st.none() | st.integers(0, 30))
    def first_card(self, amount: int, expires_in: int | None) -> str:
        return self.issue(amount, "USD", expires_in, "C-1")

    @rule(target=cards, amount=cents, currency=currencies, expires_in=st.none() | st.integers(-2, 30),
          customer=st.sampled_from(CUSTOMERS))
    def issue(self, amount: int, currency: str, expires_in: int | None, customer: str) -> str:
        card_id = f"gc_{len(self.real):022d}"
        today = self.now.astimezone(TZ).date()
        expires_on = None if expires_in is None else today + timedelta(days=expires_in)
        try:
            card, entry = GiftCard.issue(card_id=card_id, last4="0000", customer_id=customer, amount=money(amount),
                                         currency=currency, expires_on=expires_on, ctx=self.ctx(), policy=self.policy)
        except Rejected as rejected:
            expected = "balance_limit_exceeded" if amount > MAX_CENTS else "invalid_expiration"
            assert (amount > MAX_CENTS) or (expires_on is not None and expires_on < today)
            assert rejected.reason == Reason(expected)
            return self.issue(min(amount, MAX_CENTS), currency, None, customer)
        assert amount <= MAX_CENTS and (expires_on is None or expires_on >= today)
        self.real[card_id], self.entries[card_id] = card, [entry]
        self.model[card_id] = Model(amount, currency, expires_on, customer)
        return card_id

    @rule(card_id=cards, amount=cents, currency=currencies)
    def reload(self, card_id: str, amount: int, currency: str) -> None:
        m = self.model[card_id]
        expected = self.blocked(m) or ("currency_mismatch" if currency != m.currency else None) or (
            "balance_limit_exceeded" if m.balance + amount > MAX_CENTS else None)
        self.check(card_id, expected, lambda: self.real[card_id].reload(money(amount), currency, self.ctx(),
                                                                        self.policy))
        if expected is None:
            m.balance += amount

    @rule(card_id=cards, amount=cents, currency=currencies, invoice=st.sampled_from(INVOICES))
    def redeem(self, card_id: str, amount: int, currency: str, invoice: str) -> None:
        m = self.model[card_id]
        expected = self.blocked(m) or ("currency_mismatch" if currency != m.currency else None) or (
            "insufficient_balance" if amount > m.balance else None)
        self.check(card_id, expected, lambda: self.real[card_id].redeem(
            money(amount), currency, self.ctx(invoice_number=invoice), self.policy))
        if expected is None:
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
        totals = InvoiceTotals.of(self.entries[card_id], invoice)
        self.check(card_id, expected, lambda: self.real[card_id].refund(
            money(amount), currency, invoice, totals, self.ctx(invoice_number="RET"), self.policy))
        if expected is None:
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
        self.check(card_id, expected, lambda: self.real[card_id].adjust(money(amount), reason, self.ctx(),
                                                                        self.policy))
        if expected is None:
            m.balance += amount

    @rule(card_id=cards, often=st.integers(0, 3))
    def expire(self, card_id: str, often: int) -> None:
        if often:  # 1 in 4: expired or deactivated cards refuse most things, keep them a minority
            return
        m = self.model[card_id]
        expected = "inactive_card" if m.deactivated else ("already_expired" if m.expired_by_staff else None)
        self.check(card_id, expected, lambda: self.real[card_id].expire(self.ctx()))
        if expected is None:
            m.expired_by_staff = True

    @rule(card_id=cards)
    def sweep(self, card_id: str) -> None:
        """What the scheduled sweep does to one card: expire it once its date has passed."""
        m = self.model[card_id]
        if m.deactivated or m.expired_by_staff or not m.past_date(self.now):
            return
        self.check(card_id, None, lambda: self.real[card_id].expire(self.ctx()))
        m.expired_by_staff = True

    @rule(card_id=cards, often=st.integers(0, 3))
    def deactivate(self, card_id: str, often: int) -> None:
        if often:
            return
        m = self.model[card_id]
        expected = "already_deactivated" if m.deactivated else None
        self.check(card_id, expected, lambda: self.real[card_id].deactivate(self.ctx()))
        m.deactivated = True

    @rule(card_id=cards, customer=st.sampled_from(CUSTOMERS))
    def assign(self, card_id: str, customer: str) -> None:
        m = self.model[card_id]
        expected = ("inactive_card" if m.deactivated else None) or (
            "already_assigned" if customer == m.customer else None)
        self.check(card_id, expected, lambda: self.real[card_id].assign(customer, self.ctx()))
        if expected is None:
            m.customer = customer

    @rule(hours=st.integers(1, 24 * 3) | st.integers(1, 24 * 40))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    # --- invariants ----------------------------------------------------------------------------------------------

    @invariant()
    def ledger_agrees_with_the_oracle(self) -> None:
        for card_id, card in self.real.items():
            m, entries = self.model[card_id], self.entries[card_id]
            assert card.current_balance == money(m.balance)
            assert card.current_balance == sum((e.amount for e in entries), Decimal("0")) == entries[-1].balance_after
            assert all(e.balance_after >= 0 for e in entries)
            assert [e.seq for e in entries] == list(range(1, len(entries) + 1)) and card.last_seq == len(entries)
            assert card.version == len(entries), "one version per change"
            running = Decimal("0")
            for e in entries:
                running += e.amount
                assert e.balance_after == running
            assert card.status_at(self.now, TZ).value == m.status(self.now)
            assert card.customer_id == m.customer
            for invoice in INVOICES:
                totals = InvoiceTotals.of(entries, invoice)
                assert totals == InvoiceTotals(money(m.redeemed.get(invoice, 0)), money(m.refunded.get(invoice, 0)))
                assert totals.refunded <= totals.redeemed


class AllowingLedgerMachine(LedgerMachine):
    policy_kind = ExpiredRedemptionPolicy.ALLOW


TestLedgerAgainstOracle = LedgerMachine.TestCase
TestLedgerAgainstOracle.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLedgerAgainstOracleExpiredAllowed = AllowingLedgerMachine.TestCase
TestLedgerAgainstOracleExpiredAllowed.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
