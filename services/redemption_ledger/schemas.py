"""The HTTP API's request and response bodies, and how domain objects become them."""

from __future__ import annotations

import base64
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from services.redemption_ledger.domain import (
    CAMPAIGN_PATTERN,
    CODE_PATTERN,
    CouponTerms,
    TillAnswer,
    ValidationReason,
    end_of_day,
    nominal_value,
    start_of_day,
)
from services.redemption_ledger.ledger import HeldReversal, Redemption, Reversal
from services.redemption_ledger.store import CatalogEntry, Figures, InsightsRow
from shared.contracts.common import Currency, Identifier, Money
from shared.contracts.domain import DiscountType, RedemptionStatus

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_moment(value: Any) -> Any:
    """A date (whole days in the business time zone) or a datetime with an offset; never a naive datetime."""
    if isinstance(value, str) and _DATE.match(value):
        return date.fromisoformat(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                "expected a date (2026-12-01) or a date-time with offset (2026-12-01T09:00:00-05:00)"
            ) from None
        if parsed.utcoffset() is None:
            raise ValueError("a date-time needs an offset, e.g. 2026-12-01T09:00:00-05:00 (or give a plain date)")
        return parsed
    return value


Moment = Annotated[datetime | date, BeforeValidator(parse_moment)]
Code = Annotated[str, Field(pattern=CODE_PATTERN, description="Coupon code (case-insensitive)", examples=["FALL10"])]
Campaign = Annotated[str, Field(pattern=CAMPAIGN_PATTERN, description="Campaign identifier", examples=["fall-2026"])]
DiscountValue = Annotated[Decimal, Field(allow_inf_nan=False, description="'5.00' (amount) or '10' (percent)")]
Limit = Annotated[int, Field(ge=1, le=2_000_000_000)]


def as_instant(value: datetime | date | None, tz: ZoneInfo, *, end: bool) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return end_of_day(value, tz) if end else start_of_day(value, tz)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CouponFields(Strict):
    name: str = Field(min_length=1, max_length=200, examples=["Fall 10% off"])
    discount_type: Literal["amount", "percent"]
    discount_value: DiscountValue
    currency: Currency | None = Field(None, description="Required for amount coupons; none for percent coupons")
    campaign: Campaign | None = None
    valid_from: Moment | None = Field(None, description="First valid instant; a date means its start (business tz)")
    valid_until: Moment | None = Field(None, description="No longer valid from this instant; a date includes the day")
    max_redemptions: Limit | None = Field(None, description="Total redemptions allowed (net of reversals)")
    max_redemptions_per_customer: Limit | None = None
    active: bool = True

    def terms(self, tz: ZoneInfo) -> CouponTerms:
        return CouponTerms(
            name=self.name, discount_type=DiscountType(self.discount_type), discount_value=self.discount_value,
            currency=self.currency, campaign=self.campaign, valid_from=as_instant(self.valid_from, tz, end=False),
            valid_until=as_instant(self.valid_until, tz, end=True), max_redemptions=self.max_redemptions,
            max_redemptions_per_customer=self.max_redemptions_per_customer, active=self.active,
        )


class CreateCoupon(CouponFields):
    code: Code


class ReplaceCoupon(CouponFields):
    """PUT: the complete new terms (the code is in the path; repeating it in the body is allowed). Leaving
    ``active`` out keeps the coupon's active flag as it is."""

    code: Code | None = None


_NOT_NULL = ("name", "discount_type", "discount_value", "active")


