"""The gift card rules, one verb at a time (pure: no database, no clock)."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from services.giftcard_ledger.domain import (
    AdjustReason,
    CardState,
    CardStatus,
    Context,
    EntryType,
    ExpiredRedemptionPolicy,
    GiftCard,
    InvoiceTotals,
    Policy,
    Reason,
    Rejected,
    status_of,
)

NY = ZoneInfo("America/New_York")
POLICY = Policy(business_tz=NY, max_balance=Decimal("500.00"))
ALLOW = Policy(business_tz=NY, expired_redemption=ExpiredRedemptionPolicy.ALLOW, max_balance=Decimal("500.00"))
T0 = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # 11:00 in New York


def ctx(at: datetime = T0, source: str = "event:1", **kw: str) -> Context:
    return Context(at=at, actor="test", source=source, **kw)  # type: ignore[arg-type]


def D(s: str) -> Decimal:
    return Decimal(s)


def new_card(amount: str = "50.00", expires_on: date | None = None, **kw: object) -> GiftCard:
    card, _ = GiftCard.issue(card_id="gc_" + "a" * 22, last4="4821", customer_id="C-1", amount=D(amount),
                             currency="USD", expires_on=expires_on, ctx=ctx(), policy=POLICY, **kw)  # type: ignore[arg-type]
    return card


def refused(reason: Reason, card: GiftCard, action: object) -> None:
    """``action`` is refused with ``reason`` and the card is exactly as before."""
    before = copy.deepcopy(card)
    with pytest.raises(Rejected) as info:
        action()  # type: ignore[operator]
    assert info.value.reason is reason, info.value
    assert info.value.detail
    assert card == before, "a refusal changes nothing"


# --- issue ---------------------------------------------------------------------------------------------------


def test_issue_puts_the_initial_balance_on_a_new_card() -> None:
    card, entry = GiftCard.issue(card_id="gc_" + "a" * 22, last4="4821", customer_id="C-1", amount=D("50.00"),
                                 currency="USD", expires_on=date(2027, 1, 2), ctx=ctx(invoice_number="INV-1"),
                                 policy=POLICY)
    assert (card.original_balance, card.current_balance, card.version, card.last_seq) == (D("50"), D("50"), 1, 1)
    assert card.state is CardState.OPEN and card.issued_at == T0 and card.issue_date(NY) == date(2026, 3, 10)
    assert entry.type is EntryType.ISSUE and entry.seq == 1 and entry.amount == entry.balance_after == D("50.00")
    assert entry.invoice_number == "INV-1" and entry.customer_id == "C-1"
    _, at_till = GiftCard.issue(card_id="gc_" + "b" * 22, last4="0001", customer_id=None, amount=D("5.00"),
                                currency="USD", expires_on=None, ctx=ctx(), policy=POLICY, at_pos=True)
    assert at_till.type is EntryType.ACTIVATE


@pytest.mark.parametrize("amount", ["0.00", "-1.00", "1.001", "NaN", "Infinity"])
def test_issue_needs_a_positive_amount_with_two_places(amount: str) -> None:
    with pytest.raises(Rejected) as info:
        new_card(amount)
    assert info.value.reason is Reason.INVALID_AMOUNT


def test_issue_refuses_more_than_the_maximum_balance_and_a_past_expiration() -> None:
    with pytest.raises(Rejected, match="balance_limit_exceeded"):
        new_card("500.01")
    new_card("500.00")
    with pytest.raises(Rejected, match="invalid_expiration"):
        new_card(expires_on=date(2026, 3, 9))
    assert new_card(expires_on=date(2026, 3, 10)).status_at(T0, NY) is CardStatus.ACTIVE, "valid on its last day"


# --- money ---------------------------------------------------------------------------------------------------


def test_reload_redeem_and_refund_move_the_balance_and_chain_the_entries() -> None:
    card = new_card("50.00")
    e1 = card.reload(D("25.00"), "USD", ctx(source="event:2"), POLICY)
    e2 = card.redeem(D("30.00"), "USD", ctx(source="event:3", invoice_number="INV-9"), POLICY)
    e3 = card.refund(D("4.29"), "USD", "INV-9", InvoiceTotals(redeemed=D("30.00")),
                     ctx(source="event:4", invoice_number="RET-1"), POLICY)
    assert [(e.type, e.amount, e.balance_after, e.seq) for e in (e1, e2, e3)] == [
        (EntryType.RELOAD, D("25.00"), D("75.00"), 2),
        (EntryType.REDEEM, D("-30.00"), D("45.00"), 3),
        (EntryType.REFUND, D("4.29"), D("49.29"), 4),
    ]
    assert e3.original_invoice_number == "INV-9" and e3.invoice_number == "RET-1"
    assert card.current_balance == D("49.29") and card.version == 4 and card.last_seq == 4


def test_redeem_refuses_more_than_the_balance_and_another_currency() -> None:
    card = new_card("20.00")
    refused(Reason.INSUFFICIENT_BALANCE, card, lambda: card.redeem(D("20.01"), "USD", ctx(), POLICY))
    refused(Reason.CURRENCY_MISMATCH, card, lambda: card.redeem(D("1.00"), "EUR", ctx(), POLICY))
    refused(Reason.CURRENCY_MISMATCH, card, lambda: card.reload(D("1.00"), "EUR", ctx(), POLICY))
    refused(Reason.INVALID_AMOUNT, card, lambda: card.redeem(D("0.00"), "USD", ctx(), POLICY))
    card.redeem(D("20.00"), "USD", ctx(), POLICY)
    assert card.current_balance == 0 and card.status_at(T0, NY) is CardStatus.FULLY_REDEEMED
    card.reload(D("5.00"), "USD", ctx(), POLICY)
    assert card.status_at(T0, NY) is CardStatus.ACTIVE, "a reload makes a fully redeemed card active again"


def test_reload_refuses_to_pass_the_maximum_balance() -> None:
    card = new_card("400.00")
    refused(Reason.BALANCE_LIMIT_EXCEEDED, card, lambda: card.reload(D("100.01"), "USD", ctx(), POLICY))
    card.reload(D("100.00"), "USD", ctx(), POLICY)


def test_refund_is_linked_to_a_redemption_on_its_invoice_and_never_exceeds_it() -> None:
    card = new_card("50.00")
    refused(Reason.NO_MATCHING_REDEMPTION, card,
            lambda: card.refund(D("1.00"), "USD", "INV-X", InvoiceTotals(), ctx(), POLICY))
    totals = InvoiceTotals(redeemed=D("10.00"), refunded=D("7.00"))
    refused(Reason.REFUND_TOO_LARGE, card, lambda: card.refund(D("3.01"), "USD", "INV-1", totals, ctx(), POLICY))
    refused(Reason.CURRENCY_MISMATCH, card, lambda: card.refund(D("3.00"), "CAD", "INV-1", totals, ctx(), POLICY))
    card.refund(D("3.00"), "USD", "INV-1", totals, ctx(), POLICY)


def test_invoice_totals_follow_the_entries() -> None:
    card = new_card("50.00")
    entries = [card.redeem(D("10.00"), "USD", ctx(invoice_number="A"), POLICY),
               card.redeem(D("5.00"), "USD", ctx(invoice_number="A"), POLICY),
               card.redeem(D("7.00"), "USD", ctx(invoice_number="B"), POLICY)]
    entries.append(card.refund(D("4.00"), "USD", "A", InvoiceTotals.of(entries, "A"), ctx(invoice_number="R"),
                               POLICY))
    assert InvoiceTotals.of(entries, "A") == InvoiceTotals(D("15.00"), D("4.00"))
    assert InvoiceTotals.of(entries, "B") == InvoiceTotals(D("7.00"), D("0"))
    running = InvoiceTotals()
    for e in entries:
        running = running.after(e, "A")
    assert running == InvoiceTotals.of(entries, "A")


def test_adjust_goes_up_or_down_with_a_reason_code_never_below_zero() -> None:
    card = new_card("10.00")
    up = card.adjust(D("2.50"), AdjustReason.GOODWILL, ctx(reason="late delivery"), POLICY)
    assert up.type is EntryType.ADJUST and up.amount == D("2.50") and up.reason == "goodwill: late delivery"
    down = card.adjust(D("-12.50"), AdjustReason.CORRECTION, ctx(), POLICY)
    assert down.balance_after == 0 and down.reason == "correction"
    refused(Reason.INSUFFICIENT_BALANCE, card, lambda: card.adjust(D("-0.01"), AdjustReason.FRAUD, ctx(), POLICY))
    refused(Reason.INVALID_AMOUNT, card, lambda: card.adjust(D("0.00"), AdjustReason.OTHER, ctx(), POLICY))
    refused(Reason.BALANCE_LIMIT_EXCEEDED, card,
            lambda: card.adjust(D("500.01"), AdjustReason.OTHER, ctx(), POLICY))


# --- time and lifecycle ------------------------------------------------------------------------------------------


def test_a_card_is_valid_through_its_expiration_day_in_the_business_time_zone() -> None:
    card = new_card(expires_on=date(2026, 3, 10))
    last_minute = datetime(2026, 3, 11, 3, 59, tzinfo=UTC)  # 23:59 on the 10th in New York (EDT, UTC-4)
    late_evening = datetime(2026, 3, 11, 4, 30, tzinfo=UTC)  # 00:30 on the 11th in New York
    assert card.status_at(last_minute, NY) is CardStatus.ACTIVE
    assert card.status_at(late_evening, NY) is CardStatus.EXPIRED
    card.redeem(D("1.00"), "USD", ctx(at=last_minute), POLICY)
    refused(Reason.CARD_EXPIRED, card, lambda: card.redeem(D("1.00"), "USD", ctx(at=late_evening), POLICY))
    refused(Reason.CARD_EXPIRED, card, lambda: card.reload(D("1.00"), "USD", ctx(at=late_evening), POLICY))
    card.redeem(D("1.00"), "USD", ctx(at=late_evening), ALLOW)
    assert POLICY.end_of(date(2026, 3, 10)) == datetime(2026, 3, 11, 4, 0, tzinfo=UTC)


def test_expire_keeps_the_balance_and_follows_the_policy() -> None:
    card = new_card("30.00")
    entry = card.expire(ctx(reason="customer request"))
    assert entry.type is EntryType.EXPIRE and entry.amount == 0 and entry.balance_after == D("30.00")
    assert card.state is CardState.EXPIRED and card.expired_at == T0 and card.status_at(T0, NY) is CardStatus.EXPIRED
    refused(Reason.ALREADY_EXPIRED, card, lambda: card.expire(ctx()))
    refused(Reason.CARD_EXPIRED, card, lambda: card.redeem(D("1.00"), "USD", ctx(), POLICY))
    card.redeem(D("1.00"), "USD", ctx(), ALLOW)
    card.adjust(D("-29.00"), AdjustReason.CORRECTION, ctx(), POLICY)  # staff may still correct the books
    assert card.current_balance == 0 and card.status_at(T0, NY) is CardStatus.EXPIRED


def test_deactivation_is_permanent() -> None:
    card = new_card("30.00")
    card.expire(ctx())
    card.deactivate(ctx(reason="stolen"))
    assert card.state is CardState.DEACTIVATED and card.status_at(T0, NY) is CardStatus.DEACTIVATED
    for policy in (POLICY, ALLOW):
        refused(Reason.INACTIVE_CARD, card, lambda p=policy: card.redeem(D("1.00"), "USD", ctx(), p))
        refused(Reason.INACTIVE_CARD, card, lambda p=policy: card.reload(D("1.00"), "USD", ctx(), p))
        refused(Reason.INACTIVE_CARD, card, lambda p=policy: card.refund(
            D("1.00"), "USD", "I", InvoiceTotals(D("5"), D("0")), ctx(), p))
    refused(Reason.INACTIVE_CARD, card, lambda: card.adjust(D("-1.00"), AdjustReason.FRAUD, ctx(), POLICY))
    refused(Reason.INACTIVE_CARD, card, lambda: card.expire(ctx()))
    refused(Reason.INACTIVE_CARD, card, lambda: card.assign("C-2", ctx()))
    refused(Reason.ALREADY_DEACTIVATED, card, lambda: card.deactivate(ctx()))


def test_assign_moves_the_card_to_another_customer() -> None:
    card = new_card()
    entry, previous = card.assign("C-2", ctx())
    assert previous == "C-1" and card.customer_id == "C-2"
    assert entry.type is EntryType.ASSIGN and entry.amount == 0 and entry.customer_id == "C-2"
    refused(Reason.ALREADY_ASSIGNED, card, lambda: card.assign("C-2", ctx()))


@pytest.mark.parametrize(("state", "balance", "expires_on", "status"), [
    (CardState.DEACTIVATED, "0.00", date(2020, 1, 1), CardStatus.DEACTIVATED),
    (CardState.DEACTIVATED, "5.00", None, CardStatus.DEACTIVATED),
    (CardState.EXPIRED, "5.00", None, CardStatus.EXPIRED),
    (CardState.OPEN, "0.00", date(2026, 3, 9), CardStatus.EXPIRED),
    (CardState.OPEN, "0.00", date(2026, 3, 10), CardStatus.FULLY_REDEEMED),
    (CardState.OPEN, "0.01", date(2026, 3, 10), CardStatus.ACTIVE),
    (CardState.OPEN, "0.01", None, CardStatus.ACTIVE),
])
def test_status_precedence(state: CardState, balance: str, expires_on: date | None, status: CardStatus) -> None:
    assert status_of(state, D(balance), expires_on, T0, NY) is status


def test_every_change_bumps_version_and_sequence_once() -> None:
    card = new_card("100.00")
    steps = [
        lambda: card.reload(D("1.00"), "USD", ctx(), POLICY),
        lambda: card.redeem(D("1.00"), "USD", ctx(invoice_number="I"), POLICY),
        lambda: card.refund(D("1.00"), "USD", "I", InvoiceTotals(D("1.00")), ctx(), POLICY),
        lambda: card.adjust(D("-1.00"), AdjustReason.OTHER, ctx(), POLICY),
        lambda: card.assign("C-9", ctx())[0],
        lambda: card.expire(ctx()),
        lambda: card.deactivate(ctx()),
    ]
    for i, step in enumerate(steps, start=2):
        entry = step()
        assert entry.seq == card.last_seq == card.version == i
        assert entry.balance_after == card.current_balance
    assert card.current_balance == D("100.00")
