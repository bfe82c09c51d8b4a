"""Domain events for marketing_view's tests, built from the shared contract models (never raw dicts)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime

from pydantic import BaseModel

from shared.contracts import topics
from shared.contracts.domain import (
    AssignedBy,
    CardState,
    CouponRedemptionRecorded,
    CustomerCouponInsightsChanged,
    CustomerSegmentsChanged,
    DiscountType,
    GiftCardChanged,
    RedemptionStatus,
    SegmentMembership,
)
from tests.helpers import publish


def _now() -> datetime:
    return datetime.now(UTC)


def segments(customer_id: str, version: int, *members: tuple[str, str, str, str, str]) -> CustomerSegmentsChanged:
    """members: (segment_id, name, date_assigned ISO, 'automatic'|'manual', notes)."""
    return CustomerSegmentsChanged(
        event_id=uuid.uuid4(), occurred_at=_now(), version=version, customer_id=customer_id,
        segments=[SegmentMembership(segment_id=s, name=n, date_assigned=date.fromisoformat(d),
                                    assigned_by=AssignedBy(b), notes=notes) for s, n, d, b, notes in members],
    )


def redemption(customer_id: str, redemption_id: str, *, version: int = 1, code: str = "FALL10",
               name: str = "Fall 10% off", kind: str = "percent", value: str | None = "10",
               amount: str = "10.20", used_at: datetime | str = "2026-11-28T14:03:12-05:00",
               invoice: str = "INV-2026-000184", status: str = "redeemed", reversed_at: datetime | None = None,
               flags: Sequence[str] = (), currency: str = "USD",
               reason: str | None = None) -> CouponRedemptionRecorded:
    moment = datetime.fromisoformat(used_at) if isinstance(used_at, str) else used_at
    return CouponRedemptionRecorded(
        event_id=uuid.uuid4(), occurred_at=_now(), version=version, redemption_id=redemption_id,
        customer_id=customer_id, coupon_code=code, coupon_name=name, discount_type=DiscountType(kind),
        discount_value=value, discount_amount=amount, currency=currency, used_at=moment, invoice_number=invoice,
        store_id="S-001", status=RedemptionStatus(status), reversed_at=reversed_at, flags=list(flags),
        reversal_reason=reason,
    )


def insights(customer_id: str, version: int, *, purchases: int = 12, with_coupon: int = 5, share: str = "0.4167",
             only: bool = False, window_days: int = 365) -> CustomerCouponInsightsChanged:
    return CustomerCouponInsightsChanged(
        event_id=uuid.uuid4(), occurred_at=_now(), version=version, customer_id=customer_id,
        window_days=window_days, purchases=purchases, purchases_with_coupon=with_coupon, coupon_share=share,
        coupon_only_buyer=only,
    )


def card(card_id: str, customer_id: str | None, *, version: int = 1, last4: str = "4821", original: str = "50.00",
         current: str = "50.00", issued: str = "2026-01-02", expires: str | None = "2027-01-02",
         state: str = "open", previous: str | None = None, change: str = "issue",
         currency: str = "USD") -> GiftCardChanged:
    return GiftCardChanged(
        event_id=uuid.uuid4(), occurred_at=_now(), version=version, card_id=card_id, customer_id=customer_id,
        previous_customer_id=previous, last4=last4, card_number_masked="•••• •••• •••• " + last4,
        original_balance=original, current_balance=current, currency=currency, issue_date=date.fromisoformat(issued),
        expiration_date=date.fromisoformat(expires) if expires else None, state=CardState(state), change=change,
    )


def topic_and_key(event: BaseModel) -> tuple[str, bytes]:
    if isinstance(event, CustomerSegmentsChanged):
        return topics.SEGMENT_MEMBERSHIPS, event.customer_id.encode()
    if isinstance(event, CouponRedemptionRecorded | CustomerCouponInsightsChanged):
        return topics.COUPON_REDEMPTIONS, event.customer_id.encode()
    if isinstance(event, GiftCardChanged):
        return topics.GIFTCARD_CARDS, event.card_id.encode()
    raise TypeError(type(event))


async def publish_domain(bootstrap: str, prefix: str, events: Sequence[BaseModel]) -> None:
    """Publish domain events on the test's prefixed topics, keyed as the producers key them, in order."""
    by_topic: dict[str, list[tuple[bytes | None, bytes | BaseModel]]] = {}
    for event in events:
        topic, key = topic_and_key(event)
        by_topic.setdefault(prefix + topic, []).append((key, event))
    for topic, messages in by_topic.items():
        await publish(bootstrap, topic, messages)
