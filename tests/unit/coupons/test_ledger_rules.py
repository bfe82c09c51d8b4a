"""The ledger's verbs on an in-memory slice: record, duplicates, flags, reversals, holds, voids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.redemption_ledger.domain import Coupon, CouponTerms, Flag
from services.redemption_ledger.ledger import (
    REVERSED_BY_COUPON_EVENT,
    REVERSED_BY_VOID,
    LedgerSlice,
    Outcome,
    redemption_event,
    redemption_id_for,
)
from shared.contracts.domain import DiscountType, RedemptionStatus
from shared.contracts.pos import CouponRedeemed, CouponRedemptionReversed, ReversalReason, SaleVoided

T0 = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=1)
TERMS = CouponTerms(name="Fall 10% off", discount_type=DiscountType.PERCENT, discount_value=Decimal("10"),
                    campaign="fall", max_redemptions=3, max_redemptions_per_customer=2)
CATALOG = {"FALL10": [Coupon("FALL10", TERMS, 1, T0 - timedelta(days=10))]}


def redeemed(invoice: str, code: str = "fall10", customer: str | None = "C-1", *, at: datetime = T0,
             amount: str = "10.20", currency: str = "USD") -> CouponRedeemed:
    return CouponRedeemed(event_id=uuid.uuid4(), occurred_at=at, store_id="S-1", register_id="R-1",
                          invoice_number=invoice, customer_id=customer, coupon_code=code,
                          discount_amount=Decimal(amount), currency=currency)


def reversed_(invoice: str, code: str = "FALL10", *, at: datetime = T0 + timedelta(hours=1),
              reason: ReversalReason = ReversalReason.CORRECTION) -> CouponRedemptionReversed:
    return CouponRedemptionReversed(event_id=uuid.uuid4(), occurred_at=at, store_id="S-1", invoice_number=invoice,
                                    coupon_code=code, customer_id="C-1", reason=reason)


def voided(invoice: str, *, at: datetime = T0 + timedelta(hours=2)) -> SaleVoided:
    return SaleVoided(event_id=uuid.uuid4(), occurred_at=at, store_id="S-1", invoice_number=invoice,
                      customer_id="C-1", reason="customer changed their mind")


def fresh(**kwargs: object) -> LedgerSlice:
    return LedgerSlice(now=NOW, catalog=CATALOG, **kwargs)  # type: ignore[arg-type]


def test_a_redemption_snapshots_the_coupon_and_counts_usage() -> None:
    ledger = fresh()
    outcome, r = ledger.redeem(redeemed("INV-1"))
    assert outcome is Outcome.RECORDED
    assert (r.coupon_code, r.pos_coupon_code, r.coupon_name, r.discount_type, r.discount_value, r.campaign) == (
        "FALL10", "fall10", "Fall 10% off", DiscountType.PERCENT, Decimal("10"), "fall")
    assert r.redemption_id == redemption_id_for("INV-1", "FALL10") and r.flags == ()
    assert ledger.used("FALL10") == 1 and ledger.used("FALL10", "C-1") == 1
    assert ledger.new_redemptions == [r] and list(ledger.changed) == [r.redemption_id]


def test_the_same_invoice_and_code_under_another_event_id_is_a_duplicate() -> None:
    ledger = fresh()
    _, first = ledger.redeem(redeemed("INV-1", "FALL10"))
    outcome, same = ledger.redeem(redeemed("INV-1", " Fall10 ", amount="99.00"))
    assert outcome is Outcome.DUPLICATE and same is first
    assert len(ledger.new_redemptions) == 1 and ledger.used("FALL10") == 1


def test_unknown_codes_are_recorded_and_flagged() -> None:
    ledger = fresh()
    _, r = ledger.redeem(redeemed("INV-1", "NOPE"))
    assert r.flags == (Flag.UNKNOWN_CODE,) and r.discount_type is DiscountType.UNKNOWN and r.coupon_name == ""
    assert ledger.used("NOPE") == 1


def test_limits_flag_exactly_the_redemptions_beyond_them() -> None:
    ledger = fresh()
    results = [ledger.redeem(redeemed(f"INV-{i}", customer=f"C-{i % 2}"))[1] for i in range(6)]
    assert [Flag.OVER_LIMIT in r.flags for r in results] == [False, False, False, True, True, True]
    assert [Flag.CUSTOMER_OVER_LIMIT in r.flags for r in results] == [False, False, False, False, True, True]
    assert ledger.used("FALL10") == 6


def test_a_reversal_gives_the_usage_back() -> None:
    ledger = fresh()
    for i in range(3):
        ledger.redeem(redeemed(f"INV-{i}", customer=f"C-{i}"))
    assert ledger.reverse(reversed_("INV-0")) is Outcome.REVERSED
    assert ledger.used("FALL10") == 2 and ledger.used("FALL10", "C-0") == 0
    _, again = ledger.redeem(redeemed("INV-9", customer="C-9"))
    assert Flag.OVER_LIMIT not in again.flags


def test_a_reversal_before_its_redemption_is_held_then_applied() -> None:
    ledger = fresh()
    assert ledger.reverse(reversed_("INV-1", "fall10")) is Outcome.HELD
    assert ledger.reverse(reversed_("INV-1")) is Outcome.ALREADY_HELD
    assert len(ledger.new_held) == 1 and ledger.new_held[0].coupon_code == "FALL10"
    _, r = ledger.redeem(redeemed("INV-1"))
    reversal = ledger.reversal_of(r.redemption_id)
    assert reversal is not None and reversal.source == REVERSED_BY_COUPON_EVENT and reversal.held_since == NOW
    assert ledger.used("FALL10") == 0 and ledger.used("FALL10", "C-1") == 0


def test_a_void_reverses_every_redemption_of_the_invoice_now_and_later() -> None:
    ledger = fresh()
    ledger.redeem(redeemed("INV-1", "FALL10"))
    ledger.redeem(redeemed("INV-1", "OTHER"))
    ledger.redeem(redeemed("INV-2", "FALL10"))
    outcome, reversed_now = ledger.void(voided("INV-1"))
    assert outcome is Outcome.VOIDED and {r.coupon_code for r in reversed_now} == {"FALL10", "OTHER"}
    _, late = ledger.redeem(redeemed("INV-1", "LATE"))
    late_reversal = ledger.reversal_of(late.redemption_id)
    assert late_reversal is not None and late_reversal.source == REVERSED_BY_VOID
    assert ledger.void(voided("INV-1"))[0] is Outcome.ALREADY_VOIDED
    assert len(ledger.new_reversals) == 3 and ledger.used("FALL10") == 1


def test_void_and_reversal_of_one_redemption_reverse_it_once() -> None:
    for order in ("void first", "reversal first"):
        ledger = fresh()
        ledger.redeem(redeemed("INV-1"))
        if order == "void first":
            ledger.void(voided("INV-1"))
            assert ledger.reverse(reversed_("INV-1")) is Outcome.ALREADY_REVERSED
        else:
            assert ledger.reverse(reversed_("INV-1")) is Outcome.REVERSED
            assert ledger.void(voided("INV-1")) == (Outcome.VOIDED, [])
        assert len(ledger.new_reversals) == 1 and ledger.used("FALL10") == 0


def test_held_reversal_and_void_before_the_redemption_reverse_it_once_by_the_earlier() -> None:
    ledger = fresh()
    ledger.void(voided("INV-1", at=T0 + timedelta(hours=3)))
    ledger.reverse(reversed_("INV-1", at=T0 + timedelta(hours=2)))
    _, r = ledger.redeem(redeemed("INV-1"))
    assert len(ledger.new_reversals) == 1
    reversal = ledger.reversal_of(r.redemption_id)
    assert reversal is not None and reversal.source == REVERSED_BY_COUPON_EVENT


def test_snapshot_uses_the_terms_in_force_when_the_coupon_was_used() -> None:
    renamed = Coupon("FALL10", CouponTerms(name="Renamed", discount_type=DiscountType.AMOUNT,
                                           discount_value=Decimal("5.00"), currency="USD", active=False), 2, T0)
    ledger = LedgerSlice(now=NOW, catalog={"FALL10": [*CATALOG["FALL10"], renamed]})
    _, before = ledger.redeem(redeemed("INV-1", at=T0 - timedelta(seconds=1)))
    _, after = ledger.redeem(redeemed("INV-2", at=T0))
    assert (before.coupon_name, before.coupon_revision, before.flags) == ("Fall 10% off", 1, ())
    assert (after.coupon_name, after.coupon_revision, after.flags) == ("Renamed", 2, (Flag.INACTIVE,))


def test_the_domain_event_is_the_grid_row_in_the_business_time_zone() -> None:
    tz = ZoneInfo("America/New_York")
    ledger = fresh()
    _, r = ledger.redeem(redeemed("INV-1"))
    event = redemption_event(r, None, tz=tz, now=NOW)
    assert (event.version, event.status, event.reversed_at) == (1, RedemptionStatus.REDEEMED, None)
    assert event.used_at.isoformat() == "2026-11-28T14:00:00-05:00"
    assert (event.discount_value, f"{event.discount_amount}", event.coupon_name) == ("10", "10.20", "Fall 10% off")
    ledger.reverse(reversed_("INV-1"))
    after = redemption_event(r, ledger.reversal_of(r.redemption_id), tz=tz, now=NOW)
    assert (after.version, after.status, after.reversal_reason) == (2, RedemptionStatus.REVERSED, "correction")
    assert after.reversed_at is not None and after.reversed_at.utcoffset() == timedelta(hours=-5)


# --- properties -----------------------------------------------------------------------------------------------

INVOICES = ["INV-1", "INV-2", "INV-3"]
CODES = ["FALL10", "OTHER"]
Step = tuple[str, str, str]
steps = st.lists(st.tuples(st.sampled_from(["redeem", "reverse", "void"]), st.sampled_from(INVOICES),
                           st.sampled_from(CODES)), max_size=25)


def run(plan: list[Step]) -> LedgerSlice:
    ledger = fresh()
    for i, (verb, invoice, code) in enumerate(plan):
        at = T0 + timedelta(minutes=i)
        if verb == "redeem":
            ledger.redeem(redeemed(invoice, code, customer=f"C-{invoice}", at=at))
        elif verb == "reverse":
            ledger.reverse(reversed_(invoice, code, at=at))
        else:
            ledger.void(voided(invoice, at=at))
    return ledger


@settings(max_examples=300, deadline=None)
@given(steps)
def test_each_redemption_is_reversed_at_most_once_and_usage_is_entries_minus_reversals(plan: list[Step]) -> None:
    ledger = run(plan)
    reversed_ids = [r.redemption_id for r in ledger.new_reversals]
    assert len(reversed_ids) == len(set(reversed_ids))
    assert set(reversed_ids) <= {r.redemption_id for r in ledger.new_redemptions}
    for code in CODES:
        entries = [r for r in ledger.new_redemptions if r.coupon_code == code]
        standing = [r for r in entries if ledger.reversal_of(r.redemption_id) is None]
        assert ledger.used(code) == len(standing)
        for invoice in INVOICES:
            assert ledger.used(code, f"C-{invoice}") == sum(r.invoice_number == invoice for r in standing)


@settings(max_examples=300, deadline=None)
@given(st.permutations([("redeem", i, c) for i in INVOICES for c in CODES]
                       + [("reverse", "INV-1", "FALL10"), ("void", "INV-2", "-"), ("reverse", "INV-2", "OTHER")]))
def test_which_redemptions_end_up_reversed_does_not_depend_on_arrival_order(plan: list[Step]) -> None:
    ledger = run(plan)
    reversed_keys = {(r.invoice_number, r.coupon_code) for r in ledger.new_redemptions
                     if ledger.reversal_of(r.redemption_id) is not None}
    assert reversed_keys == {("INV-1", "FALL10"), ("INV-2", "FALL10"), ("INV-2", "OTHER")}
    assert len(ledger.new_redemptions) == 6 and len(ledger.new_reversals) == 3
