"""All SQL of segment_engine. Functions take a connection inside the caller's transaction; none commits.

Lock order, everywhere: the rules lock (advisory: shared to read rules, exclusive to change them), then
segment rows, then customer rows (by id where it matters). Deadlocks are retried (transient errors).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from services.segment_engine.domain import Membership, Transition
from services.segment_engine.facts import CustomerFacts, InvoiceFact
from services.segment_engine.sqlgen import Query
from shared.contracts import topics

# --- customers and facts ---------------------------------------------------------------------------------


async def ensure_customers(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> set[str]:
    """Create the customers not seen before (first sight, from a sale or the CRM); returns the new ids."""
    ids = sorted(set(customer_ids))
    if not ids:
        return set()
    rows = await conn.fetch(
        "INSERT INTO customers (customer_id) SELECT id FROM unnest($1::text[]) AS id ORDER BY id"
        " ON CONFLICT (customer_id) DO NOTHING RETURNING customer_id",
        ids,
    )
    return {r["customer_id"] for r in rows}


async def lock_customers(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> list[str]:
    """Lock the customers' rows in id order (until commit); returns the ids that exist."""
    ids = sorted(set(customer_ids))
    if not ids:
        return []
    rows = await conn.fetch(
        "SELECT customer_id FROM customers WHERE customer_id = ANY($1::text[]) ORDER BY customer_id FOR UPDATE",
        ids,
    )
    return [r["customer_id"] for r in rows]


async def invoice_customers(conn: asyncpg.Connection, invoice_numbers: Iterable[str]) -> dict[str, str]:
    numbers = list(set(invoice_numbers))
    if not numbers:
        return {}
    rows = await conn.fetch(
        "SELECT invoice_number, customer_id FROM invoices"
        " WHERE invoice_number = ANY($1::text[]) AND customer_id IS NOT NULL",
        numbers,
    )
    return {r["invoice_number"]: r["customer_id"] for r in rows}


async def apply_sale(conn: asyncpg.Connection, *, invoice_number: str, customer_id: str, store_id: str,
                     business_day: date, occurred_at: datetime, total: Decimal, units: int,
                     categories: Sequence[str]) -> str | None:
    """Record a completed sale; a repeat of a known sale changes nothing (returns None)."""
    return await conn.fetchval(
        "INSERT INTO invoices (invoice_number, customer_id, store_id, business_day, occurred_at, total, units,"
        " categories, has_sale) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true)"
        " ON CONFLICT (invoice_number) DO UPDATE SET customer_id = EXCLUDED.customer_id,"
        " store_id = EXCLUDED.store_id, business_day = EXCLUDED.business_day, occurred_at = EXCLUDED.occurred_at,"
        " total = EXCLUDED.total, units = EXCLUDED.units, categories = EXCLUDED.categories, has_sale = true"
        " WHERE NOT invoices.has_sale RETURNING customer_id",
        invoice_number, customer_id, store_id, business_day, occurred_at, total, units, list(categories),
    )


async def apply_sales(conn: asyncpg.Connection, sales: Sequence[tuple[str, str, str, date, datetime, Decimal, int,
                                                                    Sequence[str]]]) -> list[str]:
    """Record completed sales in one statement: (invoice_number, customer_id, store_id, business_day, occurred_at,
    total, units, categories), invoice numbers distinct. A repeat of a known sale changes nothing. Returns the
    customers of the sales applied (the same effect as ``apply_sale`` per sale, one round trip per batch)."""
    if not sales:
        return []
    n, c, s, d, o, t, u, k = (list(col) for col in zip(*sales, strict=True))
    rows = await conn.fetch(
        "INSERT INTO invoices (invoice_number, customer_id, store_id, business_day, occurred_at, total, units,"
        " categories, has_sale)"
        " SELECT v.n, v.c, v.s, v.d, v.o, v.t, v.u, ARRAY(SELECT jsonb_array_elements_text(v.k::jsonb)), true"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::timestamptz[], $6::numeric[],"
        " $7::int[], $8::text[]) AS v(n, c, s, d, o, t, u, k)"
        " ON CONFLICT (invoice_number) DO UPDATE SET customer_id = EXCLUDED.customer_id,"
        " store_id = EXCLUDED.store_id, business_day = EXCLUDED.business_day, occurred_at = EXCLUDED.occurred_at,"
        " total = EXCLUDED.total, units = EXCLUDED.units, categories = EXCLUDED.categories, has_sale = true"
        " WHERE NOT invoices.has_sale RETURNING customer_id",
        n, c, s, d, o, t, u, [json.dumps(list(cats)) for cats in k],
    )
    return [r["customer_id"] for r in rows]


