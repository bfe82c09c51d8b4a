"""Coupon catalog rules, till validation and redemption flags. Pure: no I/O of any kind.

Terms of a coupon:
- ``code``: unique, case-insensitive (stored trimmed and upper-case), letters, digits, ``.``, ``_``, ``-``.
- ``discount_type`` ``amount`` (``discount_value`` is money with two places, ``currency`` required) or
  ``percent`` (``discount_value`` in (0, 100], at most two places, no currency).
- validity: ``valid_from`` inclusive, ``valid_until`` exclusive (the first instant it is no longer valid).
- limits: ``max_redemptions`` in total and ``max_redemptions_per_customer``, counted net of reversals.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from shared.contracts.domain import DiscountType

CENT = Decimal("0.01")
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"
CAMPAIGN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"
_CODE = re.compile(CODE_PATTERN)
_CAMPAIGN = re.compile(CAMPAIGN_PATTERN)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_NAME_LENGTH = 200
MAX_DISCOUNT_AMOUNT = Decimal("9999999999.99")


def normalise_code(code: str) -> str:
    """The one spelling of a code: what makes codes case-insensitive."""
    return code.strip().upper()


class InvalidInput(ValueError):
    """Input that breaks a rule; ``field`` names the offending field (answered with a 422 naming it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidCoupon(InvalidInput):
    """Coupon terms that break a catalog rule."""


class ValidationReason(StrEnum):
    """Why the till must not accept a code (``POST /v1/coupons/validate``)."""

    UNKNOWN = "unknown"
    INACTIVE = "inactive"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    CURRENCY_MISMATCH = "currency_mismatch"
    LIMIT_REACHED = "limit_reached"
    CUSTOMER_LIMIT_REACHED = "customer_limit_reached"


class Flag(StrEnum):
    """Catalog rules a POS redemption broke. It is recorded all the same: the POS already gave the discount."""

    UNKNOWN_CODE = "unknown_code"
    INACTIVE = "inactive"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    OVER_LIMIT = "over_limit"
    CUSTOMER_OVER_LIMIT = "customer_over_limit"
    CURRENCY_MISMATCH = "currency_mismatch"


@dataclass(frozen=True, slots=True)
class CouponTerms:
    """Everything staff define about a coupon except its code."""

    name: str
    discount_type: DiscountType
    discount_value: Decimal
    currency: str | None = None
    campaign: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    max_redemptions: int | None = None
    max_redemptions_per_customer: int | None = None
    active: bool = True


def check_code(code: str) -> str:
    if not _CODE.match(code.strip()):
        raise InvalidCoupon("code", "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return normalise_code(code)


def check_terms(terms: CouponTerms) -> CouponTerms:
    """The terms, tidied, or ``InvalidCoupon`` naming the first field that breaks a rule."""
    name = terms.name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidCoupon("name", f"must be 1 to {MAX_NAME_LENGTH} characters")
    value = terms.discount_value
    if not value.is_finite():
        raise InvalidCoupon("discount_value", "must be a number")
    if abs(value) >= 10**12:  # beyond any discount, and too many digits to be quantized to cents (a 500, before)
        raise InvalidCoupon("discount_value", "is far too large")
    if value != value.quantize(CENT):
        raise InvalidCoupon("discount_value", "at most two decimal places")
    currency = terms.currency
    if terms.discount_type is DiscountType.AMOUNT:
        if value <= 0 or value > MAX_DISCOUNT_AMOUNT:
            raise InvalidCoupon("discount_value", "an amount coupon's value must be greater than 0")
        if currency is None:
            raise InvalidCoupon("currency", "required for an amount coupon (ISO 4217, e.g. USD)")
        if not _CURRENCY.match(currency):
            raise InvalidCoupon("currency", "must be an ISO 4217 code such as USD")
    elif terms.discount_type is DiscountType.PERCENT:
        if not Decimal(0) < value <= Decimal(100):
            raise InvalidCoupon("discount_value", "a percent coupon's value must be greater than 0 and at most 100")
        if currency is not None:
            raise InvalidCoupon("currency", "only amount coupons have a currency")
    else:
        raise InvalidCoupon("discount_type", "must be 'amount' or 'percent'")
    campaign = terms.campaign.strip() if terms.campaign is not None else None
    if campaign == "":
        campaign = None
    if campaign is not None and not _CAMPAIGN.match(campaign):
        raise InvalidCoupon("campaign", "1 to 64 letters, digits, '.', '_', ':' or '-'")
    for name_, moment in (("valid_from", terms.valid_from), ("valid_until", terms.valid_until)):
        if moment is not None and moment.utcoffset() is None:
            raise InvalidCoupon(name_, "needs a time zone offset, e.g. 2026-12-01T00:00:00-05:00")
    if terms.valid_from is not None and terms.valid_until is not None and terms.valid_until <= terms.valid_from:
        raise InvalidCoupon("valid_until", "must be after valid_from")
    for name_, limit in (("max_redemptions", terms.max_redemptions),
                         ("max_redemptions_per_customer", terms.max_redemptions_per_customer)):
        if limit is not None and not 1 <= limit <= 2_000_000_000:
            raise InvalidCoupon(name_, "must be at least 1 (leave it out for no limit)")
    return replace(terms, name=name, campaign=campaign, discount_value=value.quantize(CENT))


def start_of_day(day: date, tz: ZoneInfo) -> datetime:
    """Midnight at the start of ``day`` in the business time zone (a date given for ``valid_from``)."""
    return datetime.combine(day, time(0), tzinfo=tz)


def end_of_day(day: date, tz: ZoneInfo) -> datetime:
    """The instant ``day`` ends in the business time zone (a date given for ``valid_until`` includes the day)."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)


@dataclass(frozen=True, slots=True)
class Coupon:
    """One revision of a coupon: its code and the terms in force from ``recorded_at`` on."""

    code: str
    terms: CouponTerms
    revision: int
    recorded_at: datetime

    def window_reason(self, at: datetime) -> ValidationReason | None:
        """Whether the coupon is active and within its validity window at ``at``."""
        t = self.terms
        if not t.active:
            return ValidationReason.INACTIVE
        if t.valid_from is not None and at < t.valid_from:
            return ValidationReason.NOT_YET_VALID
        if t.valid_until is not None and at >= t.valid_until:
            return ValidationReason.EXPIRED
        return None

    def currency_matches(self, currency: str) -> bool:
        return self.terms.discount_type is not DiscountType.AMOUNT or self.terms.currency == currency

    def discount_for(self, subtotal: Decimal) -> Decimal:
        """The money this coupon takes off ``subtotal``: never more than the subtotal, rounded half up."""
        t = self.terms
        if subtotal <= 0:
            return Decimal("0.00")
        if t.discount_type is DiscountType.PERCENT:
            return min(subtotal, (subtotal * t.discount_value / 100).quantize(CENT, ROUND_HALF_UP))
        return min(subtotal, t.discount_value).quantize(CENT)


def nominal_value(discount_type: DiscountType, value: Decimal | None) -> str | None:
    """The coupon's nominal value as shown: '5.00' for an amount, '10' or '12.5' for a percent."""
    if value is None or discount_type is DiscountType.UNKNOWN:
        return None
    if discount_type is DiscountType.AMOUNT:
        return f"{value:.2f}"
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def terms_in_force(revisions: Sequence[Coupon], at: datetime) -> Coupon | None:
    """The revision in force at ``at`` (revisions in ascending order). A redemption dated before the coupon
    was first recorded (a till clock ahead of ours) takes the first revision."""
    if not revisions:
        return None
    chosen = revisions[0]
    for revision in revisions:
        if revision.recorded_at <= at:
            chosen = revision
        else:
            break
    return chosen


@dataclass(frozen=True, slots=True)
class Usage:
    """Net redemptions (redemptions minus reversals) of a code, in total and by one customer."""

    total: int = 0
    customer: int = 0


@dataclass(frozen=True, slots=True)
class TillAnswer:
    valid: bool
    reason: ValidationReason | None
    discount_amount: Decimal
    coupon: Coupon | None = None


def validate_at_till(coupon: Coupon | None, *, at: datetime, customer_id: str | None, subtotal: Decimal,
                     currency: str, usage: Usage) -> TillAnswer:
    """May the till accept this code now for this customer, and what would it take off?

    Reasons are checked in this order: unknown, inactive, not yet valid, expired, currency mismatch (amount
    coupons), limit reached, customer limit reached (only for an identified customer).
    """
    if coupon is None:
        return TillAnswer(False, ValidationReason.UNKNOWN, Decimal("0.00"))
    reason = coupon.window_reason(at)
    if reason is None and not coupon.currency_matches(currency):
        reason = ValidationReason.CURRENCY_MISMATCH
    limit = coupon.terms.max_redemptions
    per_customer = coupon.terms.max_redemptions_per_customer
    if reason is None and limit is not None and usage.total >= limit:
        reason = ValidationReason.LIMIT_REACHED
    if reason is None and customer_id is not None and per_customer is not None and usage.customer >= per_customer:
        reason = ValidationReason.CUSTOMER_LIMIT_REACHED
    if reason is not None:
        return TillAnswer(False, reason, Decimal("0.00"), coupon)
    return TillAnswer(True, None, coupon.discount_for(subtotal), coupon)


def redemption_flags(coupon: Coupon | None, *, used_at: datetime, currency: str, customer_id: str | None,
                     usage_before: Usage) -> list[Flag]:
    """Every catalog rule a redemption broke, judged by the terms in force when it was used and the usage
    recorded before it. ``usage_before`` counts what was recorded earlier (net of reversals)."""
    if coupon is None:
        return [Flag.UNKNOWN_CODE]
    flags: list[Flag] = []
    reason = coupon.window_reason(used_at)
    if reason is ValidationReason.INACTIVE:
        flags.append(Flag.INACTIVE)
    # Validity is judged even for an inactive coupon: both facts are worth reporting.
    t = coupon.terms
    if t.valid_from is not None and used_at < t.valid_from:
        flags.append(Flag.NOT_YET_VALID)
    if t.valid_until is not None and used_at >= t.valid_until:
        flags.append(Flag.EXPIRED)
    if t.max_redemptions is not None and usage_before.total >= t.max_redemptions:
        flags.append(Flag.OVER_LIMIT)
    if (customer_id is not None and t.max_redemptions_per_customer is not None
            and usage_before.customer >= t.max_redemptions_per_customer):
        flags.append(Flag.CUSTOMER_OVER_LIMIT)
    if not coupon.currency_matches(currency):
        flags.append(Flag.CURRENCY_MISMATCH)
    return flags


# --- price sensitivity (SPEC §4 insights) ---------------------------------------------------------------

SHARE_PLACES = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class PriceSensitivity:
    window_days: int
    purchases: int
    purchases_with_coupon: int
    coupon_share: Decimal = field(default=Decimal("0"))
    coupon_only_buyer: bool = False


def price_sensitivity(*, purchases: int, purchases_with_coupon: int, window_days: int, threshold: Decimal,
                      min_purchases: int) -> PriceSensitivity:
    """Share of a customer's purchases made with a coupon; a coupon-only buyer reaches ``threshold`` over at
    least ``min_purchases`` purchases (one purchase says little about a habit)."""
    share = (Decimal(purchases_with_coupon) / purchases).quantize(SHARE_PLACES) if purchases else Decimal("0.0000")
    only = purchases >= max(1, min_purchases) and Decimal(purchases_with_coupon) >= threshold * purchases
    return PriceSensitivity(window_days, purchases, purchases_with_coupon, share, only)
