"""Kafka topic names: the public ones (SPEC §7) and our services' domain topics. One place for all."""

from __future__ import annotations

# From the POS and the CRM (inbound).
POS_SALES = "pos.sales.v1"
POS_COUPON_REDEMPTIONS = "pos.coupon-redemptions.v1"
POS_GIFTCARD_ACTIVITY = "pos.giftcard-activity.v1"
CRM_CUSTOMERS = "crm.customers.v1"
INBOUND_TOPICS = (POS_SALES, POS_COUPON_REDEMPTIONS, POS_GIFTCARD_ACTIVITY, CRM_CUSTOMERS)

# Back to the POS.
GIFTCARD_REJECTIONS = "giftcards.rejections.v1"

# Domain events between our services (emitted through each service's outbox).
SEGMENT_MEMBERSHIPS = "segments.memberships.v1"
COUPON_REDEMPTIONS = "coupons.redemptions.v1"
GIFTCARD_CARDS = "giftcards.cards.v1"
DOMAIN_TOPICS = (SEGMENT_MEMBERSHIPS, COUPON_REDEMPTIONS, GIFTCARD_CARDS)

DLQ_SUFFIX = ".dlq"


def dlq(topic: str) -> str:
    """The dead-letter topic of an inbound topic."""
    return topic + DLQ_SUFFIX


def all_topics() -> list[str]:
    return [*INBOUND_TOPICS, *(dlq(t) for t in INBOUND_TOPICS), GIFTCARD_REJECTIONS, *DOMAIN_TOPICS,
            *(dlq(t) for t in DOMAIN_TOPICS)]