async def apply_void(conn: asyncpg.Connection, *, invoice_number: str, customer_id: str | None) -> str | None:
    """Void an invoice, known or not yet (the sale, when it comes, finds it voided). Returns its customer."""
    return await conn.fetchval(
        "INSERT INTO invoices (invoice_number, customer_id, voided) VALUES ($1, $2, true)"
        " ON CONFLICT (invoice_number) DO UPDATE SET voided = true,"
        " customer_id = COALESCE(invoices.customer_id, EXCLUDED.customer_id) RETURNING customer_id",
        invoice_number, customer_id,
    )


async def apply_return(conn: asyncpg.Connection, *, return_invoice_number: str, original_invoice_number: str,
                       customer_id: str | None, refund_total: Decimal, units: int,
                       occurred_at: datetime) -> str | None:
    """Take a return against its original invoice (known or not yet), once per return invoice."""
    return await conn.fetchval(
        "WITH r AS (INSERT INTO invoice_returns (return_invoice_number, original_invoice_number, customer_id,"
        " refund_total, units, occurred_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
        " RETURNING original_invoice_number, customer_id, refund_total, units)"
        " INSERT INTO invoices (invoice_number, customer_id, returned_total, returned_units)"
        " SELECT original_invoice_number, customer_id, refund_total, units FROM r"
        " ON CONFLICT (invoice_number) DO UPDATE SET"
        " returned_total = invoices.returned_total + EXCLUDED.returned_total,"
        " returned_units = invoices.returned_units + EXCLUDED.returned_units,"
        " customer_id = COALESCE(invoices.customer_id, EXCLUDED.customer_id) RETURNING customer_id",
        return_invoice_number, original_invoice_number, customer_id, refund_total, units, occurred_at,
    )


async def apply_registration(conn: asyncpg.Connection, *, customer_id: str, registered_at: datetime,
                             signup_day: date, home_store_id: str | None, loyalty_tier: str | None,
                             occurred_at: datetime) -> None:
    """The latest registration (by occurred_at) wins; its tier counts only if newer than the tier known."""
    await conn.execute(
        "UPDATE customers SET"
        " registered_at = CASE WHEN registration_at IS NULL OR $6 >= registration_at THEN $2 ELSE registered_at END,"
        " signup_day = CASE WHEN registration_at IS NULL OR $6 >= registration_at THEN $3 ELSE signup_day END,"
        " home_store_id = CASE WHEN registration_at IS NULL OR $6 >= registration_at THEN $4"
        "   ELSE home_store_id END,"
        " loyalty_tier = CASE WHEN $5::text IS NOT NULL AND (tier_at IS NULL OR $6 >= tier_at) THEN $5"
        "   ELSE loyalty_tier END,"
        " tier_at = CASE WHEN $5::text IS NOT NULL AND (tier_at IS NULL OR $6 >= tier_at) THEN $6 ELSE tier_at END,"
        " registration_at = GREATEST(registration_at, $6), updated_at = now()"
        " WHERE customer_id = $1",
        customer_id, registered_at, signup_day, home_store_id, loyalty_tier, occurred_at,
    )


async def apply_tier(conn: asyncpg.Connection, *, customer_id: str, tier: str, occurred_at: datetime) -> None:
    """A tier change applies unless a newer one (by occurred_at) is already known."""
    await conn.execute(
        "UPDATE customers SET loyalty_tier = $2, tier_at = $3, updated_at = now()"
        " WHERE customer_id = $1 AND (tier_at IS NULL OR $3 >= tier_at)",
        customer_id, tier, occurred_at,
    )


