"""Per-key rate limits (token buckets) for the endpoints that could be used to enumerate ids.

In memory, per replica: with N replicas behind a load balancer a key gets at most N times the rate, which
still makes enumerating card numbers or customer ids impractically slow.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request, status

from shared.auth import Principal, Scope, authorise

MAX_TRACKED_KEYS = 10_000


class TokenBucket:
    def __init__(self, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, updated)

    def take(self, key: str) -> float:
        """0 when the request may pass; otherwise the seconds to wait before the next one would."""
        now = self._clock()
        tokens, updated = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated) * self.per_second)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.per_second
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > MAX_TRACKED_KEYS:
            self._buckets.popitem(last=False)
        return wait


def limited(scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    """Authenticate, authorise ``scope``, then take a token from the key's bucket (429 when empty).
    A coroutine, like ``require``: no worker thread per request."""

    async def dependency(request: Request) -> Principal:
        principal = authorise(request, scope)
        charge(request.app.state.rate_limiter, principal)
        return principal

    return dependency


def charge(bucket: TokenBucket, principal: Principal) -> None:
    """Take a token from the key's bucket; 429 with Retry-After when it is empty."""
    wait = bucket.take(principal.key_id)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"rate limit of {bucket.per_second:g} requests/s per API key exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
