"""The consumer loop every service runs: poll, decode, apply per partition, dead-letter, then commit.

At-least-once with idempotent effects:
- each topic is polled by its own loop (independent streams, as in replicas owning different partitions);
  a poll is applied by the service's batch handler in one call (one transaction): the records of all the
  topic's partitions in the poll, each partition's in order (a key lives in one partition);
- offsets are committed only after the handlers returned, i.e. after the database commits, by a background
  committer: the loop polls again at once instead of waiting for the round trip, and the offsets noted while
  a commit is in flight go together in the next request (one request per round trip, whatever the batch rate);
- a message that is not JSON, breaks the contract or has an unknown schema version goes to
  ``<topic>.dlq`` with the reason and its origin in headers, and the partition goes on;
- a failing dependency (database, Redis, broker) is retried with backoff and reported unready,
  never skipped; an error that only one message causes dead-letters that message alone.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from shared import metrics, redaction
from shared.contracts import topics as topic_names
from shared.contracts.codec import ContractViolation
from shared.errors import is_transient
from shared.kafka import make_consumer
from shared.settings import CommonSettings
from shared.tasks import cancel_and_wait

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One decoded message, with where it came from (``topic`` is the logical name, without prefix)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    event: Any
    timestamp_ms: int
    raw: bytes | None = None


BatchHandler = Callable[[Sequence[Delivery]], Awaitable[None]]
Decoder = Callable[[str, bytes | None], Any]


@dataclass
class ConsumerHealth:
    ready: bool = False
    last_error: str | None = None
    since: float = field(default_factory=time.monotonic)


class ConsumerRuntime:
    def __init__(
        self,
        *,
        settings: CommonSettings,
        service: str,
        group_id: str,
        handlers: dict[str, BatchHandler],
        decode: Decoder,
        producer: AIOKafkaProducer,
        max_backoff_s: float = 10.0,
        consumer_options: dict[str, object] | None = None,
    ) -> None:
        self._settings = settings
        self._service = service
        self._handlers = handlers
        self._decode = decode
        self._producer = producer
        self._max_backoff_s = max_backoff_s
        self._by_physical = {settings.topic(t): t for t in handlers}
        self._consumer: AIOKafkaConsumer = make_consumer(settings, group_id, *handlers, **(consumer_options or {}))
        self._task: asyncio.Task[None] | None = None
        self._committer: asyncio.Task[None] | None = None
        self._uncommitted: dict[TopicPartition, int] = {}
        self._commit_wanted = asyncio.Event()
        self.health = ConsumerHealth()
        self.group_id = group_id

    async def start(self) -> None:
        await self._consumer.start()
        self.health.ready = True
        self._committer = asyncio.create_task(self._commit_loop(), name=f"{self._service}-offset-commits")
        self._task = asyncio.create_task(self._run(), name=f"{self._service}-consumer")

    async def stop(self) -> None:
        await cancel_and_wait([self._task, self._committer])
        await self._commit_now()  # what was applied before the stop (a redelivery would be harmless, not needed)
        await self._consumer.stop()

    async def _run(self) -> None:
        if len(self._by_physical) == 1:
            await self._loop(None)
            return
        # One loop per topic, each polling only its topic's assigned partitions and committing their offsets:
        # topics are independent streams, so a topic's events never wait for another topic's transaction
        # (a coupon event behind a poll of sales, for instance). One committer commits for all of them.
        async with asyncio.TaskGroup() as group:
            for physical in self._by_physical:
                group.create_task(self._loop(physical), name=f"{self._service}-consumer-{physical}")

    async def _loop(self, physical: str | None) -> None:
        while True:
            try:
                if physical is None:
                    polled = await self._consumer.getmany(timeout_ms=500)
                else:
                    mine = [tp for tp in self._consumer.assignment() if tp.topic == physical]
                    if not mine:  # not assigned (yet, or any more): never call getmany() without partitions
                        await asyncio.sleep(0.1)
                        continue
                    polled = await self._consumer.getmany(*mine, timeout_ms=500)
            except KafkaError as exc:
                self._unready(exc)
                await asyncio.sleep(1)
                continue
            if any(polled.values()):
                await self._apply_poll(polled)

    async def _apply_poll(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """One poll: per logical topic, the records of all its partitions in ONE handler call (each partition's
        records in order, one after the other: a key lives in one partition, so per-key order holds); then the
        offsets of every partition are handed to the committer, after every handler returned (i.e. after the DB
        commits)."""
        started = time.perf_counter()
        by_topic: dict[str, list[tuple[TopicPartition, list[ConsumerRecord]]]] = {}
        for tp, records in polled.items():
            if records:
                by_topic.setdefault(self._by_physical[tp.topic], []).append((tp, records))
        offsets: dict[TopicPartition, int] = {}
        last: dict[str, Delivery] = {}
        decode = self._decode
        work = []
        for logical, parts in by_topic.items():
            deliveries: list[Delivery] = []
            dead: list[tuple[ConsumerRecord, str]] = []
            for tp, records in parts:
                partition = tp.partition
                for record in records:
                    try:
                        event = decode(logical, record.value)
                    except ContractViolation as exc:
                        dead.append((record, exc.reason))
                        continue
                    deliveries.append(Delivery(logical, partition, record.offset, record.key, event,
                                               record.timestamp, record.value))
                offsets[tp] = records[-1].offset + 1
            work.append(self._apply_topic(logical, parts, deliveries, dead, last))
        if len(work) == 1:
            await work[0]
        else:
            # Topics are independent streams (no order between them), each its own transaction: apply them
            # concurrently, as replicas owning different partitions already do; one's DB wait overlaps the
            # other's work. A failure cancels the others; nothing is committed then.
            async with asyncio.TaskGroup() as group:
                for job in work:
                    group.create_task(job)
        self._uncommitted.update(offsets)  # a partition's records come in order: the latest noted is the furthest
        self._commit_wanted.set()
        for tp, next_offset in offsets.items():
            self._report_lag(tp, next_offset)
        elapsed = time.perf_counter() - started
        now_ms = time.time() * 1000
        for logical in by_topic:
            metrics.PROCESSING_SECONDS.labels(self._service, logical).observe(elapsed)
            if logical in last:
                metrics.EVENT_AGE_SECONDS.labels(self._service, logical).observe(
                    max(0.0, now_ms - last[logical].timestamp_ms) / 1000)

    async def _apply_topic(self, logical: str, parts: list[tuple[TopicPartition, list[ConsumerRecord]]],
                           deliveries: list[Delivery], dead: list[tuple[ConsumerRecord, str]],
                           last: dict[str, Delivery]) -> None:
        if dead:
            await self._with_retry(lambda: self._dead_letter(logical, dead))
        if deliveries:
            await self._apply(logical, deliveries)
            last[logical] = deliveries[-1]
            log.info("batch applied", topic=logical,
                     offsets={tp.partition: f"{records[0].offset}-{records[-1].offset}" for tp, records in parts},
                     events=len(deliveries), event_ids=[str(d.event.event_id) for d in deliveries[:100]])

    async def _apply(self, logical: str, deliveries: list[Delivery]) -> None:
        handler = self._handlers[logical]
        try:
            await self._with_retry(lambda: handler(deliveries))
        except _PermanentFailure:
            # Something in this batch fails for good: find it, apply the rest one by one.
            poisoned: list[tuple[ConsumerRecord | Delivery, str]] = []
            for d in deliveries:
                try:
                    await self._with_retry(lambda d=d: handler([d]))  # type: ignore[misc]
                except _PermanentFailure as failure:
                    log.error("event failed for good", topic=logical, event_id=str(d.event.event_id),
                              event_type=getattr(d.event, "event_type", "?"), offset=d.offset)
                    poisoned.append((d, f"processing failed: {failure.cause!r}"))
            if poisoned:
                await self._with_retry(lambda: self._dead_letter(logical, poisoned))
        by_type = Counter(getattr(d.event, "event_type", "?") for d in deliveries)
        for event_type, n in by_type.items():  # one increment per type and batch, not per event
            metrics.EVENTS_PROCESSED.labels(self._service, logical, event_type, "ok").inc(n)
        self._ready()

    async def _with_retry(self, attempt: Callable[[], Awaitable[None]]) -> None:
        backoff = 0.2
        while True:
            try:
                await attempt()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("message handling failed", service=self._service)
                    raise _PermanentFailure(exc) from exc
                self._unready(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)

    async def _dead_letter(self, logical: str, items: Sequence[tuple[Any, str]]) -> None:
        futures = []
        for item, reason in items:
            record_value, key = redaction.for_dead_letter(logical, *_raw(item))
            reason = redaction.mask_card_like(reason)
            headers = [
                ("dlq.reason", reason[:2000].encode()),
                ("dlq.original.topic", logical.encode()),
                ("dlq.original.partition", str(item.partition).encode()),
                ("dlq.original.offset", str(item.offset).encode()),
                ("dlq.consumer.group", self.group_id.encode()),
                ("dlq.failed_at", datetime.now(UTC).isoformat().encode()),
            ]
            futures.append(await self._producer.send(
                self._settings.topic(topic_names.dlq(logical)), value=record_value, key=key, headers=headers
            ))
            metrics.EVENTS_DEAD_LETTERED.labels(self._service, logical, reason.split(":", 1)[0][:60]).inc()
            log.warning("message dead-lettered", topic=logical, partition=item.partition, offset=item.offset,
                        event_id=_event_id_of(item), reason=reason[:300])
        await asyncio.gather(*futures)

    async def _commit_loop(self) -> None:
        """Commit what the loops applied, one request at a time. Offsets are noted only after their batch's
        handlers returned (database committed); while a request is in flight the loops go on, and everything
        they note meanwhile goes in the next one."""
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            if self._settings.fault_pause_before_commit_s:
                await asyncio.sleep(self._settings.fault_pause_before_commit_s)
            if not await self._commit_now():
                await asyncio.sleep(1)  # the broker is away: the offsets were kept, try again shortly

    async def _commit_now(self) -> bool:
        """Every partition noted so far in one request. False when it should be tried again later."""
        offsets, self._uncommitted = self._uncommitted, {}
        if not offsets:
            return True
        try:
            await self._consumer.commit(offsets)
        except asyncio.CancelledError:  # stopping: the stop commits them (again, maybe: harmless)
            self._keep(offsets)
            raise
        except (CommitFailedError, IllegalStateError) as exc:
            # Rebalanced away: the new owner re-reads from the last commit; the inbox makes that harmless.
            log.warning("offset commit refused", partitions=_names(offsets), error=str(exc))
        except KafkaError as exc:
            log.warning("offset commit failed, will retry", partitions=_names(offsets), error=str(exc))
            self._keep(offsets)
            self._commit_wanted.set()
            return False
        return True

    def _keep(self, offsets: dict[TopicPartition, int]) -> None:
        """Put back offsets whose commit did not happen, unless a later batch of that partition was noted since."""
        for tp, offset in offsets.items():
            self._uncommitted.setdefault(tp, offset)

    def _report_lag(self, tp: TopicPartition, next_offset: int) -> None:
        high = self._consumer.highwater(tp)
        if high is not None:
            metrics.CONSUMER_LAG.labels(self._service, self._by_physical[tp.topic], str(tp.partition)).set(
                max(0, high - next_offset)
            )

    def _unready(self, exc: BaseException) -> None:
        if self.health.ready:
            log.warning("dependency unavailable, retrying", service=self._service, error=repr(exc))
        self.health = ConsumerHealth(ready=False, last_error=repr(exc)[:300])

    def _ready(self) -> None:
        if not self.health.ready:
            log.info("dependency back, resuming", service=self._service)
            self.health = ConsumerHealth(ready=True)


class _PermanentFailure(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(repr(cause))
        self.cause = cause


def _names(offsets: dict[TopicPartition, int]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in offsets]


def _raw(item: Any) -> tuple[bytes | None, bytes | None]:
    if isinstance(item, Delivery):
        return item.raw, item.key
    return item.value, item.key


def _event_id_of(item: Any) -> str | None:
    """The event id of a dead letter, when it has one (never anything else of its payload)."""
    if isinstance(item, Delivery):
        return str(item.event.event_id)
    try:
        value = orjson.loads(item.value) if item.value else None
    except orjson.JSONDecodeError:
        return None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return event_id[:64] if isinstance(event_id, str) else None