async def apply_registrations(conn: asyncpg.Connection,
                              rows: Sequence[tuple[str, datetime, date, str | None, str | None, datetime]]) -> None:
    """``apply_registration`` for many customers in one statement: (customer_id, registered_at, signup_day,
    home_store_id, loyalty_tier, occurred_at), at most one row per customer (the caller ensures it)."""
    if not rows:
        return
    await conn.execute(
        "UPDATE customers AS c SET"
        " registered_at = CASE WHEN c.registration_at IS NULL OR u.occurred_at >= c.registration_at"
        "   THEN u.registered_at ELSE c.registered_at END,"
        " signup_day = CASE WHEN c.registration_at IS NULL OR u.occurred_at >= c.registration_at"
        "   THEN u.signup_day ELSE c.signup_day END,"
        " home_store_id = CASE WHEN c.registration_at IS NULL OR u.occurred_at >= c.registration_at"
        "   THEN u.home_store_id ELSE c.home_store_id END,"
        " loyalty_tier = CASE WHEN u.tier IS NOT NULL AND (c.tier_at IS NULL OR u.occurred_at >= c.tier_at)"
        "   THEN u.tier ELSE c.loyalty_tier END,"
        " tier_at = CASE WHEN u.tier IS NOT NULL AND (c.tier_at IS NULL OR u.occurred_at >= c.tier_at)"
        "   THEN u.occurred_at ELSE c.tier_at END,"
        " registration_at = GREATEST(c.registration_at, u.occurred_at), updated_at = now()"
        " FROM unnest($1::text[], $2::timestamptz[], $3::date[], $4::text[], $5::text[], $6::timestamptz[])"
        "   AS u(customer_id, registered_at, signup_day, home_store_id, tier, occurred_at)"
        " WHERE c.customer_id = u.customer_id",
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
        [r[4] for r in rows], [r[5] for r in rows],
    )


async def apply_tiers(conn: asyncpg.Connection, rows: Sequence[tuple[str, str, datetime]]) -> None:
    """``apply_tier`` for many customers in one statement: (customer_id, tier, occurred_at), at most one row
    per customer (the caller ensures it)."""
    if not rows:
        return
    await conn.execute(
        "UPDATE customers AS c SET loyalty_tier = u.tier, tier_at = u.occurred_at, updated_at = now()"
        " FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(customer_id, tier, occurred_at)"
        " WHERE c.customer_id = u.customer_id AND (c.tier_at IS NULL OR u.occurred_at >= c.tier_at)",
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
    )


