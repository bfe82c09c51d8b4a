"""Use cases of segment_engine: each opens one transaction, applies domain verbs, writes the outbox.

- ``on_sale_events`` / ``on_customer_events``: facts from Kafka, then that customer is re-evaluated at once.
- segment management (put, delete, preview, apply a document, defaults), manual assignment, reads.
The set-based evaluations (backfill, sweep) live in ``jobs.py``.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import asyncpg
import structlog
import yaml
from prometheus_client import Counter

from services.segment_engine import domain, store
from services.segment_engine.compiler import CompiledRule, compile_rule
from services.segment_engine.domain import Membership, Reason
from services.segment_engine.rules import RuleError, canonical, parse_rule
from services.segment_engine.sqlgen import evaluation_query
from shared import inbox
from shared.clock import Clock, business_day
from shared.consumer import Delivery
from shared.contracts.pos import (
    CustomerLoyaltyTierChanged,
    CustomerRegistered,
    SaleCompleted,
    SaleReturned,
    SaleVoided,
)

log = structlog.get_logger(__name__)

CONSUMER = "segment_engine"
SEGMENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
RESERVED_IDS = frozenset({"sweep", "sweeps", "apply", "jobs"})
MAX_NAME = 100
MAX_DESCRIPTION = 2000

ANONYMOUS = Counter("segment_engine_anonymous_sales_total",
                    "Sales events without a customer: counted, otherwise ignored", ["event_type"])
MEMBERSHIP_CHANGES = Counter("segment_engine_membership_changes_total", "Entries into and exits from segments",
                             ["action", "reason"])

T = TypeVar("T")


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


class InvalidDocument(ValueError):
    """A segment definition that does not validate; ``problems`` are (path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))


@dataclass(frozen=True)
class Segment:
    segment_id: str
    name: str
    version: int
    compiled: CompiledRule


@dataclass(frozen=True)
class SegmentDefinition:
    segment_id: str
    name: str
    description: str
    rule: dict[str, Any]  # canonical


@dataclass
class PutResult:
    segment: asyncpg.Record
    outcome: str  # created, updated, unchanged
    job: asyncpg.Record | None


@dataclass
class MembershipView:
    membership: Membership
    segment_name: str
    changed: bool  # the customer's segment list changed (and was announced)
    entered: bool = False


@dataclass
class Reevaluation:
    """What one evaluation of customers changed."""

    changed_customers: set[str] = field(default_factory=set)
    transitions: int = 0


def validate_definition(raw: Any, path: str = "") -> SegmentDefinition:
    """A segment as staff write it (segments as code): ``segment_id``, ``name``, ``description``, ``rule``."""
    prefix = f"{path}." if path else ""
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        raise InvalidDocument([(path or "segment", "expected a mapping with segment_id, name, description, rule")])
    for key in raw:
        if key not in ("segment_id", "name", "description", "rule"):
            problems.append((f"{prefix}{key}", "unknown field; expected segment_id, name, description, rule"))
    segment_id = raw.get("segment_id")
    if not isinstance(segment_id, str) or not valid_segment_id(segment_id):
        problems.append((f"{prefix}segment_id", "expected 1 to 64 lowercase letters, digits, '-' or '_' "
                                                f"(not {', '.join(sorted(RESERVED_IDS))}); got {segment_id!r}"))
    name, description = _check_texts(raw.get("name"), raw.get("description", ""), prefix, problems)
    rule: dict[str, Any] = {}
    try:
        rule = canonical(raw.get("rule"), f"{prefix}rule")
    except RuleError as exc:
        problems += exc.problems
    if problems:
        raise InvalidDocument(problems)
    assert isinstance(segment_id, str)
    return SegmentDefinition(segment_id, name, description, rule)


def _check_texts(name: Any, description: Any, prefix: str, problems: list[tuple[str, str]]) -> tuple[str, str]:
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME:
        problems.append((f"{prefix}name", f"expected a name of 1 to {MAX_NAME} characters; got {name!r}"))
        name = ""
    if description is None:
        description = ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        problems.append((f"{prefix}description", f"expected a text of at most {MAX_DESCRIPTION} characters"))
        description = ""
    return name.strip(), description.strip()


