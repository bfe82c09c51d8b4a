"""Inbox: remember which messages a consumer applied, in the same transaction as their effect."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

import asyncpg


async def claim(conn: asyncpg.Connection, consumer: str, event_id: UUID) -> bool:
    """True the first time ``event_id`` is seen by ``consumer`` (in this transaction's view)."""
    row = await conn.fetchval(
        "INSERT INTO processed_messages (consumer, event_id) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        consumer, event_id,
    )
    return row is not None


async def claim_many(conn: asyncpg.Connection, consumer: str, event_ids: Iterable[UUID]) -> set[UUID]:
    """The subset of ``event_ids`` not seen before, now recorded as seen: one statement for a batch."""
    rows = await conn.fetch(
        "INSERT INTO processed_messages (consumer, event_id)"
        " SELECT $1, id FROM unnest($2::uuid[]) AS id ON CONFLICT DO NOTHING RETURNING event_id",
        consumer, list(dict.fromkeys(event_ids)),
    )
    return {r["event_id"] for r in rows}