async def bump_facts(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> None:
    ids = sorted(set(customer_ids))
    if ids:
        await conn.execute(
            "UPDATE customers SET facts_version = facts_version + 1, updated_at = now()"
            " WHERE customer_id = ANY($1::text[])", ids,
        )


async def fill_missing_signup_days(conn: asyncpg.Connection, timezone: str) -> int:
    """Customers registered before signup days were kept (migration 002) get theirs."""
    result = await conn.execute(
        "UPDATE customers SET signup_day = (registered_at AT TIME ZONE $1)::date"
        " WHERE registered_at IS NOT NULL AND signup_day IS NULL", timezone,
    )
    return int(result.split()[-1])


async def load_facts(conn: asyncpg.Connection, customer_ids: Sequence[str]) -> dict[str, CustomerFacts]:
    ids = list(customer_ids)
    customers = await conn.fetch(
        "SELECT customer_id, signup_day, loyalty_tier, facts_version FROM customers"
        " WHERE customer_id = ANY($1::text[])", ids,
    )
    invoices: dict[str, list[InvoiceFact]] = {}
    for r in await conn.fetch(
        "SELECT customer_id, invoice_number, business_day, store_id, total, units, categories, has_sale, voided,"
        " returned_total, returned_units FROM invoices WHERE customer_id = ANY($1::text[]) AND has_sale", ids,
    ):
        invoices.setdefault(r["customer_id"], []).append(InvoiceFact(
            invoice_number=r["invoice_number"], business_day=r["business_day"], store_id=r["store_id"],
            total=r["total"], units=r["units"], categories=tuple(r["categories"]), has_sale=r["has_sale"],
            voided=r["voided"], returned_total=r["returned_total"], returned_units=r["returned_units"],
        ))
    return {
        r["customer_id"]: CustomerFacts(
            customer_id=r["customer_id"], signup_day=r["signup_day"], loyalty_tier=r["loyalty_tier"],
            invoices=tuple(invoices.get(r["customer_id"], ())), facts_version=r["facts_version"],
        )
        for r in customers
    }


# --- segments --------------------------------------------------------------------------------------------

SEGMENT_COLUMNS = "segment_id, name, description, rule, version, created_at, updated_at"


async def list_segments(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {SEGMENT_COLUMNS} FROM segments ORDER BY segment_id")


async def get_segment(conn: asyncpg.Connection, segment_id: str, *, lock: str | None = None) -> asyncpg.Record | None:
    suffix = {None: "", "share": " FOR SHARE", "update": " FOR UPDATE"}[lock]
    return await conn.fetchrow(f"SELECT {SEGMENT_COLUMNS} FROM segments WHERE segment_id = $1{suffix}", segment_id)


async def segment_name_taken(conn: asyncpg.Connection, name: str, segment_id: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT 1 FROM segments WHERE lower(name) = lower($1) AND segment_id <> $2", name, segment_id,
    ))


async def last_version(conn: asyncpg.Connection, segment_id: str) -> int:
    return int(await conn.fetchval(
        "SELECT COALESCE(max(version), 0) FROM segment_versions WHERE segment_id = $1", segment_id,
    ))


async def save_segment(conn: asyncpg.Connection, *, segment_id: str, name: str, description: str,
                       rule: dict[str, Any], version: int, rule_changed: bool) -> asyncpg.Record:
    await conn.execute(
        "INSERT INTO segment_versions (segment_id, version, name, description, rule, rule_changed)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        segment_id, version, name, description, rule, rule_changed,
    )
    return await conn.fetchrow(
        "INSERT INTO segments (segment_id, name, description, rule, version) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (segment_id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description,"
        f" rule = EXCLUDED.rule, version = EXCLUDED.version, updated_at = now() RETURNING {SEGMENT_COLUMNS}",
        segment_id, name, description, rule, version,
    )


async def delete_segment(conn: asyncpg.Connection, segment_id: str) -> None:
    await conn.execute("DELETE FROM segments WHERE segment_id = $1", segment_id)


async def segment_versions(conn: asyncpg.Connection, segment_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT version, name, description, rule, rule_changed, created_at FROM segment_versions"
        " WHERE segment_id = $1 ORDER BY version DESC", segment_id,
    )


async def member_counts(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT segment_id, count(*) AS n FROM memberships WHERE manual OR (rule_match AND NOT excluded)"
        " GROUP BY segment_id"
    )
    return {r["segment_id"]: r["n"] for r in rows}


async def member_count(conn: asyncpg.Connection, segment_id: str) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM memberships WHERE segment_id = $1 AND (manual OR (rule_match AND NOT excluded))",
        segment_id,
    ))


# --- memberships -----------------------------------------------------------------------------------------

MEMBER = "(m.manual OR (m.rule_match AND NOT m.excluded))"


def _membership(r: asyncpg.Record) -> Membership:
    return Membership(
        segment_id=r["segment_id"], customer_id=r["customer_id"], rule_match=r["rule_match"],
        match_notes=r["match_notes"], manual=r["manual"], manual_notes=r["manual_notes"], excluded=r["excluded"],
        member_since=r["member_since"],
    )


async def load_memberships(conn: asyncpg.Connection, customer_ids: Sequence[str]) -> dict[tuple[str, str], Membership]:
    rows = await conn.fetch("SELECT * FROM memberships WHERE customer_id = ANY($1::text[])", list(customer_ids))
    return {(r["segment_id"], r["customer_id"]): _membership(r) for r in rows}


async def load_membership(conn: asyncpg.Connection, segment_id: str, customer_id: str) -> Membership | None:
    row = await conn.fetchrow(
        "SELECT * FROM memberships WHERE segment_id = $1 AND customer_id = $2", segment_id, customer_id,
    )
    return None if row is None else _membership(row)


