"""Domain events -> one Redis document per customer. Versions are stored with the data, atomically."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from shared.contracts.domain import CustomerSegmentsChanged


def customer_key(prefix: str, customer_id: str) -> str:
    # The braces make every key of one customer hash to one Redis Cluster slot.
    return f"{prefix}:{{{customer_id}}}:doc"


# Apply a state-carrying event only if it is newer than what the document holds.
_APPLY_IF_NEWER = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[3]) > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3], ARGV[2], ARGV[4])
  return 1
end
return 0
"""


class Projector:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._apply_if_newer = redis.register_script(_APPLY_IF_NEWER)

    async def project_segments(self, event: CustomerSegmentsChanged) -> bool:
        payload = [s.model_dump(mode="json") for s in event.segments]
        applied = await self._apply_if_newer(
            keys=[customer_key(self._prefix, event.customer_id)],
            args=["segments_v", "segments", event.version, orjson.dumps(payload)],
        )
        return bool(applied)