class PatchCoupon(Strict):
    """PATCH: only the fields given change; null clears an optional field."""

    name: str | None = Field(None, min_length=1, max_length=200)
    discount_type: Literal["amount", "percent"] | None = None
    discount_value: DiscountValue | None = None
    currency: Currency | None = None
    campaign: Campaign | None = None
    valid_from: Moment | None = None
    valid_until: Moment | None = None
    max_redemptions: Limit | None = None
    max_redemptions_per_customer: Limit | None = None
    active: bool | None = None

    @field_validator(*_NOT_NULL, mode="before")
    @classmethod
    def _required_stay_set(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null (leave the field out to keep it)")
        return value

    def apply(self, terms: CouponTerms, tz: ZoneInfo) -> CouponTerms:
        given = self.model_fields_set
        changes: dict[str, Any] = {name: getattr(self, name) for name in given}
        if "discount_type" in changes:
            changes["discount_type"] = DiscountType(changes["discount_type"])
            if changes["discount_type"] is DiscountType.PERCENT and "currency" not in changes:
                changes["currency"] = None  # a percent coupon has no currency: switching type drops it
        for name, end in (("valid_from", False), ("valid_until", True)):
            if name in changes:
                changes[name] = as_instant(changes[name], tz, end=end)
        return CouponTerms(**{**{f: getattr(terms, f) for f in CouponTerms.__dataclass_fields__}, **changes})


class CouponOut(BaseModel):
    code: str
    name: str
    discount_type: DiscountType
    discount_value: str = Field(description="'5.00' (amount) or '10' (percent)")
    currency: str | None
    campaign: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    max_redemptions: int | None
    max_redemptions_per_customer: int | None
    active: bool
    times_used: int = Field(description="Redemptions recorded, net of reversals")
    remaining: int | None = Field(description="Redemptions left under max_redemptions (null: no limit)")
    revision: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, entry: CatalogEntry, tz: ZoneInfo) -> CouponOut:
        c, t = entry.coupon, entry.coupon.terms
        return cls(
            code=c.code, name=t.name, discount_type=t.discount_type,
            discount_value=nominal_value(t.discount_type, t.discount_value) or "", currency=t.currency,
            campaign=t.campaign, valid_from=_local(t.valid_from, tz), valid_until=_local(t.valid_until, tz),
            max_redemptions=t.max_redemptions, max_redemptions_per_customer=t.max_redemptions_per_customer,
            active=t.active, times_used=entry.used,
            remaining=None if t.max_redemptions is None else max(0, t.max_redemptions - entry.used),
            revision=c.revision, created_at=_local(entry.created_at, tz), updated_at=_local(entry.updated_at, tz),
        )


class CouponPage(BaseModel):
    items: list[CouponOut]
    next_cursor: str | None