async def save_memberships(conn: asyncpg.Connection, memberships: Sequence[Membership]) -> None:
    """Store memberships as they now stand: upsert those worth keeping, delete the empty ones."""
    keep = [m for m in memberships if not m.is_empty]
    drop = [m for m in memberships if m.is_empty]
    if keep:
        await conn.execute(
            "INSERT INTO memberships (segment_id, customer_id, rule_match, match_notes, manual, manual_notes,"
            " excluded, member_since, updated_at)"
            " SELECT s, c, rm, mn, ma, man, ex, ms, now() FROM unnest($1::text[], $2::text[], $3::bool[],"
            " $4::text[], $5::bool[], $6::text[], $7::bool[], $8::date[]) AS u(s, c, rm, mn, ma, man, ex, ms)"
            " ON CONFLICT (segment_id, customer_id) DO UPDATE SET rule_match = EXCLUDED.rule_match,"
            " match_notes = EXCLUDED.match_notes, manual = EXCLUDED.manual, manual_notes = EXCLUDED.manual_notes,"
            " excluded = EXCLUDED.excluded, member_since = EXCLUDED.member_since, updated_at = now()",
            [m.segment_id for m in keep], [m.customer_id for m in keep], [m.rule_match for m in keep],
            [m.match_notes for m in keep], [m.manual for m in keep], [m.manual_notes for m in keep],
            [m.excluded for m in keep], [m.member_since for m in keep],
        )
    if drop:
        await conn.execute(
            "DELETE FROM memberships m USING unnest($1::text[], $2::text[]) AS u(s, c)"
            " WHERE m.segment_id = u.s AND m.customer_id = u.c",
            [m.segment_id for m in drop], [m.customer_id for m in drop],
        )


@dataclass(frozen=True)
class HistoryEntry:
    transition: Transition
    segment_name: str
    segment_version: int | None


async def record_history(conn: asyncpg.Connection, entries: Sequence[HistoryEntry], *, today: date,
                         now: datetime) -> None:
    if not entries:
        return
    await conn.execute(
        "INSERT INTO membership_history (segment_id, segment_name, segment_version, customer_id, action, reason,"
        " assigned_by, notes, business_day, at)"
        " SELECT * , $9::date, $10::timestamptz FROM unnest($1::text[], $2::text[], $3::int[], $4::text[],"
        " $5::text[], $6::text[], $7::text[], $8::text[])",
        [e.transition.membership.segment_id for e in entries], [e.segment_name for e in entries],
        [e.segment_version for e in entries], [e.transition.membership.customer_id for e in entries],
        [e.transition.action.value for e in entries], [e.transition.reason.value for e in entries],
        [e.transition.membership.assigned_by.value if e.transition.membership.is_member else None for e in entries],
        [e.transition.membership.notes for e in entries], today, now,
    )


async def members_page(conn: asyncpg.Connection, segment_id: str, *, after: str | None, limit: int,
                       excluded: bool = False) -> list[asyncpg.Record]:
    which = "m.excluded AND NOT m.manual" if excluded else MEMBER
    return await conn.fetch(
        "SELECT m.customer_id, m.member_since, m.manual, m.manual_notes, m.match_notes, m.rule_match, m.excluded,"
        " m.updated_at FROM memberships m"
        f" WHERE m.segment_id = $1 AND {which} AND ($2::text IS NULL OR m.customer_id > $2)"
        " ORDER BY m.customer_id LIMIT $3",
        segment_id, after, limit,
    )


async def customer_memberships(conn: asyncpg.Connection, customer_id: str) -> list[asyncpg.Record]:
    """Every membership row of a customer (members and exclusions), with the segment's name."""
    return await conn.fetch(
        "SELECT m.*, s.name, s.version FROM memberships m JOIN segments s ON s.segment_id = m.segment_id"
        " WHERE m.customer_id = $1 ORDER BY s.name, s.segment_id", customer_id,
    )


async def history_page(conn: asyncpg.Connection, customer_id: str, *, before: int | None, limit: int,
                       segment_id: str | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, segment_id, segment_name, segment_version, action, reason, assigned_by, notes, business_day, at"
        " FROM membership_history WHERE customer_id = $1 AND ($2::bigint IS NULL OR id < $2)"
        " AND ($4::text IS NULL OR segment_id = $4) ORDER BY id DESC LIMIT $3",
        customer_id, before, limit, segment_id,
    )


