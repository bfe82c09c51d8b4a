"""Inbound events from the POS and the CRM, exactly as ``shared/contracts/POS-EVENTS.md`` (v1) defines them.

One discriminated union per topic (``SaleEvent``, ``CouponEvent``, ``GiftCardEvent``, ``CustomerEvent``);
``INBOUND`` maps each topic to its union so a consumer can decode any message of it.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, Strict

from shared.contracts import topics
from shared.contracts.common import (
    CardNumber,
    Contract,
    Currency,
    EventEnvelope,
    Identifier,
    Money,
    PositiveMoney,
)

Quantity = Annotated[int, Strict(), Field(gt=0, description="Units, a positive integer")]


class PosEvent(EventEnvelope):
    store_id: Identifier = Field(description="Store where it happened")


class CrmEvent(EventEnvelope):
    store_id: None = Field(None, description="Always null for CRM events")


# --- pos.sales.v1 -------------------------------------------------------------------------------------


class SaleLine(Contract):
    sku: str = Field(min_length=1, max_length=64)
    category: str = Field(min_length=1, max_length=64, description="Product category, e.g. Footwear")
    quantity: Quantity
    unit_price: Money
    line_total: Money


class TenderType(StrEnum):
    CASH = "cash"
    CREDIT_CARD = "credit_card"
    GIFT_CARD = "gift_card"
    STORE_CREDIT = "store_credit"
    OTHER = "other"


class Tender(Contract):
    type: TenderType
    amount: Money


class SaleCompleted(PosEvent):
    event_type: Literal["sale.completed"] = "sale.completed"
    register_id: Identifier
    invoice_number: Identifier
    customer_id: Identifier | None = Field(description="null for an anonymous sale")
    currency: Currency
    lines: list[SaleLine] = Field(min_length=1)
    subtotal: Money
    discount_total: Money
    tax_total: Money
    total: Money
    coupon_codes: list[str] = Field(default_factory=list)
    tenders: list[Tender] = Field(default_factory=list)


class SaleVoided(PosEvent):
    event_type: Literal["sale.voided"] = "sale.voided"
    invoice_number: Identifier
    customer_id: Identifier | None
    reason: str = Field(max_length=500)


class ReturnLine(Contract):
    sku: str = Field(min_length=1, max_length=64)
    category: str = Field(min_length=1, max_length=64)
    quantity: Quantity
    line_total: Money


class SaleReturned(PosEvent):
    event_type: Literal["sale.returned"] = "sale.returned"
    invoice_number: Identifier = Field(description="The return's own invoice")
    original_invoice_number: Identifier
    customer_id: Identifier | None
    currency: Currency
    lines: list[ReturnLine] = Field(min_length=1)
    refund_total: Money


SaleEvent = Annotated[SaleCompleted | SaleVoided | SaleReturned, Field(discriminator="event_type")]

# --- pos.coupon-redemptions.v1 ------------------------------------------------------------------------


class CouponRedeemed(PosEvent):
    event_type: Literal["coupon.redeemed"] = "coupon.redeemed"
    register_id: Identifier
    invoice_number: Identifier
    customer_id: Identifier | None
    coupon_code: str = Field(min_length=1, max_length=64)
    discount_amount: Money = Field(description="Money actually taken off")
    currency: Currency


class ReversalReason(StrEnum):
    VOID = "void"
    RETURN = "return"
    CORRECTION = "correction"


class CouponRedemptionReversed(PosEvent):
    event_type: Literal["coupon.redemption_reversed"] = "coupon.redemption_reversed"
    invoice_number: Identifier = Field(description="Invoice of the original redemption")
    coupon_code: str = Field(min_length=1, max_length=64)
    customer_id: Identifier | None
    reason: ReversalReason


CouponEvent = Annotated[CouponRedeemed | CouponRedemptionReversed, Field(discriminator="event_type")]

# --- pos.giftcard-activity.v1 (the one topic that carries full card numbers) ---------------------------


class GiftCardActivated(PosEvent):
    event_type: Literal["giftcard.activated"] = "giftcard.activated"
    card_number: CardNumber
    amount: PositiveMoney
    currency: Currency
    customer_id: Identifier | None
    expires_on: date | None
    invoice_number: Identifier


class GiftCardReloaded(PosEvent):
    event_type: Literal["giftcard.reloaded"] = "giftcard.reloaded"
    card_number: CardNumber
    amount: PositiveMoney
    currency: Currency
    invoice_number: Identifier
    customer_id: Identifier | None = None


class GiftCardRedeemed(PosEvent):
    event_type: Literal["giftcard.redeemed"] = "giftcard.redeemed"
    card_number: CardNumber
    amount: PositiveMoney
    currency: Currency
    invoice_number: Identifier
    customer_id: Identifier | None = None


class GiftCardRefunded(PosEvent):
    event_type: Literal["giftcard.refunded"] = "giftcard.refunded"
    card_number: CardNumber
    amount: PositiveMoney
    currency: Currency
    invoice_number: Identifier = Field(description="The return's invoice")
    original_invoice_number: Identifier = Field(description="The sale whose redemption it reverses")


GiftCardEvent = Annotated[
    GiftCardActivated | GiftCardReloaded | GiftCardRedeemed | GiftCardRefunded,
    Field(discriminator="event_type"),
]

# --- crm.customers.v1 ----------------------------------------------------------------------------------


class CustomerRegistered(CrmEvent):
    event_type: Literal["customer.registered"] = "customer.registered"
    customer_id: Identifier
    registered_at: AwareDatetime = Field(description="The signup date")
    home_store_id: Identifier | None = None
    loyalty_tier: str | None = Field(None, max_length=64)


class CustomerLoyaltyTierChanged(CrmEvent):
    event_type: Literal["customer.loyalty_tier_changed"] = "customer.loyalty_tier_changed"
    customer_id: Identifier
    tier: str = Field(min_length=1, max_length=64)
    previous_tier: str | None = Field(None, max_length=64)


CustomerEvent = Annotated[CustomerRegistered | CustomerLoyaltyTierChanged, Field(discriminator="event_type")]

INBOUND: dict[str, object] = {
    topics.POS_SALES: SaleEvent,
    topics.POS_COUPON_REDEMPTIONS: CouponEvent,
    topics.POS_GIFTCARD_ACTIVITY: GiftCardEvent,
    topics.CRM_CUSTOMERS: CustomerEvent,
}
"""Each inbound topic and the union of the events it carries."""

EVENT_TYPES: dict[str, type[EventEnvelope]] = {
    cls.model_fields["event_type"].default: cls
    for cls in (
        SaleCompleted, SaleVoided, SaleReturned, CouponRedeemed, CouponRedemptionReversed, GiftCardActivated,
        GiftCardReloaded, GiftCardRedeemed, GiftCardRefunded, CustomerRegistered, CustomerLoyaltyTierChanged,
    )
}
"""Every inbound event type by its ``event_type``."""