def valid_segment_id(segment_id: str) -> bool:
    return bool(SEGMENT_ID.match(segment_id)) and segment_id not in RESERVED_IDS


def parse_document(raw: Any) -> list[SegmentDefinition]:
    """A segments-as-code document: ``{segments: [ {segment_id, name, description, rule}, ... ]}``."""
    if isinstance(raw, list):
        raw = {"segments": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("segments"), list):
        raise InvalidDocument([("segments", "expected a document with a list of segments under 'segments'")])
    extra = [k for k in raw if k != "segments"]
    if extra:
        raise InvalidDocument([(str(k), "unknown field; a document has only 'segments'") for k in extra])
    problems: list[tuple[str, str]] = []
    definitions: list[SegmentDefinition] = []
    seen: set[str] = set()
    for i, item in enumerate(raw["segments"]):
        try:
            definitions.append(validate_definition(item, f"segments[{i}]"))
        except InvalidDocument as exc:
            problems += exc.problems
        segment_id = item.get("segment_id") if isinstance(item, dict) else None
        if isinstance(segment_id, str):
            if segment_id in seen:
                problems.append((f"segments[{i}].segment_id", f"{segment_id!r} appears twice"))
            seen.add(segment_id)
    if problems:
        raise InvalidDocument(problems[:50])
    return definitions


def load_document_file(path: Path) -> list[SegmentDefinition]:
    return parse_document(yaml.safe_load(path.read_text()))