# --- outbound --------------------------------------------------------------------------------------------

_ENQUEUE_LISTS = """
WITH lists AS (
    SELECT m.customer_id, json_agg(json_build_object(
        'segment_id', m.segment_id, 'name', s.name, 'date_assigned', m.member_since,
        'assigned_by', CASE WHEN m.manual THEN 'manual' ELSE 'automatic' END,
        'notes', CASE WHEN m.manual THEN m.manual_notes ELSE m.match_notes END
    ) ORDER BY s.name, s.segment_id) AS segments
    FROM memberships m JOIN segments s ON s.segment_id = m.segment_id
    WHERE m.customer_id = ANY($1::text[]) AND (m.manual OR (m.rule_match AND NOT m.excluded))
    GROUP BY m.customer_id
), ev AS (
    SELECT v.customer_id, v.version, gen_random_uuid() AS event_id, l.segments
    FROM unnest($1::text[], $2::bigint[]) AS v(customer_id, version)
    LEFT JOIN lists l ON l.customer_id = v.customer_id
)
INSERT INTO outbox (topic, key, event_id, event_type, payload)
SELECT $3::text, ev.customer_id, ev.event_id, 'customer.segments_changed', convert_to(json_build_object(
    'event_id', ev.event_id, 'event_type', 'customer.segments_changed', 'schema_version', 1,
    'occurred_at', $4::timestamptz, 'version', ev.version, 'customer_id', ev.customer_id,
    'segments', COALESCE(ev.segments, '[]'::json)
)::text, 'UTF8')
FROM ev ORDER BY ev.customer_id
"""


async def bump_versions(conn: asyncpg.Connection, customer_ids: Iterable[str]) -> dict[str, int]:
    """The next segments version of each customer (the caller holds their row locks)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = await conn.fetch(
        "UPDATE customers SET segments_version = segments_version + 1 WHERE customer_id = ANY($1::text[])"
        " RETURNING customer_id, segments_version", ids,
    )
    return {r["customer_id"]: r["segments_version"] for r in rows}


async def enqueue_lists(conn: asyncpg.Connection, versions: dict[str, int], now: datetime) -> int:
    """One CustomerSegmentsChanged per customer, carrying its complete current list and the given version,
    into the outbox: one statement for any number of customers (ids ascending, so outbox order is stable)."""
    if not versions:
        return 0
    ids = sorted(versions)
    result = await conn.execute(_ENQUEUE_LISTS, ids, [versions[i] for i in ids], topics.SEGMENT_MEMBERSHIPS, now)
    return int(result.split()[-1])


async def announce(conn: asyncpg.Connection, customer_ids: Iterable[str], now: datetime) -> int:
    """Emit one CustomerSegmentsChanged per customer (the complete current list, the next version) through
    the outbox, set-based. The caller holds the customers' row locks, so per-customer order holds."""
    return await enqueue_lists(conn, await bump_versions(conn, customer_ids), now)


# --- evaluation jobs -------------------------------------------------------------------------------------

JOB_COLUMNS = ("job_id, kind, segment_id, segment_version, reason, as_of, status, phase, evaluated, total, processed,"
               " entered, exited, customers_changed, error, created_at, started_at, finished_at")


async def create_job(conn: asyncpg.Connection, *, kind: str, reason: str, segment_id: str | None = None,
                     segment_version: int | None = None, as_of: datetime | None = None) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO evaluation_jobs (kind, segment_id, segment_version, reason, as_of) VALUES ($1, $2, $3, $4, $5)"
        f" RETURNING {JOB_COLUMNS}",
        kind, segment_id, segment_version, reason, as_of,
    )


async def supersede_jobs(conn: asyncpg.Connection, segment_id: str) -> None:
    """A newer rule (or a delete) makes the segment's queued backfills pointless."""
    await conn.execute(
        "UPDATE evaluation_jobs SET status = 'superseded', phase = 'superseded', finished_at = now()"
        " WHERE segment_id = $1 AND status = 'pending'", segment_id,
    )


