"""Rebuild: replay the domain topics (kept forever, they ARE the history) into a new generation, then
switch ``<p>:current`` to it in one SET. Reads keep using the old generation until the switch.

Why no event is lost at the switch, with the live consumer(s) running all along:
1. the rebuild creates generation N (epoch sentinel) and announces it in ``<p>:building``; every live
   consumer writes each batch to the generations it knows (current, building): in this process at once,
   in other processes within one watchdog interval;
2. it waits ``settle_s`` (> that interval) and only THEN captures the end offsets E of every partition;
3. it replays [beginning, E) into N. An event at an offset >= E was produced after every live consumer
   already knew N, so the live consumer writes it to N. An event below E is replayed. Both writers are
   version-checked, so the overlap is harmless;
4. it switches ``current`` to N (one SET: atomic), and the old generation is unlinked after a grace period
   (readers that still hold the old name for up to a watchdog interval keep working).
A lock key (renewed while running) keeps rebuilds one at a time; the building key expires with it, so
a crashed rebuild leaves no dual writes behind; a rebuild whose own epoch vanishes (Redis lost its data
again) aborts and, with ``auto_rebuild``, starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.marketing_view import metrics, scripts, writes
from services.marketing_view.generations import CLEANUP_LOCK_PREFIX, ReadModel, delete_other_generations
from services.marketing_view.keys import KeySpace, new_generation
from services.marketing_view.projection import Projector
from services.marketing_view.scripts import AnyRedis
from shared.contracts import topics
from shared.contracts.codec import ContractViolation
from shared.settings import CommonSettings
from shared.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

LOCK_TTL_MS = 15_000
FETCH_MAX_BYTES = 1024 * 1024
PARTITION_FETCH_BYTES = 256 * 1024


def give_back_memory() -> None:
    """After a replay, hand the freed heap back to the system: glibc keeps freed memory in its arenas, so a
    service that rebuilt at start-up kept about 25 MB more resident than one that did not (measured on a
    replay of 650,000 events: 105 MB resident after the rebuild, 79 MB after this)."""
    gc.collect()
    with contextlib.suppress(Exception):  # not glibc (musl, macOS): nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class RebuildBusy(RuntimeError):
    """Another process is rebuilding this key space."""


class RebuildAborted(RuntimeError):
    """The generation being built vanished (Redis lost its data again) or the lock was lost."""


@dataclass
class Progress:
    generation: str
    phase: str  # "settling", "replaying", "switching", "done"
    done: int = 0
    total: int = 0
    invalid: int = 0
    started_at: float = 0.0

    def as_json(self) -> bytes:
        return orjson.dumps({"generation": self.generation, "phase": self.phase, "done": self.done,
                             "total": self.total, "invalid": self.invalid})


class Rebuilder:
    def __init__(self, *, settings: CommonSettings, redis: AnyRedis, keys: KeySpace, projector: Projector,
                 model: ReadModel | None, settle_s: float, batch_records: int = 5000,
                 on_progress: Callable[[Progress], None] | None = None) -> None:
        self._settings = settings
        self._redis = redis
        self._keys = keys
        self._projector = projector
        self._model = model
        self._settle_s = settle_s
        self._batch_records = batch_records
        self._on_progress = on_progress
        self.progress: Progress | None = None

    async def run(self, reason: str) -> str:
        """Build a fresh generation from the full history and switch to it. Returns its name."""
        token = uuid.uuid4().hex
        k = self._keys
        if not await self._take_lock(token):
            raise RebuildBusy("a rebuild of this read model is already running")
        gen = new_generation()
        started = time.monotonic()
        self.progress = Progress(gen, "settling", started_at=started)
        renewer = asyncio.create_task(self._keep_alive(token, gen), name="marketing_view-rebuild-lock")
        log.info("rebuild started", generation=gen, reason=reason)
        try:
            current = await self._redis.get(k.current)
            keep = {current.decode()} if current else set()
            await delete_other_generations(self._redis, k, keep=keep)  # leftovers of failed rebuilds
            await self._redis.set(k.epoch(gen), orjson.dumps(
                {"generation": gen, "created_at": datetime.now(UTC).isoformat(), "reason": reason}))
            await self._redis.set(k.building, gen, px=LOCK_TTL_MS)
            if self._model is not None:
                self._model.local_building = gen
            await self._report()
            await asyncio.sleep(self._settle_s)
            await self._replay(gen)
            await self._switch(gen, token)
        except BaseException as exc:
            metrics.REBUILDS.labels("failed", reason).inc()
            log.warning("rebuild did not finish", generation=gen, error=repr(exc)[:300])
            with contextlib.suppress(Exception):
                await self._redis.delete(k.progress)
                if (await self._redis.get(k.building) or b"").decode() == gen:
                    await self._redis.delete(k.building)
            raise
        finally:
            await cancel_and_wait([renewer])
            if self._model is not None and self._model.local_building == gen:
                self._model.local_building = None
            with contextlib.suppress(Exception):
                await scripts.run(self._redis, [("release_lock", [k.lock], [token])])
            metrics.REBUILD_PROGRESS.set(0)
            give_back_memory()
        metrics.REBUILDS.labels("finished", reason).inc()
        log.info("rebuild finished", generation=gen, events=self.progress.done, invalid=self.progress.invalid,
                 seconds=round(time.monotonic() - started, 2))
        return gen

    async def _keep_alive(self, token: str, gen: str) -> None:
        k = self._keys
        while True:
            await asyncio.sleep(LOCK_TTL_MS / 3000)
            try:
                _, _, held = await scripts.run(self._redis, [("renew_lock", [k.lock], [token, LOCK_TTL_MS])],
                                               before=lambda p: (p.pexpire(k.building, LOCK_TTL_MS),
                                                                 p.pexpire(k.progress, LOCK_TTL_MS)))
                if not held:
                    log.warning("rebuild lock lost", generation=gen)
            except Exception as exc:
                log.warning("rebuild lock renewal failed", error=repr(exc)[:200])

    async def _report(self) -> None:
        assert self.progress is not None
        if self.progress.total:
            metrics.REBUILD_PROGRESS.set(self.progress.done / self.progress.total)
        if self._on_progress is not None:
            self._on_progress(self.progress)
        await self._redis.set(self._keys.progress, self.progress.as_json(), px=LOCK_TTL_MS)

    async def _replay(self, gen: str) -> None:
        """Replay [beginning, E) of every partition into ``gen``. Two stages overlap: while one batch's writes
        are in Redis (awaited), the next batch is polled and decoded."""
        assert self.progress is not None
        physical = {self._settings.topic(t): t for t in topics.DOMAIN_TOPICS}
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level="read_committed", max_poll_records=self._batch_records,
            # bounded prefetch: at most fetch_max_bytes per fetch, max_partition_fetch_bytes per partition
            fetch_max_bytes=FETCH_MAX_BYTES, max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        )
        await consumer.start()
        queue: asyncio.Queue[writes.Batch | None] = asyncio.Queue(maxsize=2)
        writer = asyncio.create_task(self._write(queue, gen), name="marketing_view-rebuild-writer")
        try:
            cluster = await consumer._client.fetch_all_metadata()  # the consumer's own view knows no topic yet
            partitions = [TopicPartition(t, p) for t in physical for p in sorted(cluster.partitions_for_topic(t) or [])]
            missing = [t for t in physical if not cluster.partitions_for_topic(t)]
            if missing:
                raise RuntimeError(f"domain topics missing on the broker: {missing}")
            consumer.assign(partitions)
            begin = await consumer.beginning_offsets(partitions)
            end = await consumer.end_offsets(partitions)  # E: captured after the settle period
            self.progress.total = sum(end[tp] - begin[tp] for tp in partitions)
            self.progress.phase = "replaying"
            await self._report()
            for tp in partitions:  # explicit positions: seek_to_beginning proved unreliable after end_offsets
                consumer.seek(tp, begin[tp])
            pending = {tp for tp in partitions if end[tp] > begin[tp]}
            checked = time.monotonic()
            while pending:
                polled = await consumer.getmany(*pending, timeout_ms=500, max_records=self._batch_records)
                batch = writes.Batch()
                for tp, records in polled.items():
                    topic, stop = physical[tp.topic], end[tp]
                    for record in records:
                        if record.offset >= stop:
                            continue  # after E: the live consumer writes it to this generation
                        self.progress.done += 1
                        try:
                            batch.add(writes.from_json(topic, record.value))
                        except ContractViolation:
                            self.progress.invalid += 1  # dead-lettered by the live consumer already
                for tp in list(pending):
                    if await consumer.position(tp) >= end[tp]:
                        pending.discard(tp)
                if len(batch):
                    await self._hand_over(queue, batch, writer)
                if time.monotonic() - checked > 1.0:
                    checked = time.monotonic()
                    await self._still_there(gen)
                    await self._report()
            await self._hand_over(queue, None, writer)
            await writer
        finally:
            await cancel_and_wait([writer])
            await consumer.stop()

    @staticmethod
    async def _hand_over(queue: asyncio.Queue[writes.Batch | None], batch: writes.Batch | None,
                         writer: asyncio.Task[None]) -> None:
        put = asyncio.ensure_future(queue.put(batch))
        await asyncio.wait({put, writer}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():  # the writer stopped (it failed): its error is the rebuild's error
            put.cancel()
            await writer
            raise RebuildAborted("the rebuild's writer stopped")
        if batch is not None and writer.done():
            await writer  # raises what stopped it
            raise RebuildAborted("the rebuild's writer stopped")

    async def _take_lock(self, token: str, cleanup_wait_s: float = 30.0) -> bool:
        """The rebuild lock; held by another rebuild: False. Held by a clean-up of old generations (a few
        seconds, see generations.ReadModel): wait for it."""
        k = self._keys
        deadline = time.monotonic() + cleanup_wait_s
        while not await self._redis.set(k.lock, token, nx=True, px=LOCK_TTL_MS):
            holder = (await self._redis.get(k.lock) or b"").decode()
            if (holder and not holder.startswith(CLEANUP_LOCK_PREFIX)) or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _write(self, queue: asyncio.Queue[writes.Batch | None], gen: str) -> None:
        while (batch := await queue.get()) is not None:
            await self._projector.apply_batch(batch, [gen])

    async def _still_there(self, gen: str) -> None:
        if not await self._redis.exists(self._keys.epoch(gen)):
            raise RebuildAborted(f"generation {gen} vanished while it was being built (Redis lost its data)")

    async def _switch(self, gen: str, token: str) -> None:
        assert self.progress is not None
        k = self._keys
        self.progress.phase = "switching"
        await self._report()
        await self._still_there(gen)
        if (await self._redis.get(k.lock) or b"").decode() != token:
            raise RebuildAborted("the rebuild lock was lost (Redis restarted?)")
        previous = await self._redis.get(k.current)
        await self._redis.set(k.current, gen)  # THE switch: one SET, atomic
        log.info("read model switched", generation=gen, previous=previous.decode() if previous else None)
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(k.building)
        pipe.delete(k.progress)
        await pipe.execute()
        self.progress.phase = "done"
        if self._on_progress is not None:
            self._on_progress(self.progress)
        if self._model is not None:
            self._model.local_building = None
            await self._model.refresh()
            self._model.schedule_cleanup()
