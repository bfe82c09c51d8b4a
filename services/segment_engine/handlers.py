"""Use cases of segment_engine: each opens one transaction, applies domain verbs, writes the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg

from services.segment_engine import store
from shared import inbox, outbox
from shared.consumer import Delivery
from shared.contracts import topics
from shared.contracts.domain import CustomerSegmentsChanged
from shared.contracts.pos import CustomerLoyaltyTierChanged, CustomerRegistered

CONSUMER = "segment_engine"


class SegmentEngine:
    """Entry point of the use cases; holds the pool and tells the outbox relay when to publish."""

    def __init__(self, pool: asyncpg.Pool, wake_relay: Callable[[], None]) -> None:
        self._pool = pool
        self._wake_relay = wake_relay

    async def on_customer_events(self, batch: Sequence[Delivery]) -> None:
        """crm.customers.v1: registrations and tier changes, one transaction per polled batch."""
        async with self._pool.acquire() as conn, conn.transaction():
            new = await inbox.claim_many(conn, CONSUMER, (d.event.event_id for d in batch))
            touched: dict[str, None] = {}
            for d in batch:
                event = d.event
                if event.event_id not in new:
                    continue
                if isinstance(event, CustomerRegistered):
                    await store.upsert_registration(conn, event.customer_id, event.registered_at,
                                                    event.home_store_id, event.loyalty_tier)
                elif isinstance(event, CustomerLoyaltyTierChanged):
                    await store.set_tier(conn, event.customer_id, event.tier)
                touched[event.customer_id] = None
            for customer_id in touched:
                await self._announce_segments(conn, customer_id)
        if touched:
            self._wake_relay()

    async def _announce_segments(self, conn: asyncpg.Connection, customer_id: str) -> None:
        version = await store.next_segments_version(conn, customer_id)
        event = CustomerSegmentsChanged(
            event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), version=version, customer_id=customer_id,
            segments=[],
        )
        await outbox.enqueue(conn, topics.SEGMENT_MEMBERSHIPS, customer_id, event)
