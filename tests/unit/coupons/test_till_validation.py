"""What the till hears from POST /v1/coupons/validate: boundaries of validity windows and limits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.redemption_ledger.domain import (
    Coupon,
    CouponTerms,
    Flag,
    Usage,
    ValidationReason,
    redemption_flags,
    validate_at_till,
)
from shared.contracts.domain import DiscountType

START = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
END = datetime(2026, 12, 31, 5, 0, tzinfo=UTC)
TINY = timedelta(microseconds=1)
TERMS = CouponTerms(name="Ten", discount_type=DiscountType.PERCENT, discount_value=Decimal("10"), valid_from=START,
                    valid_until=END, max_redemptions=5, max_redemptions_per_customer=2)
COUPON = Coupon("TEN", TERMS, 1, START - timedelta(days=30))


def ask(coupon: Coupon | None = COUPON, *, at: datetime = START + timedelta(days=1), customer: str | None = "C-1",
        subtotal: str = "100.00", currency: str = "USD", used: int = 0, used_by_customer: int = 0):
    return validate_at_till(coupon, at=at, customer_id=customer, subtotal=Decimal(subtotal), currency=currency,
                            usage=Usage(used, used_by_customer))


def test_a_valid_code_says_what_it_takes_off() -> None:
    answer = ask()
    assert answer.valid and answer.reason is None and answer.discount_amount == Decimal("10.00")


def test_unknown_code() -> None:
    answer = ask(None)
    assert (answer.valid, answer.reason, answer.discount_amount) == (False, ValidationReason.UNKNOWN, Decimal("0"))


def test_inactive_wins_over_everything_else() -> None:
    inactive = replace(COUPON, terms=replace(TERMS, active=False))
    assert ask(inactive, at=END + timedelta(days=1), used=99).reason is ValidationReason.INACTIVE


@pytest.mark.parametrize(("at", "reason"), [
    (START - TINY, ValidationReason.NOT_YET_VALID),
    (START, None),
    (END - TINY, None),
    (END, ValidationReason.EXPIRED),
    (END + timedelta(days=400), ValidationReason.EXPIRED),
])
def test_validity_window_is_from_inclusive_until_exclusive(at: datetime, reason: ValidationReason | None) -> None:
    answer = ask(at=at)
    assert answer.reason is reason and answer.valid is (reason is None)


def test_open_ended_windows() -> None:
    forever = replace(COUPON, terms=replace(TERMS, valid_from=None, valid_until=None))
    assert ask(forever, at=datetime(1990, 1, 1, tzinfo=UTC)).valid
    assert ask(forever, at=datetime(2990, 1, 1, tzinfo=UTC)).valid


@pytest.mark.parametrize(("used", "reason"), [(0, None), (4, None), (5, ValidationReason.LIMIT_REACHED),
                                               (9, ValidationReason.LIMIT_REACHED)])
def test_total_limit_boundary(used: int, reason: ValidationReason | None) -> None:
    assert ask(used=used).reason is reason


@pytest.mark.parametrize(("used", "reason"), [(1, None), (2, ValidationReason.CUSTOMER_LIMIT_REACHED)])
def test_customer_limit_boundary(used: int, reason: ValidationReason | None) -> None:
    assert ask(used_by_customer=used, used=used).reason is reason


def test_customer_limit_does_not_apply_to_an_anonymous_sale() -> None:
    assert ask(customer=None, used_by_customer=7).valid


def test_total_limit_is_reported_before_the_customer_limit() -> None:
    assert ask(used=5, used_by_customer=2).reason is ValidationReason.LIMIT_REACHED


def test_no_limits_means_unlimited() -> None:
    unlimited = replace(COUPON, terms=replace(TERMS, max_redemptions=None, max_redemptions_per_customer=None))
    assert ask(unlimited, used=10**6, used_by_customer=10**6).valid


@pytest.mark.parametrize(("subtotal", "value", "expected"), [
    ("100.00", "10", "10.00"),
    ("101.99", "10", "10.20"),   # 10.199 rounds half up
    ("0.05", "10", "0.01"),      # 0.005 rounds half up
    ("0.04", "10", "0.00"),
    ("19.99", "100", "19.99"),
    ("0.00", "50", "0.00"),
    ("33.33", "12.5", "4.17"),   # 4.16625
])
def test_percent_discount_rounds_half_up_to_cents(subtotal: str, value: str, expected: str) -> None:
    coupon = replace(COUPON, terms=replace(TERMS, discount_value=Decimal(value)))
    assert ask(coupon, subtotal=subtotal).discount_amount == Decimal(expected)


def test_amount_discount_never_exceeds_the_subtotal_and_needs_its_currency() -> None:
    five = replace(COUPON, terms=replace(TERMS, discount_type=DiscountType.AMOUNT, discount_value=Decimal("5.00"),
                                         currency="USD"))
    assert ask(five, subtotal="20.00").discount_amount == Decimal("5.00")
    assert ask(five, subtotal="3.50").discount_amount == Decimal("3.50")
    mismatch = ask(five, currency="EUR")
    assert (mismatch.valid, mismatch.reason) == (False, ValidationReason.CURRENCY_MISMATCH)
    assert ask(COUPON, currency="EUR").valid, "a percent coupon works in any currency"


# --- the same rules, applied to redemptions the POS already made ---------------------------------------------


def flags(coupon: Coupon | None = COUPON, *, at: datetime = START + timedelta(days=1), currency: str = "USD",
          customer: str | None = "C-1", used: int = 0, used_by_customer: int = 0) -> list[Flag]:
    return redemption_flags(coupon, used_at=at, currency=currency, customer_id=customer,
                            usage_before=Usage(used, used_by_customer))


def test_a_clean_redemption_has_no_flag() -> None:
    assert flags() == []


def test_every_flag() -> None:
    assert flags(None) == [Flag.UNKNOWN_CODE]
    assert flags(replace(COUPON, terms=replace(TERMS, active=False))) == [Flag.INACTIVE]
    assert flags(at=START - TINY) == [Flag.NOT_YET_VALID]
    assert flags(at=END) == [Flag.EXPIRED]
    assert flags(at=END - TINY) == []
    assert flags(used=4) == [] and flags(used=5) == [Flag.OVER_LIMIT]
    assert flags(used_by_customer=1) == [] and flags(used_by_customer=2) == [Flag.CUSTOMER_OVER_LIMIT]
    assert flags(customer=None, used_by_customer=2) == []
    five = replace(COUPON, terms=replace(TERMS, discount_type=DiscountType.AMOUNT, discount_value=Decimal("5.00"),
                                         currency="USD"))
    assert flags(five, currency="CAD") == [Flag.CURRENCY_MISMATCH]


def test_a_redemption_can_break_several_rules() -> None:
    inactive = replace(COUPON, terms=replace(TERMS, active=False))
    assert flags(inactive, at=END, used=5, used_by_customer=2) == [
        Flag.INACTIVE, Flag.EXPIRED, Flag.OVER_LIMIT, Flag.CUSTOMER_OVER_LIMIT,
    ]


# --- properties -----------------------------------------------------------------------------------------------

cents = st.integers(min_value=0, max_value=10**9).map(lambda n: Decimal(n) / 100)


@given(subtotal=cents, value=st.integers(min_value=1, max_value=10000).map(lambda n: Decimal(n) / 100),
       percent=st.booleans())
def test_a_discount_is_whole_cents_between_zero_and_the_subtotal(subtotal: Decimal, value: Decimal,
                                                                 percent: bool) -> None:
    terms = (replace(TERMS, discount_value=value) if percent else
             replace(TERMS, discount_type=DiscountType.AMOUNT, discount_value=value, currency="USD"))
    answer = ask(replace(COUPON, terms=terms), subtotal=f"{subtotal:.2f}")
    assert answer.valid
    assert Decimal(0) <= answer.discount_amount <= subtotal
    assert answer.discount_amount == answer.discount_amount.quantize(Decimal("0.01"))
    if percent:
        assert abs(answer.discount_amount - subtotal * value / 100) <= Decimal("0.005")


@given(used=st.integers(0, 20), limit=st.integers(1, 20), at_offset=st.integers(-5, 5))
def test_the_till_and_the_ledger_agree(used: int, limit: int, at_offset: int) -> None:
    """A code the till would accept is one whose redemption the ledger would not flag, and vice versa."""
    coupon = replace(COUPON, terms=replace(TERMS, max_redemptions=limit, max_redemptions_per_customer=None))
    at = (START if at_offset < 0 else END) + timedelta(microseconds=at_offset)
    answer = ask(coupon, at=at, used=used)
    assert answer.valid is (flags(coupon, at=at, used=used) == [])
