"""Redis document -> the SPEC §2.4 JSON shape of a customer's Marketing tab."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio import Redis

from services.marketing_view.projection import customer_key


async def read_tab(redis: Redis, prefix: str, customer_id: str, now: datetime | None = None) -> dict[str, Any]:
    doc = await redis.hgetall(customer_key(prefix, customer_id))
    segments = orjson.loads(doc[b"segments"]) if b"segments" in doc else []
    return {
        "customer_id": customer_id,
        "as_of": (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "segments": segments,
        "coupon_usage": {"items": [], "next_cursor": None},
        "gift_cards": [],
    }
