"""The read API's answer as pydantic models: the OpenAPI document shows them, and the tests check every
answer against them (extra fields forbidden), so the documentation cannot drift from the JSON."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Money = str  # a decimal string with two places, e.g. "20.00"; never a float


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Segment(_Strict):
    segment_id: str
    name: str = Field(description="Segment Name")
    date_assigned: str = Field(description="Date Assigned: start of the current, continuous membership (YYYY-MM-DD)")
    assigned_by: Literal["automatic", "manual"] = Field(description="Assigned By")
    notes: str = Field(description="Manual: staff's note. Automatic: why the rule matched")


class Discount(_Strict):
    type: Literal["amount", "percent", "unknown"]
    value: str | None = Field(description="Nominal value: '5.00' (amount) or '10' (percent)")
    amount: Money = Field(description="Money actually applied")
    currency: str
    display: str = Field(description="Discount Amount as shown: '10% ($10.20)', '$5.00'")


class CouponUsageItem(_Strict):
    coupon_code: str
    coupon_name: str
    discount: Discount
    used_at: str = Field(description="Date Used, RFC 3339 in the business time zone")
    invoice_number: str
    invoice_url: str = Field(description="From the configured invoice URL template")
    status: Literal["redeemed", "reversed"]
    reversed_at: str | None
    reversal_reason: str | None = Field(description="void, return or correction")
    flags: list[str] = Field(description="Catalog rules the redemption broke (recorded all the same)")


class CouponUsage(_Strict):
    items: list[CouponUsageItem] = Field(description="Newest first")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null on the last")


class GiftCard(_Strict):
    card_id: str
    card_number_masked: str = Field(description="Only the last 4 characters: '•••• •••• •••• 4821'")
    last4: str
    original_balance: Money
    current_balance: Money
    currency: str
    status: Literal["active", "expired", "fully_redeemed", "deactivated"] = Field(
        description="As of the moment of reading")
    issue_date: str
    expiration_date: str | None = Field(description="Empty when the card never expires")


class GiftCardBalance(_Strict):
    currency: str
    total_balance: Money = Field(description="Sum of the balances of active cards")
    expiring_balance: Money = Field(description="Of it, on cards expiring within expiring_within_days")
    expiring_within_days: int
    active_cards: int


class PriceSensitivity(_Strict):
    window_days: int
    purchases: int
    purchases_with_coupon: int
    coupon_share: str = Field(description="purchases_with_coupon / purchases, decimal string 0..1")
    coupon_only_buyer: bool


class Insights(_Strict):
    gift_card_balances: list[GiftCardBalance] = Field(description="One entry per currency")
    coupon_price_sensitivity: PriceSensitivity | None = Field(description="From redemption_ledger; null if unknown")


class MarketingTab(_Strict):
    customer_id: str
    as_of: str = Field(description="When this answer was read (UTC)")
    segments: list[Segment]
    coupon_usage: CouponUsage
    gift_cards: list[GiftCard]
    insights: Insights
