"""Catalog rules: what a coupon may be, and how its terms are tidied."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from services.redemption_ledger.domain import (
    CouponTerms,
    InvalidCoupon,
    check_code,
    check_terms,
    end_of_day,
    nominal_value,
    normalise_code,
    start_of_day,
)
from shared.contracts.domain import DiscountType

PERCENT = CouponTerms(name="Fall 10% off", discount_type=DiscountType.PERCENT, discount_value=Decimal("10"))
AMOUNT = CouponTerms(name="$5 off", discount_type=DiscountType.AMOUNT, discount_value=Decimal("5.00"), currency="USD")


def field_of(terms: CouponTerms) -> str:
    with pytest.raises(InvalidCoupon) as caught:
        check_terms(terms)
    return caught.value.field


def test_codes_are_case_insensitive_and_trimmed() -> None:
    assert normalise_code(" fall10 ") == "FALL10" == check_code("Fall10")
    assert check_code("black-friday_2026.v2") == "BLACK-FRIDAY_2026.V2"


@pytest.mark.parametrize("code", ["", " ", "-LEADING", "WITH SPACE", "x" * 65, "ÉTÉ10", "a/b"])
def test_bad_codes_name_the_code_field(code: str) -> None:
    with pytest.raises(InvalidCoupon) as caught:
        check_code(code)
    assert caught.value.field == "code"


@pytest.mark.parametrize("value", ["0.01", "1", "99.99", "100", "100.00", "12.5"])
def test_percent_values_in_zero_exclusive_to_hundred_inclusive(value: str) -> None:
    assert check_terms(replace(PERCENT, discount_value=Decimal(value))).discount_value == Decimal(value)


@pytest.mark.parametrize("value", ["0", "-1", "100.01", "101", "0.001", "12.345"])
def test_percent_values_outside_the_range_or_too_precise(value: str) -> None:
    assert field_of(replace(PERCENT, discount_value=Decimal(value))) == "discount_value"


@pytest.mark.parametrize("value", ["0", "-5.00", "5.001", "NaN", "Infinity"])
def test_amount_values_must_be_positive_money(value: str) -> None:
    assert field_of(replace(AMOUNT, discount_value=Decimal(value))) == "discount_value"


def test_amount_coupons_need_a_currency_and_percent_coupons_have_none() -> None:
    assert field_of(replace(AMOUNT, currency=None)) == "currency"
    assert field_of(replace(AMOUNT, currency="usd")) == "currency"
    assert field_of(replace(PERCENT, currency="USD")) == "currency"
    assert check_terms(AMOUNT).currency == "USD"


def test_name_is_required_and_trimmed() -> None:
    assert field_of(replace(PERCENT, name="  ")) == "name"
    assert field_of(replace(PERCENT, name="x" * 201)) == "name"
    assert check_terms(replace(PERCENT, name="  Fall  ")).name == "Fall"


def test_validity_window_must_be_ordered_and_aware() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    assert field_of(replace(PERCENT, valid_from=start, valid_until=start)) == "valid_until"
    assert field_of(replace(PERCENT, valid_from=datetime(2026, 12, 1))) == "valid_from"
    assert field_of(replace(PERCENT, valid_until=datetime(2026, 12, 1))) == "valid_until"
    ok = check_terms(replace(PERCENT, valid_from=start, valid_until=start.replace(microsecond=1)))
    assert ok.valid_until is not None and ok.valid_from is not None and ok.valid_until > ok.valid_from


@pytest.mark.parametrize("name", ["max_redemptions", "max_redemptions_per_customer"])
@pytest.mark.parametrize("limit", [0, -1])
def test_limits_are_at_least_one(name: str, limit: int) -> None:
    assert field_of(replace(PERCENT, **{name: limit})) == name
    assert getattr(check_terms(replace(PERCENT, **{name: 1})), name) == 1


def test_campaign_is_an_identifier_and_blank_means_none() -> None:
    assert check_terms(replace(PERCENT, campaign=" ")).campaign is None
    assert field_of(replace(PERCENT, campaign="fall 2026")) == "campaign"
    assert check_terms(replace(PERCENT, campaign="fall-2026")).campaign == "fall-2026"


def test_dates_cover_whole_business_days() -> None:
    tz = ZoneInfo("America/New_York")
    assert start_of_day(date(2026, 12, 1), tz).isoformat() == "2026-12-01T00:00:00-05:00"
    assert end_of_day(date(2026, 12, 31), tz).isoformat() == "2027-01-01T00:00:00-05:00"
    # Across a DST change the day is 25 hours long, and still ends at midnight local time.
    assert end_of_day(date(2026, 11, 1), tz).isoformat() == "2026-11-02T00:00:00-05:00"


def test_nominal_value_reads_like_the_grid() -> None:
    assert nominal_value(DiscountType.AMOUNT, Decimal("5")) == "5.00"
    assert nominal_value(DiscountType.PERCENT, Decimal("10.00")) == "10"
    assert nominal_value(DiscountType.PERCENT, Decimal("12.50")) == "12.5"
    assert nominal_value(DiscountType.PERCENT, Decimal("100.00")) == "100"
    assert nominal_value(DiscountType.UNKNOWN, None) is None