async def get_job(conn: asyncpg.Connection, job_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM evaluation_jobs WHERE job_id = $1", job_id)


async def latest_jobs(conn: asyncpg.Connection, segment_ids: Sequence[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        f"SELECT DISTINCT ON (segment_id) {JOB_COLUMNS} FROM evaluation_jobs"
        " WHERE segment_id = ANY($1::text[]) AND kind = 'backfill' ORDER BY segment_id, job_id DESC",
        list(segment_ids),
    )
    return {r["segment_id"]: r for r in rows}


async def segment_jobs(conn: asyncpg.Connection, segment_id: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM evaluation_jobs WHERE segment_id = $1 ORDER BY job_id DESC LIMIT $2",
        segment_id, limit,
    )


async def sweep_due(conn: asyncpg.Connection, interval_s: float) -> bool:
    """No sweep waiting, and none asked for within the last interval (replicas share the schedule)."""
    return bool(await conn.fetchval(
        "SELECT NOT EXISTS (SELECT 1 FROM evaluation_jobs WHERE kind = 'sweep' AND status IN ('pending', 'running'))"
        " AND NOT EXISTS (SELECT 1 FROM evaluation_jobs WHERE kind = 'sweep'"
        "   AND created_at > now() - make_interval(secs => $1))",
        interval_s * 0.9,
    ))


async def claim_job(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """The oldest open job (a 'running' one was orphaned by a runner that died: it starts over)."""
    return await conn.fetchrow(
        "UPDATE evaluation_jobs SET status = 'running', phase = 'evaluating', started_at = now(), processed = 0,"
        " total = 0, evaluated = 0, entered = 0, exited = 0, customers_changed = 0"
        " WHERE job_id = (SELECT job_id FROM evaluation_jobs WHERE status IN ('pending', 'running')"
        " ORDER BY job_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
        f" RETURNING {JOB_COLUMNS}"
    )


async def job_progress(conn: asyncpg.Connection, job_id: int, *, phase: str, total: int | None = None,
                       evaluated: int | None = None, processed: int = 0, entered: int = 0, exited: int = 0,
                       changed: int = 0) -> None:
    await conn.execute(
        "UPDATE evaluation_jobs SET phase = $2, total = COALESCE($3, total), processed = processed + $4,"
        " entered = entered + $5, exited = exited + $6, customers_changed = customers_changed + $7,"
        " evaluated = COALESCE($8, evaluated) WHERE job_id = $1",
        job_id, phase, total, processed, entered, exited, changed, evaluated,
    )


async def finish_job(conn: asyncpg.Connection, job_id: int, status: str, error: str | None = None) -> None:
    await conn.execute(
        "UPDATE evaluation_jobs SET status = $2, phase = $2, error = $3, finished_at = now() WHERE job_id = $1",
        job_id, status, error,
    )


async def run_query(conn: asyncpg.Connection, query: Query) -> list[asyncpg.Record]:
    return await conn.fetch(query.sql, *query.args)


# --- set-based evaluation (the diff and its chunks: backfill_sql.py) --------------------------------------

RULES_LOCK = 0x5E6_0001  # advisory: shared while rules are read and applied, exclusive while they change


async def share_rules(conn: asyncpg.Connection) -> None:
    """Rules cannot change until the caller's transaction ends (segment changes wait for it)."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", RULES_LOCK)


async def own_rules(conn: asyncpg.Connection) -> None:
    """Change rules: wait for every transaction reading them, and hold off new ones until commit."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", RULES_LOCK)


async def segment_versions_now(conn: asyncpg.Connection, segment_ids: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch("SELECT segment_id, version FROM segments WHERE segment_id = ANY($1::text[])",
                            list(segment_ids))
    return {r["segment_id"]: r["version"] for r in rows}


# --- removal of a whole segment ---------------------------------------------------------------------------


async def segment_member_ids(conn: asyncpg.Connection, segment_id: str) -> list[str]:
    rows = await conn.fetch(
        f"SELECT m.customer_id FROM memberships m WHERE m.segment_id = $1 AND {MEMBER} ORDER BY m.customer_id",
        segment_id,
    )
    return [r["customer_id"] for r in rows]


async def record_segment_exit(conn: asyncpg.Connection, *, segment_id: str, name: str, version: int, reason: str,
                              today: date, now: datetime) -> int:
    result = await conn.execute(
        "INSERT INTO membership_history (segment_id, segment_name, segment_version, customer_id, action, reason,"
        " assigned_by, notes, business_day, at)"
        " SELECT m.segment_id, $2, $3, m.customer_id, 'exited', $4, NULL,"
        "  CASE WHEN m.manual THEN m.manual_notes ELSE m.match_notes END, $5, $6"
        f" FROM memberships m WHERE m.segment_id = $1 AND {MEMBER} ORDER BY m.customer_id",
        segment_id, name, version, reason, today, now,
    )
    return int(result.split()[-1])


# --- engine state ----------------------------------------------------------------------------------------


async def claim_state_flag(conn: asyncpg.Connection, key: str, value: Any) -> bool:
    """Set ``key`` once: True for the caller that set it, False if it was already set."""
    return bool(await conn.fetchval(
        "INSERT INTO engine_state (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING true",
        key, value,
    ))


async def segment_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM segments"))


# --- preview ---------------------------------------------------------------------------------------------


async def preview(conn: asyncpg.Connection, query: Query, segment_id: str, limit: int) -> dict[str, Any]:
    """Compare what a rule would match now with the segment's current memberships (nothing is written but a
    temporary table that disappears at commit)."""
    await conn.execute("DROP TABLE IF EXISTS pg_temp.preview_matches")
    await conn.execute("CREATE TEMP TABLE preview_matches (customer_id text PRIMARY KEY, notes text) ON COMMIT DROP")
    await conn.execute(
        "INSERT INTO preview_matches SELECT customer_id, notes[1] FROM (" + query.sql + ") q", *query.args,
    )
    counts = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM preview_matches) AS matching,"
        " (SELECT count(*) FROM preview_matches p LEFT JOIN memberships m"
        "   ON m.segment_id = $1 AND m.customer_id = p.customer_id"
        "   WHERE m.customer_id IS NULL OR NOT (m.manual OR m.excluded OR m.rule_match)) AS entering,"
        " (SELECT count(*) FROM memberships m LEFT JOIN preview_matches p ON p.customer_id = m.customer_id"
        "   WHERE m.segment_id = $1 AND NOT m.manual AND m.rule_match AND NOT m.excluded"
        "   AND p.customer_id IS NULL) AS leaving,"
        " (SELECT count(*) FROM memberships m WHERE m.segment_id = $1 AND m.manual) AS manual_members,"
        " (SELECT count(*) FROM memberships m JOIN preview_matches p ON p.customer_id = m.customer_id"
        "   WHERE m.segment_id = $1 AND m.excluded AND NOT m.manual) AS excluded_matching",
        segment_id,
    )
    entering = await conn.fetch(
        "SELECT p.customer_id, p.notes FROM preview_matches p LEFT JOIN memberships m"
        " ON m.segment_id = $1 AND m.customer_id = p.customer_id"
        " WHERE m.customer_id IS NULL OR NOT (m.manual OR m.excluded OR m.rule_match)"
        " ORDER BY p.customer_id LIMIT $2",
        segment_id, limit,
    )
    leaving = await conn.fetch(
        "SELECT m.customer_id, m.match_notes FROM memberships m LEFT JOIN preview_matches p"
        " ON p.customer_id = m.customer_id WHERE m.segment_id = $1 AND NOT m.manual AND m.rule_match"
        " AND NOT m.excluded AND p.customer_id IS NULL ORDER BY m.customer_id LIMIT $2",
        segment_id, limit,
    )
    return {
        "matching": counts["matching"],
        "would_enter": {"count": counts["entering"],
                        "customers": [{"customer_id": r["customer_id"], "notes": r["notes"]} for r in entering]},
        "would_leave": {"count": counts["leaving"],
                        "customers": [{"customer_id": r["customer_id"], "notes": r["match_notes"]}
                                      for r in leaving]},
        "manual_members": counts["manual_members"],
        "excluded_matching": counts["excluded_matching"],
    }
