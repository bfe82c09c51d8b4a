"""Set-based evaluation jobs: the backfill after a rule is created or changed, and the sweep as time passes.

A job runs in two phases:

1. **evaluating**: one SQL statement evaluates the job's rules for every customer over the facts tables
   (``sqlgen.evaluation_query``) and keeps only what differs from the stored matches
   (``backfill_sql.create_job_diff``):
   the customers who enter, leave, or whose explanation changed, each with its ``facts_version`` in that
   snapshot. One pass over the facts, one hash join with the memberships; nothing per customer in Python.
2. **applying**: the changed customers are cut into ranges of ``chunk_size`` customers in id order, each
   chunk in one transaction with their rows locked; the diff is applied set-based (``backfill_sql``: a few
   statements per chunk, whatever its size) and every customer whose segment list changed is announced
   through the outbox, its event built in SQL. Progress (processed / total) is written with each chunk.

Consistency with the event path: changing a rule takes the rules lock exclusively, reading rules takes it
shared, so every event transaction either committed before the rule changed (its facts are in the job's
snapshot) or evaluated with the new rule. A customer whose ``facts_version`` moved since the snapshot was
re-evaluated by such a transaction; the job leaves it alone rather than apply an older answer.

Only one job runs at a time across replicas (an advisory lock); a job left 'running' by a runner that died
is started over (applying a diff is idempotent). A backfill whose segment changed or was deleted under it
stops as 'superseded' (the newer version has its own backfill).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from dataclasses import dataclass
from datetime import date

import asyncpg
import structlog
from prometheus_client import Histogram

from services.segment_engine import backfill_sql, store
from services.segment_engine.compiler import CompiledRule
from services.segment_engine.domain import Reason
from services.segment_engine.handlers import SegmentEngine, count_bulk
from services.segment_engine.sqlgen import evaluation_query
from shared.errors import is_transient

log = structlog.get_logger(__name__)

WORK_MEM = re.compile(r"^[0-9]{1,6}(kB|MB|GB)$")
RUNNER_LOCK = int.from_bytes(hashlib.sha256(b"segment_engine:jobs").digest()[:8], "big", signed=True)

JOB_SECONDS = Histogram("segment_engine_job_seconds", "Duration of set-based evaluation jobs", ["kind"],
                        buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))


class _Superseded(Exception):
    """The backfill's segment changed or was deleted: its newer version has its own backfill."""


@dataclass(frozen=True)
class _Target:
    segment_id: str
    name: str
    version: int
    compiled: CompiledRule


