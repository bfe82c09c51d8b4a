"""All SQL of segment_engine. Functions take a connection inside the caller's transaction; none commits."""

from __future__ import annotations

from datetime import datetime

import asyncpg


async def upsert_registration(conn: asyncpg.Connection, customer_id: str, registered_at: datetime,
                              home_store_id: str | None, loyalty_tier: str | None) -> None:
    await conn.execute(
        "INSERT INTO customers (customer_id, registered_at, home_store_id, loyalty_tier) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (customer_id) DO UPDATE SET registered_at = EXCLUDED.registered_at,"
        " home_store_id = EXCLUDED.home_store_id,"
        " loyalty_tier = COALESCE(EXCLUDED.loyalty_tier, customers.loyalty_tier), updated_at = now()",
        customer_id, registered_at, home_store_id, loyalty_tier,
    )


async def set_tier(conn: asyncpg.Connection, customer_id: str, tier: str) -> None:
    await conn.execute(
        "INSERT INTO customers (customer_id, loyalty_tier) VALUES ($1, $2)"
        " ON CONFLICT (customer_id) DO UPDATE SET loyalty_tier = EXCLUDED.loyalty_tier, updated_at = now()",
        customer_id, tier,
    )


async def next_segments_version(conn: asyncpg.Connection, customer_id: str) -> int:
    """Bump and return the customer's segment-list version (locks the customer's row until commit)."""
    version = await conn.fetchval(
        "UPDATE customers SET segments_version = segments_version + 1 WHERE customer_id = $1"
        " RETURNING segments_version",
        customer_id,
    )
    assert version is not None, f"customer {customer_id} must exist"
    return int(version)