class SegmentEngine:
    """Entry point of the use cases; holds the pool, the clock, and tells the relay and the job runner to go."""

    def __init__(self, pool: asyncpg.Pool, wake_relay: Callable[[], None], *, timezone: str, clock: Clock,
                 preview_limit: int = 100) -> None:
        self.pool = pool
        self.wake_relay = wake_relay
        self.tz = ZoneInfo(timezone)
        self.timezone = timezone
        self.clock = clock
        self.preview_limit = preview_limit
        self.jobs_wake = asyncio.Event()
        self._compiled: dict[tuple[str, int], CompiledRule] = {}

    # --- time ---------------------------------------------------------------------------------------------

    def today(self, now: datetime | None = None) -> date:
        return business_day(now or self.clock.now(), self.tz)

    def compiled(self, segment_id: str, version: int, rule: dict[str, Any]) -> CompiledRule:
        key = (segment_id, version)
        if key not in self._compiled:
            if len(self._compiled) > 10_000:
                self._compiled.clear()
            self._compiled[key] = compile_rule(parse_rule(rule))
        return self._compiled[key]

    async def segments(self, conn: asyncpg.Connection) -> list[Segment]:
        return [Segment(r["segment_id"], r["name"], r["version"], self.compiled(r["segment_id"], r["version"],
                                                                             r["rule"]))
                for r in await store.list_segments(conn)]

    # --- events -------------------------------------------------------------------------------------------

    async def on_sale_events(self, batch: Sequence[Delivery]) -> None:
        """pos.sales.v1: sales, voids, returns; then each customer concerned is re-evaluated."""
        now = self.clock.now()
        async with self.pool.acquire() as conn, conn.transaction():
            await store.share_rules(conn)
            new = await inbox.claim_many(conn, CONSUMER, (d.event.event_id for d in batch))
            events = [d.event for d in batch if d.event.event_id in new]
            for e in events:
                if e.customer_id is None:
                    ANONYMOUS.labels(e.event_type).inc()
            known = await store.invoice_customers(
                conn, (e.invoice_number if isinstance(e, SaleVoided) else e.original_invoice_number
                       for e in events if isinstance(e, SaleVoided | SaleReturned)),
            )
            wanted = {e.customer_id for e in events if e.customer_id is not None} | set(known.values())
            first_seen = await store.ensure_customers(conn, wanted)
            locked = set(await store.lock_customers(conn, wanted))
            touched: set[str] = set()
            # Sales in one statement (they commute with voids and returns of the same invoice: each sets its own
            # columns); a sale repeated in the batch is a no-op after its first, as it was one by one.
            sales: dict[str, SaleCompleted] = {}
            for e in events:
                if isinstance(e, SaleCompleted) and e.customer_id is not None:
                    sales.setdefault(e.invoice_number, e)
            applied: list[str | None] = list(await store.apply_sales(conn, [
                (e.invoice_number, e.customer_id, e.store_id, business_day(e.occurred_at, self.tz), e.occurred_at,
                 e.total, sum(line.quantity for line in e.lines), sorted({line.category for line in e.lines}))
                for e in sales.values()
            ]))
            for e in events:
                if not isinstance(e, SaleCompleted):
                    applied.append(await self._apply_sale_event(conn, e))
            for customer in applied:
                if customer is not None:
                    if customer not in locked:  # the invoice's customer was not known before this batch
                        first_seen |= await store.ensure_customers(conn, [customer])
                        locked |= set(await store.lock_customers(conn, [customer]))
                    touched.add(customer)
            changed = await self._reevaluate(conn, sorted(touched), first_seen, now)
        if changed.changed_customers:
            self.wake_relay()

    async def _apply_sale_event(self, conn: asyncpg.Connection, event: Any) -> str | None:
        if isinstance(event, SaleCompleted):
            if event.customer_id is None:
                return None
            return await store.apply_sale(
                conn, invoice_number=event.invoice_number, customer_id=event.customer_id, store_id=event.store_id,
                business_day=business_day(event.occurred_at, self.tz), occurred_at=event.occurred_at,
                total=event.total, units=sum(line.quantity for line in event.lines),
                categories=sorted({line.category for line in event.lines}),
            )
        if isinstance(event, SaleVoided):
            return await store.apply_void(conn, invoice_number=event.invoice_number, customer_id=event.customer_id)
        if isinstance(event, SaleReturned):
            return await store.apply_return(
                conn, return_invoice_number=event.invoice_number,
                original_invoice_number=event.original_invoice_number, customer_id=event.customer_id,
                refund_total=event.refund_total, units=sum(line.quantity for line in event.lines),
                occurred_at=event.occurred_at,
            )
        return None

    async def on_customer_events(self, batch: Sequence[Delivery]) -> None:
        """crm.customers.v1: registrations and tier changes (the latest by occurred_at wins)."""
        now = self.clock.now()
        async with self.pool.acquire() as conn, conn.transaction():
            await store.share_rules(conn)
            new = await inbox.claim_many(conn, CONSUMER, (d.event.event_id for d in batch))
            events = [d.event for d in batch if d.event.event_id in new]
            ids = {e.customer_id for e in events}
            first_seen = await store.ensure_customers(conn, ids)
            await store.lock_customers(conn, ids)
            # A customer with one event in the batch (the common case): set-based, one statement per kind.
            # A customer with several: one by one, in order (equal occurred_at: the later one wins).
            per_customer = Tally(e.customer_id for e in events)
            registrations = [
                (e.customer_id, e.registered_at, business_day(e.registered_at, self.tz), e.home_store_id,
                 e.loyalty_tier, e.occurred_at)
                for e in events if isinstance(e, CustomerRegistered) and per_customer[e.customer_id] == 1
            ]
            tiers = [(e.customer_id, e.tier, e.occurred_at) for e in events
                     if isinstance(e, CustomerLoyaltyTierChanged) and per_customer[e.customer_id] == 1]
            await store.apply_registrations(conn, registrations)
            await store.apply_tiers(conn, tiers)
            for e in events:
                if per_customer[e.customer_id] == 1:
                    continue
                if isinstance(e, CustomerRegistered):
                    await store.apply_registration(
                        conn, customer_id=e.customer_id, registered_at=e.registered_at,
                        signup_day=business_day(e.registered_at, self.tz), home_store_id=e.home_store_id,
                        loyalty_tier=e.loyalty_tier, occurred_at=e.occurred_at,
                    )
                elif isinstance(e, CustomerLoyaltyTierChanged):
                    await store.apply_tier(conn, customer_id=e.customer_id, tier=e.tier, occurred_at=e.occurred_at)
            changed = await self._reevaluate(conn, sorted(ids), first_seen, now)
        if changed.changed_customers:
            self.wake_relay()

    async def _reevaluate(self, conn: asyncpg.Connection, customer_ids: Sequence[str], first_seen: Iterable[str],
                          now: datetime) -> Reevaluation:
        """The per-customer path: evaluate every segment for these (locked) customers as of ``now``, store what
        changed, write the history, announce every customer whose segment list changed (or who is new)."""
        result = Reevaluation(changed_customers=set(first_seen))
        if not customer_ids:
            return result
        await store.bump_facts(conn, customer_ids)
        today = self.today(now)
        segments = await self.segments(conn)
        # The set-based interpreter restricted to these customers: one statement computes every segment's
        # verdict and explanation (the same meaning as ir.py's, held to it by the paths-agree property test),
        # instead of loading their facts and evaluating each segment in Python.
        query = evaluation_query([s.compiled for s in segments], today, customer_ids=customer_ids)
        verdicts = {r["customer_id"]: r["notes"] for r in await store.run_query(conn, query)}
        current = await store.load_memberships(conn, customer_ids)
        changes: list[Membership] = []
        history: list[store.HistoryEntry] = []
        for customer_id in customer_ids:
            notes_of = verdicts.get(customer_id)
            if notes_of is None:
                continue
            for segment, notes in zip(segments, notes_of, strict=True):
                before = current.get((segment.segment_id, customer_id)) or domain.blank(segment.segment_id,
                                                                                         customer_id)
                after, transition = domain.evaluate(before, notes, today, entered=Reason.RULE_MATCHED,
                                                    left=Reason.RULE_STOPPED_MATCHING)
                if after != before:
                    changes.append(after)
                if transition is not None:
                    history.append(store.HistoryEntry(transition, segment.name, segment.version))
                if after.visible != before.visible:
                    result.changed_customers.add(customer_id)
        await store.save_memberships(conn, changes)
        await store.record_history(conn, history, today=today, now=now)
        await store.announce(conn, result.changed_customers, now)
        _count(history)
        result.transitions = len(history)
        return result

    # --- segments -----------------------------------------------------------------------------------------

    async def put_segment(self, definition: SegmentDefinition) -> PutResult:
        async def work(conn: asyncpg.Connection) -> PutResult:
            return await self._put(conn, definition, self.clock.now())

        result = await self._transaction(work)
        self._wake_all()
        return result

    async def _put(self, conn: asyncpg.Connection, d: SegmentDefinition, now: datetime) -> PutResult:
        await store.own_rules(conn)
        existing = await store.get_segment(conn, d.segment_id, lock="update")
        if await store.segment_name_taken(conn, d.name, d.segment_id):
            raise Conflict(f"another segment is already named {d.name!r}")
        if existing is not None and (existing["name"], existing["description"], existing["rule"]) == (
                d.name, d.description, d.rule):
            jobs = await store.latest_jobs(conn, [d.segment_id])
            return PutResult(existing, "unchanged", jobs.get(d.segment_id))
        version = await store.last_version(conn, d.segment_id) + 1
        rule_changed = existing is None or existing["rule"] != d.rule
        segment = await store.save_segment(conn, segment_id=d.segment_id, name=d.name, description=d.description,
                                           rule=d.rule, version=version, rule_changed=rule_changed)
        job = None
        if rule_changed:
            await store.supersede_jobs(conn, d.segment_id)
            reason = Reason.RULE_MATCHED if existing is None else Reason.RULE_CHANGED
            job = await store.create_job(conn, kind="backfill", reason=reason.value, segment_id=d.segment_id,
                                         segment_version=version)
        if existing is not None and existing["name"] != d.name:
            members = await store.segment_member_ids(conn, d.segment_id)
            await store.lock_customers(conn, members)
            await store.announce(conn, members, now)
        log.info("segment saved", segment_id=d.segment_id, version=version, rule_changed=rule_changed)
        return PutResult(segment, "created" if existing is None else "updated", job)

    async def apply_document(self, definitions: Sequence[SegmentDefinition]) -> list[PutResult]:
        """Segments as code: create or replace each segment of the document, all in one transaction.
        Unchanged segments stay as they are (same version, no backfill): applying twice is harmless."""
        async def work(conn: asyncpg.Connection) -> list[PutResult]:
            now = self.clock.now()
            return [await self._put(conn, d, now) for d in definitions]

        results = await self._transaction(work)
        self._wake_all()
        return results

    async def load_defaults(self, path: Path) -> list[PutResult]:
        """On first start: the shipped segments, unless segments exist already. Never again after that, so
        staff edits and deletions stand."""
        definitions = load_document_file(path)

        async def work(conn: asyncpg.Connection) -> list[PutResult]:
            await store.own_rules(conn)
            if not await store.claim_state_flag(conn, "default_segments_loaded", {"file": path.name}):
                return []
            if await store.segment_count(conn) > 0:
                return []
            now = self.clock.now()
            return [await self._put(conn, d, now) for d in definitions]

        results = await self._transaction(work)
        if results:
            log.info("default segments loaded", segments=[r.segment["segment_id"] for r in results])
            self._wake_all()
        return results

    async def delete_segment(self, segment_id: str) -> int:
        """Remove a segment: every member exits (reason segment_deleted) and is told; the versions stay."""
        async def work(conn: asyncpg.Connection) -> int:
            now = self.clock.now()
            await store.own_rules(conn)
            segment = await store.get_segment(conn, segment_id, lock="update")
            if segment is None:
                raise NotFound(f"no segment {segment_id!r}")
            members = await store.segment_member_ids(conn, segment_id)
            await store.lock_customers(conn, members)
            exited = await store.record_segment_exit(
                conn, segment_id=segment_id, name=segment["name"], version=segment["version"],
                reason=Reason.SEGMENT_DELETED.value, today=self.today(now), now=now,
            )
            await store.supersede_jobs(conn, segment_id)
            await store.delete_segment(conn, segment_id)
            await store.announce(conn, members, now)
            MEMBERSHIP_CHANGES.labels("exited", Reason.SEGMENT_DELETED.value).inc(exited)
            return exited

        removed = await self._transaction(work)
        self.wake_relay()
        return removed

    async def preview(self, segment_id: str, rule: dict[str, Any], limit: int) -> dict[str, Any]:
        """Who would enter and who would leave if the segment had ``rule`` (canonical) now. Writes nothing."""
        now = self.clock.now()
        today = self.today(now)
        query = evaluation_query([compile_rule(parse_rule(rule))], today, only_matching=True)
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            preview = await store.preview(conn, query, segment_id, limit)
        return {"segment_id": segment_id, "as_of": now, "business_day": today, "rule": rule, **preview}

    # --- manual assignment --------------------------------------------------------------------------------

    async def add_member(self, segment_id: str, customer_id: str, notes: str) -> MembershipView:
        return await self._manual(segment_id, customer_id, lambda m, today: domain.add_manually(m, notes, today))

    async def remove_member(self, segment_id: str, customer_id: str) -> MembershipView:
        return await self._manual(segment_id, customer_id, domain.remove_manually, create=False)

    async def clear_exclusion(self, segment_id: str, customer_id: str) -> MembershipView:
        return await self._manual(segment_id, customer_id, domain.clear_exclusion, create=False)

    async def _manual(self, segment_id: str, customer_id: str,
                      verb: Callable[[Membership, date], tuple[Membership, domain.Transition | None]],
                      create: bool = True) -> MembershipView:
        async def work(conn: asyncpg.Connection) -> MembershipView:
            now = self.clock.now()
            today = self.today(now)
            await store.share_rules(conn)
            segment = await store.get_segment(conn, segment_id, lock="share")
            if segment is None:
                raise NotFound(f"no segment {segment_id!r}")
            first_seen = await store.ensure_customers(conn, [customer_id]) if create else set()
            if not await store.lock_customers(conn, [customer_id]):
                raise domain.NotAMember(f"{customer_id} is not a member of {segment_id}")
            if first_seen:  # a customer never seen before: the rules have their say first, as for any customer
                await self._reevaluate(conn, [customer_id], (), now)
            before = await store.load_membership(conn, segment_id, customer_id) or domain.blank(segment_id,
                                                                                               customer_id)
            after, transition = verb(before, today)
            if after != before:
                await store.save_memberships(conn, [after])
            if transition is not None:
                await store.record_history(
                    conn, [store.HistoryEntry(transition, segment["name"], segment["version"])], today=today, now=now,
                )
                _count([transition])
            changed = after.visible != before.visible or bool(first_seen)
            if changed:
                await store.announce(conn, [customer_id], now)
            entered = transition is not None and transition.action == domain.Action.ENTERED
            return MembershipView(after, segment["name"], changed, entered)

        view = await self._transaction(work)
        if view.changed:
            self.wake_relay()
        return view

    # --- sweeps -------------------------------------------------------------------------------------------

    async def request_sweep(self, as_of: datetime | None = None) -> asyncpg.Record:
        async def work(conn: asyncpg.Connection) -> asyncpg.Record:
            return await store.create_job(conn, kind="sweep", reason=Reason.TIME_PASSED.value, as_of=as_of)

        job = await self._transaction(work)
        self.jobs_wake.set()
        return job

    # --- reads --------------------------------------------------------------------------------------------

    async def customer_segments(self, customer_id: str) -> dict[str, Any]:
        """A customer's memberships as the grid shows them, plus a live evaluation of every segment: whether the
        rule matches now and why (or why not), in the customer's own figures."""
        now = self.clock.now()
        today = self.today(now)
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = {r["segment_id"]: r for r in await store.customer_memberships(conn, customer_id)}
            segments = await self.segments(conn)
            facts = (await store.load_facts(conn, [customer_id])).get(customer_id)
        evaluations = []
        for segment in segments:
            row = rows.get(segment.segment_id)
            live = None
            if facts is not None:
                notes = segment.compiled.evaluate(facts, today)
                live = {"matches": notes is not None,
                        "explanation": notes if notes is not None else segment.compiled.explain_failure(facts, today)}
            evaluations.append({"segment_id": segment.segment_id, "name": segment.name, "version": segment.version,
                                "row": row, "live": live})
        return {"customer_id": customer_id, "known": facts is not None, "as_of": now, "business_day": today,
                "evaluations": evaluations}

    # --- plumbing -----------------------------------------------------------------------------------------

    async def _transaction(self, work: Callable[[asyncpg.Connection], Awaitable[T]], attempts: int = 4) -> T:
        """One transaction; retried when Postgres breaks a deadlock or a serialization conflict."""
        for attempt in range(1, attempts + 1):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    return await work(conn)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                if attempt == attempts:
                    raise
                await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def _wake_all(self) -> None:
        self.wake_relay()
        self.jobs_wake.set()


def _count(transitions: Iterable[domain.Transition | store.HistoryEntry]) -> None:
    for item in transitions:
        t = item.transition if isinstance(item, store.HistoryEntry) else item
        MEMBERSHIP_CHANGES.labels(t.action.value, t.reason.value).inc()


def count_bulk(entered: int, entered_reason: str, exited: int, exited_reason: str) -> None:
    if entered:
        MEMBERSHIP_CHANGES.labels("entered", entered_reason).inc(entered)
    if exited:
        MEMBERSHIP_CHANGES.labels("exited", exited_reason).inc(exited)