class JobRunner:
    def __init__(self, engine: SegmentEngine, *, chunk_size: int = 5000, poll_s: float = 2.0,
                 work_mem: str | None = "256MB", workers: int = 2) -> None:
        self.engine = engine
        self.chunk_size = chunk_size
        self.workers = max(1, workers)  # connections applying chunks at the same time
        self.poll_s = poll_s
        self.work_mem = work_mem if work_mem and WORK_MEM.match(work_mem) else None

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    log.warning("evaluation jobs waiting for a dependency", error=repr(exc))
                else:
                    log.exception("evaluation jobs failed")
                await asyncio.sleep(1)
            self.engine.jobs_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.engine.jobs_wake.wait(), self.poll_s)

    async def schedule_sweeps(self, interval_s: float, *, first_after_s: float = 0.0) -> None:
        """Ask for a sweep every ``interval_s`` (replicas share the schedule: one sweep per interval)."""
        await asyncio.sleep(first_after_s)
        while True:
            try:
                async with self.engine.pool.acquire() as conn, conn.transaction():
                    due = await store.sweep_due(conn, interval_s)
                    if due:
                        await store.create_job(conn, kind="sweep", reason=Reason.TIME_PASSED.value)
                if due:
                    self.engine.jobs_wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("could not schedule a sweep", error=repr(exc))
            await asyncio.sleep(interval_s)

    async def run_pending(self) -> int:
        """Run every open job, oldest first, unless another runner holds the lock. Returns how many ran."""
        async with self.engine.pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RUNNER_LOCK):
                return 0
            try:
                ran = 0
                while (job := await store.claim_job(conn)) is not None:
                    await self._run(conn, job)
                    ran += 1
                return ran
            finally:
                with contextlib.suppress(Exception):
                    await backfill_sql.drop_job_diff(conn)
                    await conn.execute("SELECT pg_advisory_unlock($1)", RUNNER_LOCK)

    async def _run(self, conn: asyncpg.Connection, job: asyncpg.Record) -> None:
        job_id = job["job_id"]
        with JOB_SECONDS.labels(job["kind"]).time():
            try:
                status = await self._evaluate(conn, job)
            except Exception as exc:
                if is_transient(exc):
                    raise  # the job stays 'running'; the next pass starts it over
                log.exception("evaluation job failed", job_id=job_id)
                await store.finish_job(conn, job_id, "failed", repr(exc)[:500])
                return
        await store.finish_job(conn, job_id, status)
        log.info("evaluation job finished", job_id=job_id, kind=job["kind"], segment_id=job["segment_id"],
                 status=status)

    async def _targets(self, conn: asyncpg.Connection, job: asyncpg.Record) -> list[_Target]:
        engine = self.engine
        rows = await store.list_segments(conn)
        if job["kind"] == "backfill":
            rows = [r for r in rows if r["segment_id"] == job["segment_id"] and r["version"] == job["segment_version"]]
        return [_Target(r["segment_id"], r["name"], r["version"], engine.compiled(r["segment_id"], r["version"],
                                                                                   r["rule"])) for r in rows]

    async def _evaluate(self, conn: asyncpg.Connection, job: asyncpg.Record) -> str:
        engine = self.engine
        job_id = job["job_id"]
        as_of = job["as_of"] or engine.clock.now()
        today = engine.today(as_of)
        targets = await self._targets(conn, job)
        if job["kind"] == "backfill" and not targets:
            return "superseded"
        if job["kind"] == "backfill" and job["reason"] == Reason.RULE_MATCHED.value:
            entered, left = Reason.RULE_MATCHED.value, Reason.RULE_STOPPED_MATCHING.value
        else:
            entered = left = job["reason"]
        expected = {t.segment_id: t.version for t in targets}
        names = {t.segment_id: t.name for t in targets}

        if self.work_mem:
            await conn.execute(f"SET work_mem = '{self.work_mem}'")
        try:
            evaluated, total = await backfill_sql.create_job_diff(
                conn, evaluation_query([t.compiled for t in targets], today), [t.segment_id for t in targets])
        finally:
            if self.work_mem:
                await conn.execute("RESET work_mem")
        await store.job_progress(conn, job_id, phase="applying", total=total, evaluated=evaluated)
        bounds = await backfill_sql.chunk_bounds(conn, self.chunk_size)
        chunks = iter(list(zip([None, *bounds[:-1]], bounds, strict=True)))
        stop: list[str] = []

        async def worker() -> None:
            async with engine.pool.acquire() as wconn:
                await backfill_sql.prepare(wconn)
                for low, high in chunks:  # shared by the workers: each chunk is taken once
                    if stop:
                        return
                    for attempt in range(1, 6):
                        try:
                            await self._apply_chunk(wconn, job, low, high, expected, names, today, entered, left)
                            break
                        except _Superseded:
                            stop.append("superseded")
                            return
                        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                            if attempt == 5:
                                raise
                            await asyncio.sleep(0.05 * attempt)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.workers, len(bounds))):
                    group.create_task(worker())
        except* Exception as failed:
            raise failed.exceptions[0] from None
        await backfill_sql.drop_job_diff(conn)
        return stop[0] if stop else "done"

    async def _apply_chunk(self, conn: asyncpg.Connection, job: asyncpg.Record, low: str | None, high: str | None,
                           expected: dict[str, int], names: dict[str, str], today: date, entered: str,
                           left: str) -> None:
        """Apply the chunk ``(low, high]`` of the diff in one transaction; raises ``_Superseded`` when the
        backfill's rule changed meanwhile."""
        engine = self.engine
        now = engine.clock.now()
        async with conn.transaction():
            await store.share_rules(conn)
            current = await store.segment_versions_now(conn, list(expected))
            active = [s for s, v in expected.items() if current.get(s) == v]
            if job["kind"] == "backfill" and not active:
                raise _Superseded
            customers, _ = await backfill_sql.lock_chunk(conn, low, high)
            n_entered, n_exited = await backfill_sql.apply_chunk(
                conn, low=low, high=high, segment_ids=active, versions=expected, names=names, today=today, now=now,
                entered_reason=entered, left_reason=left,
            )
            announced = await backfill_sql.announce_chunk(conn, low, high, now)
        # Progress after the commit, in its own statement: the workers' chunk transactions never wait for each
        # other on the job's row (a crash in between starts the job over anyway).
        await store.job_progress(conn, job["job_id"], phase="applying", processed=customers, entered=n_entered,
                                 exited=n_exited, changed=announced)
        count_bulk(n_entered, entered, n_exited, left)
        if announced:
            engine.wake_relay()
