"""Domain events our services emit through their outboxes, and marketing_view projects into Redis.

They are *state-carrying*: each event holds the whole current state of one thing (a customer's segment
list, one redemption, one card) plus a ``version`` that only grows for that thing. A consumer keeps the
highest version it has applied, so duplicates and late, older events change nothing, and replaying a
topic from the start rebuilds the same state. Additive changes only; a breaking change is a new topic.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from shared.contracts import topics
from shared.contracts.common import Contract, Currency, EventEnvelope, Identifier, Money


class DomainEvent(EventEnvelope):
    version: int = Field(ge=1, description="Grows with every change of the thing this event describes")


# --- segments.memberships.v1 (key: customer_id) -------------------------------------------------------


class AssignedBy(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class SegmentMembership(Contract):
    segment_id: Identifier
    name: str
    date_assigned: date = Field(description="Start of the current, continuous membership (business tz)")
    assigned_by: AssignedBy
    notes: str = Field("", description="Manual: staff's note. Automatic: why the rule matched")


class CustomerSegmentsChanged(DomainEvent):
    """The complete list of segments a customer belongs to now (empty for a customer in none)."""

    event_type: Literal["customer.segments_changed"] = "customer.segments_changed"
    customer_id: Identifier
    segments: list[SegmentMembership]


SegmentDomainEvent = Annotated[CustomerSegmentsChanged, Field(discriminator="event_type")]

# --- coupons.redemptions.v1 (key: customer_id) ---------------------------------------------------------


class DiscountType(StrEnum):
    AMOUNT = "amount"
    PERCENT = "percent"
    UNKNOWN = "unknown"  # a code the catalog did not know when the POS redeemed it


class RedemptionStatus(StrEnum):
    REDEEMED = "redeemed"
    REVERSED = "reversed"


class CouponRedemptionRecorded(DomainEvent):
    """One row of the Coupon Usage History grid, as it stands now (re-sent when reversed)."""

    event_type: Literal["coupon.redemption_recorded"] = "coupon.redemption_recorded"
    redemption_id: Identifier
    customer_id: Identifier
    coupon_code: str
    coupon_name: str = Field(description="As the catalog named it at redemption time")
    discount_type: DiscountType
    discount_value: str | None = Field(description="Nominal value at redemption time: '5.00' or '10'")
    discount_amount: Money = Field(description="Money actually applied")
    currency: Currency
    used_at: AwareDatetime = Field(description="When the coupon was used, in the business time zone")
    invoice_number: Identifier
    store_id: Identifier
    status: RedemptionStatus
    reversed_at: AwareDatetime | None = None
    flags: list[str] = Field(default_factory=list, description="Catalog rules the redemption broke")
    campaign: str | None = Field(None, description="The coupon's campaign at redemption time")
    register_id: str | None = Field(None, description="Till where the coupon was redeemed")
    reversal_reason: str | None = Field(None, description="void, return or correction, once reversed")


class CustomerCouponInsightsChanged(DomainEvent):
    """Price sensitivity: how often the customer buys with a coupon."""

    event_type: Literal["customer.coupon_insights_changed"] = "customer.coupon_insights_changed"
    customer_id: Identifier
    window_days: int
    purchases: int = Field(ge=0)
    purchases_with_coupon: int = Field(ge=0)
    coupon_share: str = Field(description="purchases_with_coupon / purchases, decimal string 0..1")
    coupon_only_buyer: bool
    coupon_only_threshold: str | None = Field(None, description="Share from which a buyer is coupon-only")
    min_purchases: int | None = Field(None, ge=0, description="Purchases needed before coupon_only_buyer can be true")


CouponDomainEvent = Annotated[
    CouponRedemptionRecorded | CustomerCouponInsightsChanged, Field(discriminator="event_type")
]

# --- giftcards.cards.v1 (key: card_id) -----------------------------------------------------------------


class CardState(StrEnum):
    """What the ledger knows; the displayed status is derived from it at the moment of reading."""

    OPEN = "open"
    EXPIRED = "expired"  # expired by staff or by the sweep
    DEACTIVATED = "deactivated"


class GiftCardChanged(DomainEvent):
    """One row of the Gift Cards grid, as it stands now. Never carries the full card number."""

    event_type: Literal["giftcard.changed"] = "giftcard.changed"
    card_id: Identifier
    customer_id: Identifier | None
    previous_customer_id: Identifier | None = Field(None, description="Set when the card was re-assigned")
    last4: str = Field(min_length=1, max_length=4)
    card_number_masked: str
    original_balance: Money
    current_balance: Money
    currency: Currency
    issue_date: date
    expiration_date: date | None
    state: CardState
    change: str = Field(description="Ledger entry type that caused this change: issue, reload, redeem, ...")


GiftCardDomainEvent = Annotated[GiftCardChanged, Field(discriminator="event_type")]

# --- giftcards.rejections.v1 (back to the POS; key: card_id or last4) ----------------------------------


class GiftCardActivityRejected(EventEnvelope):
    event_type: Literal["giftcard.activity_rejected"] = "giftcard.activity_rejected"
    rejected_event_id: str = Field(description="event_id of the refused POS event")
    rejected_event_type: str
    reason: str = Field(description="insufficient_balance, unknown_card, inactive_card, currency_mismatch, ...")
    detail: str = ""
    last4: str = Field(description="Last 4 characters of the card number; never the full number")
    invoice_number: str | None = None
    store_id: str | None = None
    card_id: str | None = Field(None, description="The ledger's card id, when the card is known")
    amount: Money | None = Field(None, description="Amount of the refused event")
    currency: str | None = Field(None, description="Currency of the refused event")


DOMAIN: dict[str, object] = {
    topics.SEGMENT_MEMBERSHIPS: SegmentDomainEvent,
    topics.COUPON_REDEMPTIONS: CouponDomainEvent,
    topics.GIFTCARD_CARDS: GiftCardDomainEvent,
}
"""Each domain topic and the union of the events it carries."""