class ValidateCoupon(Strict):
    code: str = Field(min_length=1, max_length=64)
    customer_id: Identifier | None = Field(None, description="Leave out (or null) for an anonymous sale")
    subtotal: Money
    currency: Currency

    @field_validator("subtotal")
    @classmethod
    def _subtotal_not_negative(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError("cannot be negative")
        return value


class ValidationOut(BaseModel):
    valid: bool
    reason: ValidationReason | None = Field(description="Why not, when not valid")
    discount_amount: Money = Field(description="What the coupon would take off the subtotal (0.00 when not valid)")
    currency: str
    coupon_code: str
    coupon_name: str | None = None
    discount_type: DiscountType | None = None
    discount_value: str | None = None

    @classmethod
    def of(cls, answer: TillAnswer, code: str, currency: str) -> ValidationOut:
        c = answer.coupon
        return cls(valid=answer.valid, reason=answer.reason, discount_amount=answer.discount_amount,
                   currency=currency, coupon_code=code, coupon_name=c.terms.name if c else None,
                   discount_type=c.terms.discount_type if c else None,
                   discount_value=nominal_value(c.terms.discount_type, c.terms.discount_value) if c else None)


class Discount(BaseModel):
    type: DiscountType
    value: str | None = Field(description="Nominal value at redemption time: '5.00' or '10'")
    amount: Money = Field(description="Money actually applied")
    currency: str
    display: str = Field(examples=["10% ($10.20)"])


class RedemptionOut(BaseModel):
    redemption_id: str
    coupon_code: str
    coupon_name: str
    campaign: str | None
    discount: Discount
    used_at: datetime = Field(description="In the business time zone")
    invoice_number: str
    store_id: str
    register_id: str
    customer_id: str | None
    status: RedemptionStatus
    reversed_at: datetime | None
    reversal_reason: str | None
    flags: list[str]

    @classmethod
    def of(cls, r: Redemption, reversal: Reversal | None, tz: ZoneInfo) -> RedemptionOut:
        value = nominal_value(r.discount_type, r.discount_value)
        return cls(
            redemption_id=r.redemption_id, coupon_code=r.coupon_code, coupon_name=r.coupon_name, campaign=r.campaign,
            discount=Discount(type=r.discount_type, value=value, amount=r.discount_amount, currency=r.currency,
                              display=display(r.discount_type, value, r.discount_amount, r.currency)),
            used_at=r.used_at.astimezone(tz), invoice_number=r.invoice_number, store_id=r.store_id,
            register_id=r.register_id, customer_id=r.customer_id,
            status=RedemptionStatus.REVERSED if reversal else RedemptionStatus.REDEEMED,
            reversed_at=reversal.reversed_at.astimezone(tz) if reversal else None,
            reversal_reason=reversal.reason if reversal else None, flags=list(r.flags),
        )


class RedemptionPage(BaseModel):
    items: list[RedemptionOut]
    next_cursor: str | None


class FlaggedReport(RedemptionPage):
    counts: dict[str, int] = Field(description="Flagged redemptions per flag (all pages; one can carry several)")


class HeldReversalOut(BaseModel):
    invoice_number: str
    coupon_code: str
    reason: str
    occurred_at: datetime
    received_at: datetime
    store_id: str | None
    customer_id: str | None

    @classmethod
    def of(cls, h: HeldReversal, tz: ZoneInfo) -> HeldReversalOut:
        return cls(invoice_number=h.invoice_number, coupon_code=h.coupon_code, reason=h.reason,
                   occurred_at=h.occurred_at.astimezone(tz), received_at=h.received_at.astimezone(tz),
                   store_id=h.store_id, customer_id=h.customer_id)


class HeldReversalsReport(BaseModel):
    items: list[HeldReversalOut]


class FiguresOut(BaseModel):
    redemptions: int = Field(description="Redemption entries recorded (reversed ones included)")
    reversals: int
    net_redemptions: int = Field(description="redemptions - reversals")
    unique_customers: int = Field(description="Identified customers with a redemption that stands")
    flagged: int
    anonymous: int
    discount_given: dict[str, str] = Field(description="Money taken off, net of reversals, per currency")
    discount_reversed: dict[str, str]

    @classmethod
    def of(cls, f: Figures) -> dict[str, Any]:
        return {
            "redemptions": f.redemptions, "reversals": f.reversals, "net_redemptions": f.redemptions - f.reversals,
            "unique_customers": f.unique_customers, "flagged": f.flagged, "anonymous": f.anonymous,
            "discount_given": {k: f"{v:.2f}" for k, v in sorted((f.discount_given or {}).items())},
            "discount_reversed": {k: f"{v:.2f}" for k, v in sorted((f.discount_reversed or {}).items())},
        }


class CouponFiguresOut(FiguresOut):
    coupon_code: str
    used_from: datetime | None = None
    used_until: datetime | None = None


class CampaignFiguresOut(FiguresOut):
    campaign: str
    used_from: datetime | None = None
    used_until: datetime | None = None
    coupons: list[CouponFiguresOut]


class InsightsOut(BaseModel):
    customer_id: str
    window_days: int
    purchases: int
    purchases_with_coupon: int
    coupon_share: str = Field(description="purchases_with_coupon / purchases, 0..1, four places")
    coupon_only_buyer: bool
    coupon_only_threshold: str
    min_purchases: int
    version: int = Field(description="Version of the last CustomerCouponInsightsChanged published")

    @classmethod
    def of(cls, row: InsightsRow, threshold: Decimal, min_purchases: int) -> InsightsOut:
        return cls(customer_id=row.customer_id, window_days=row.window_days, purchases=row.purchases,
                   purchases_with_coupon=row.purchases_with_coupon, coupon_share=f"{row.coupon_share:.4f}",
                   coupon_only_buyer=row.coupon_only_buyer, coupon_only_threshold=str(threshold),
                   min_purchases=min_purchases, version=row.version)


# --- helpers ----------------------------------------------------------------------------------------------

_SYMBOLS = {"USD": "$", "CAD": "$", "AUD": "$", "NZD": "$", "MXN": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


def money_text(amount: Decimal, currency: str) -> str:
    symbol = _SYMBOLS.get(currency)
    text = f"{abs(amount):,.2f}"
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency}"


def display(kind: DiscountType, value: str | None, applied: Decimal, currency: str) -> str:
    """'10% ($10.20)', '$5.00', '$5.00 ($4.00)' when less than the nominal amount was applied, or '$4.00'
    for a code the catalog did not know."""
    if kind is DiscountType.PERCENT and value is not None:
        return f"{value}% ({money_text(applied, currency)})"
    if kind is DiscountType.AMOUNT and value is not None:
        nominal = money_text(Decimal(value), currency)
        return nominal if Decimal(value) == applied else f"{nominal} ({money_text(applied, currency)})"
    return money_text(applied, currency)


def _local(moment: datetime | None, tz: ZoneInfo) -> datetime | None:
    return moment.astimezone(tz) if moment else None


def encode_cursor(*parts: Any) -> str:
    raw = orjson.dumps([p.isoformat() if isinstance(p, datetime) else p for p in parts])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    """Raises ValueError on anything that is not a cursor this service wrote."""
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except Exception:
        raise ValueError("not a cursor from a previous page") from None
    if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
        raise ValueError("not a cursor from a previous page")
    return parts


def time_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    parts = decode_cursor(cursor)
    try:
        at = datetime.fromisoformat(parts[0])
        assert at.utcoffset() is not None and len(parts) == 2
    except Exception:
        raise ValueError("not a cursor from a previous page") from None
    return at, parts[1]
