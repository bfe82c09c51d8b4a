"""Which generation of the read model serves, which one a rebuild fills, and whether Redis lost its data.

The watchdog reads ``<p>:current``, ``<p>:building`` and the current generation's epoch sentinel every
``watchdog_interval_s``. Redis without its data (FLUSHALL, a restart without persistence, a failover to an
empty replica) has no pointer or no sentinel: the model stops serving at once (the API answers 503, never
empty data as if it were current) and, with ``auto_rebuild``, a rebuild starts. A read also checks the
sentinel in its own pipeline, so it never serves a vanished generation even between two watchdog ticks.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog

from services.marketing_view import metrics, scripts
from services.marketing_view.keys import KeySpace
from services.marketing_view.scripts import AnyRedis
from shared.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

NO_MODEL = "no read model in Redis (first start, or Redis lost its data)"
CLEANUP_LOCK_MS = 60_000  # far above a clean-up's few seconds; released at once when it is done
CLEANUP_LOCK_PREFIX = "cleanup:"  # a rebuild waits for a clean-up's lock instead of reporting itself busy


class ReadModel:
    def __init__(self, redis: AnyRedis, keys: KeySpace, *, interval_s: float, cleanup_grace_s: float) -> None:
        self._redis = redis
        self.keys = keys
        self.interval_s = interval_s
        self.cleanup_grace_s = cleanup_grace_s
        self.current: str | None = None
        self.building: str | None = None  # announced in Redis by whichever process rebuilds
        self.local_building: str | None = None  # set at once by a rebuild in this process
        self.serving = False
        self.reason = "not checked yet"
        self.progress: dict[str, Any] | None = None
        self.checked_at = 0.0
        self.ever_served = False
        self._refreshing: asyncio.Lock = asyncio.Lock()
        self._cleanups: set[asyncio.Task[None]] = set()

    # --- what readers and writers ask ---------------------------------------------------------------

    def targets(self) -> list[str]:
        """The generations the live consumer writes to: the served one and the one being built."""
        gens = [self.current] if self.serving and self.current else []
        for gen in (self.building, self.local_building):
            if gen and gen not in gens:
                gens.append(gen)
        return gens

    async def fresh_targets(self) -> list[str]:
        """``targets()``, re-read first if the watchdog has not looked for a while (it may be stuck)."""
        if time.monotonic() - self.checked_at > 2 * self.interval_s:
            await self.refresh()
        return self.targets()

    def status(self) -> str:
        """For /readyz: "ok", or why the API answers 503."""
        if self.serving:
            return "ok"
        if self.progress:
            done, total = self.progress.get("done", 0), self.progress.get("total", 0)
            share = f"{100 * done / total:.0f}%" if total else "starting"
            return f"{self.reason}; rebuilding: {share}"
        return self.reason

    # --- the watchdog --------------------------------------------------------------------------------

    async def refresh(self) -> None:
        async with self._refreshing:
            await self._refresh()

    async def _refresh(self) -> None:
        k = self.keys
        cached = self.current
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(k.current)
        pipe.get(k.building)
        pipe.get(k.progress)
        if cached:
            pipe.exists(k.epoch(cached))
        results = await pipe.execute()
        current = results[0].decode() if results[0] else None
        building = results[1].decode() if results[1] else None
        progress = orjson.loads(results[2]) if results[2] else None
        if current and current == cached:
            alive = bool(results[3])
        elif current:
            alive = bool(await self._redis.exists(k.epoch(current)))
        else:
            alive = False
        was_serving, previous = self.serving, self.current
        self.current, self.building, self.progress = current, building, progress
        self.serving = alive
        self.checked_at = time.monotonic()
        metrics.SERVING.set(1 if alive else 0)
        if alive:
            self.reason = "ok"
            self.ever_served = True
            if previous and previous != current:
                log.info("read model switched generation", previous=previous, current=current)
                self.schedule_cleanup()
        else:
            self.reason = NO_MODEL if not current else f"generation {current} lost its data (epoch key missing)"
            if was_serving:
                metrics.DATA_LOSSES.inc()
                log.error("read model lost: Redis no longer holds the served generation", generation=previous,
                          reason=self.reason)

    async def watch(self, on_tick: Callable[[], Awaitable[None]] | None = None) -> None:
        """The watchdog loop (runs for the life of the service)."""
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.serving = False
                self.reason = f"redis unreachable: {type(exc).__name__}"
                metrics.SERVING.set(0)
            if on_tick is not None:
                try:
                    await on_tick()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("watchdog tick failed")
            await asyncio.sleep(self.interval_s)

    # --- clean-up of generations nobody serves any more -------------------------------------------

    def schedule_cleanup(self) -> None:
        task = asyncio.create_task(self._cleanup_later(), name="marketing_view-cleanup")
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _cleanup_later(self) -> None:
        await asyncio.sleep(self.cleanup_grace_s)
        try:
            # Under the rebuild lock: a rebuild starting meanwhile writes its new generation's epoch before
            # it says `building`, and a clean-up between the two would delete it. When a rebuild holds the
            # lock, skip: the rebuild clears leftover generations itself when it starts.
            token = CLEANUP_LOCK_PREFIX + uuid.uuid4().hex
            if not await self._redis.set(self.keys.lock, token, nx=True, px=CLEANUP_LOCK_MS):
                return
            try:
                await self.refresh()
                if self.serving and self.current:
                    removed = await delete_other_generations(self._redis, self.keys, keep={*self.targets()})
                    log.info("old generations removed", keys=removed, kept=self.targets())
            finally:
                await scripts.run(self._redis, [("release_lock", [self.keys.lock], [token])])
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("clean-up of old generations failed (the next rebuild retries it)")

    async def close(self) -> None:
        await cancel_and_wait(list(self._cleanups))


async def delete_other_generations(redis: AnyRedis, keys: KeySpace, *, keep: set[str]) -> int:
    """UNLINK every key of this key space that belongs to no kept generation (control keys stay)."""
    removed = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=keys.pattern, count=1000):
        text = key.decode()
        if keys.is_control(text) or keys.generation_of(text) in keep:
            continue
        batch.append(key)
        if len(batch) >= 500:
            removed += await redis.unlink(*batch)
            batch = []
    if batch:
        removed += await redis.unlink(*batch)
    return removed
