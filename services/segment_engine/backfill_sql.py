"""The SQL of the applying phase of backfills and sweeps (``jobs.py``): a chunk of the job's diff, applied
set-based. Functions take a connection inside the caller's transaction; none commits.

A chunk is a range of customer ids of the diff (``low`` exclusive, ``high`` inclusive, None: open), so every
statement reads the diff, the memberships and the customers by range (index range scans, hash joins) instead
of probing them once per id. Per chunk, in one transaction:

1. ``lock_chunk``: the chunk's customers whose facts did not move since the diff was taken are locked and their
   segments version bumped, in one UPDATE; they are kept in ``bf_locked`` (a temporary table emptied at commit).
2. ``diff_chunk``: a new statement (a new snapshot, after the locks: whatever committed before is seen) joins
   the diff with the memberships into ``bf_chunk``: one row per (segment, customer) whose rule verdict or
   explanation changes, with the membership as it stands.
3. ``apply_chunk``: memberships updated, inserted and deleted, and history rows written, in one statement
   (data-modifying CTEs over disjoint rows).
4. ``announce_chunk``: one CustomerSegmentsChanged per customer whose visible list changed, its complete list
   read after the change, into the outbox. The JSON is written by concatenation, in the exact bytes pydantic
   writes for the model (field order, no spaces, the same string escapes), which costs a fraction of
   ``json_build_object`` per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg
from pydantic import AwareDatetime, TypeAdapter

from services.segment_engine.sqlgen import Query
from shared.contracts import topics

_DATETIME = TypeAdapter(AwareDatetime)

# The diff's customers in id order, cut every ``size`` customers: the inclusive upper bounds of the chunks.
_BOUNDS = """
SELECT customer_id FROM (
    SELECT customer_id, row_number() OVER (ORDER BY customer_id) AS n
    FROM (SELECT DISTINCT customer_id FROM evaluation_diff) d
) x WHERE n % $1 = 0 ORDER BY customer_id
"""

_RANGE = "{col} > COALESCE($1::text, '') AND ($2::text IS NULL OR {col} <= $2::text)"

_TEMP_TABLES = (
    "CREATE TEMP TABLE IF NOT EXISTS bf_locked (customer_id text NOT NULL, version bigint NOT NULL)"
    " ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS bf_chunk (segment_id text NOT NULL, customer_id text NOT NULL,"
    " new_match boolean NOT NULL, new_notes text NOT NULL, existed boolean NOT NULL, old_match boolean NOT NULL,"
    " manual boolean NOT NULL, excluded boolean NOT NULL) ON COMMIT DELETE ROWS",
)

_LOCK = f"""
WITH j AS (
    SELECT customer_id, max(facts_version) AS facts_version FROM evaluation_diff
    WHERE {_RANGE.format(col="customer_id")} GROUP BY customer_id
), u AS (
    UPDATE customers c SET segments_version = c.segments_version + 1 FROM j
    WHERE c.customer_id = j.customer_id AND c.facts_version = j.facts_version
    RETURNING c.customer_id, c.segments_version
), k AS (
    INSERT INTO bf_locked (customer_id, version) SELECT customer_id, segments_version FROM u RETURNING 1
)
SELECT (SELECT count(*) FROM j) AS in_chunk, (SELECT count(*) FROM k) AS locked
"""

_DIFF = f"""
INSERT INTO bf_chunk (segment_id, customer_id, new_match, new_notes, existed, old_match, manual, excluded)
SELECT j.segment_id, j.customer_id, j.new_notes IS NOT NULL, COALESCE(j.new_notes, ''), m.customer_id IS NOT NULL,
       COALESCE(m.rule_match, false), COALESCE(m.manual, false), COALESCE(m.excluded, false)
FROM evaluation_diff j
JOIN bf_locked l ON l.customer_id = j.customer_id
LEFT JOIN memberships m ON m.segment_id = j.segment_id AND m.customer_id = j.customer_id
WHERE {_RANGE.format(col="j.customer_id")} AND j.segment_id = ANY($3::text[])
  AND ((j.new_notes IS NOT NULL) <> COALESCE(m.rule_match, false)
       OR (j.new_notes IS NOT NULL AND j.new_notes <> m.match_notes))
"""

# The meaning of ``domain.evaluate`` for a new verdict, over the chunk: a pair that starts matching and was no
# member (neither manual, nor matching, nor excluded) starts today; an excluded pair stays out; one that stops
# matching keeps its row only when manual (it stays a member) or excluded (the exclusion stands).
_APPLY = """
WITH names AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) AS n(segment_id, name, version)
), upd AS (
    UPDATE memberships m SET rule_match = d.new_match, match_notes = d.new_notes,
        member_since = CASE
            WHEN d.new_match THEN (CASE WHEN m.manual OR m.rule_match THEN m.member_since
                                        WHEN m.excluded THEN NULL ELSE $6::date END)
            WHEN m.manual THEN m.member_since END,
        updated_at = now()
    FROM bf_chunk d
    WHERE d.existed AND (d.new_match OR d.manual OR d.excluded)
      AND m.segment_id = d.segment_id AND m.customer_id = d.customer_id
    RETURNING 1
), del AS (
    DELETE FROM memberships m USING bf_chunk d
    WHERE d.existed AND NOT d.new_match AND NOT d.manual AND NOT d.excluded
      AND m.segment_id = d.segment_id AND m.customer_id = d.customer_id
    RETURNING 1
), ins AS (
    INSERT INTO memberships (segment_id, customer_id, rule_match, match_notes, member_since, updated_at)
    SELECT segment_id, customer_id, true, new_notes, $6::date, now() FROM bf_chunk
    WHERE NOT existed AND new_match ORDER BY segment_id, customer_id
    RETURNING 1
), h AS (
    INSERT INTO membership_history (segment_id, segment_name, segment_version, customer_id, action, reason,
                                    assigned_by, notes, business_day, at)
    SELECT d.segment_id, n.name, n.version, d.customer_id,
           CASE WHEN d.new_match THEN 'entered' ELSE 'exited' END,
           CASE WHEN d.new_match THEN $4 ELSE $5 END,
           CASE WHEN d.new_match THEN 'automatic' END, d.new_notes, $6::date, $7::timestamptz
    FROM bf_chunk d JOIN names n ON n.segment_id = d.segment_id
    WHERE NOT d.manual AND NOT d.excluded AND d.new_match <> d.old_match
    ORDER BY d.customer_id, d.segment_id
    RETURNING action
)
SELECT (SELECT count(*) FROM h WHERE action = 'entered') AS entered,
       (SELECT count(*) FROM h WHERE action = 'exited') AS exited,
       (SELECT count(*) FROM upd) + (SELECT count(*) FROM del) + (SELECT count(*) FROM ins) AS rows
"""

# CustomerSegmentsChanged, field for field in the order pydantic writes them (``codec.encode``): event_id,
# schema_version, occurred_at, version, event_type, customer_id, segments[segment_id, name, date_assigned,
# assigned_by, notes]. Strings go through to_json (escapes as pydantic does: \" \\ \b \f \n \r \t, \\u00xx
# for other control characters, everything else as is); occurred_at comes written by pydantic itself.
_ANNOUNCE = f"""
WITH s AS (
    SELECT segment_id, name, to_json(segment_id)::text AS id_json, to_json(name)::text AS name_json FROM segments
), a AS (
    SELECT l.customer_id, l.version, gen_random_uuid() AS event_id FROM bf_locked l
    WHERE EXISTS (SELECT 1 FROM bf_chunk d WHERE d.customer_id = l.customer_id AND NOT d.manual AND NOT d.excluded)
), lists AS (
    SELECT m.customer_id, string_agg(
        '{{"segment_id":' || s.id_json || ',"name":' || s.name_json
        || ',"date_assigned":"' || to_char(m.member_since, 'YYYY-MM-DD')
        || CASE WHEN m.manual THEN '","assigned_by":"manual","notes":' || to_json(m.manual_notes)::text
                ELSE '","assigned_by":"automatic","notes":' || to_json(m.match_notes)::text END
        || '}}', ',' ORDER BY s.name, s.segment_id) AS items
    FROM memberships m JOIN s ON s.segment_id = m.segment_id
    WHERE {_RANGE.format(col="m.customer_id")} AND (m.manual OR (m.rule_match AND NOT m.excluded))
      AND m.customer_id IN (SELECT customer_id FROM a)
    GROUP BY m.customer_id
)
INSERT INTO outbox (topic, key, event_id, event_type, payload)
SELECT $3::text, a.customer_id, a.event_id, 'customer.segments_changed', convert_to(
    '{{"event_id":"' || a.event_id::text || '","schema_version":1,"occurred_at":' || $4::text
    || ',"version":' || a.version::text || ',"event_type":"customer.segments_changed","customer_id":'
    || to_json(a.customer_id)::text || ',"segments":[' || COALESCE(lists.items, '') || ']}}', 'UTF8')
FROM a LEFT JOIN lists ON lists.customer_id = a.customer_id
ORDER BY a.customer_id
"""


async def create_job_diff(conn: asyncpg.Connection, query: Query, segment_ids: Sequence[str]) -> tuple[int, int]:
    """Evaluate the rules (``query``: one notes element per segment of ``segment_ids``) for every customer and
    keep, in the table ``evaluation_diff``, only what differs from the stored matches: one statement, one snapshot.
    Each row carries the customer's ``facts_version`` in that snapshot. Returns (customers evaluated, customers
    in the diff).

    The query yields every customer (its facts_version included), so one LEFT JOIN with the stored matches
    finds entries (no match stored), exits (no explanation now) and changed explanations alike.

    The table is a plain UNLOGGED table of the service's schema, not a temporary one, so that the chunks can
    be applied on several connections. Only the job runner holding the runner lock uses it (one job at a
    time); after a crash it is empty or stale, and the job that starts over creates it anew."""
    await drop_job_diff(conn)
    n = len(query.args)
    segs, idx = f"${n + 1}::text[]", f"${n + 2}::int[]"
    await conn.execute(
        f"CREATE UNLOGGED TABLE evaluation_diff AS WITH e AS ({query.sql})"
        " SELECT e.customer_id, g.segment_id, e.notes[g.idx] AS new_notes, e.facts_version"
        f" FROM e CROSS JOIN unnest({segs}, {idx}) AS g(segment_id, idx)"
        " LEFT JOIN memberships m ON m.rule_match AND m.segment_id = g.segment_id AND m.customer_id = e.customer_id"
        " WHERE e.notes[g.idx] IS DISTINCT FROM m.match_notes",
        *query.args, list(segment_ids), list(range(1, len(segment_ids) + 1)),
    )
    await conn.execute("CREATE INDEX ON evaluation_diff (customer_id)")
    await conn.execute("ANALYZE evaluation_diff")
    evaluated = await conn.fetchval("SELECT count(*) FROM customers")
    rows = await conn.fetchval("SELECT count(DISTINCT customer_id) FROM evaluation_diff")
    return int(evaluated), int(rows)


async def drop_job_diff(conn: asyncpg.Connection) -> None:
    await conn.execute("DROP TABLE IF EXISTS evaluation_diff")


async def chunk_bounds(conn: asyncpg.Connection, size: int) -> list[str | None]:
    """The upper bounds of the chunks of the diff (``size`` customers each; the last one is open: None)."""
    rows = await conn.fetch(_BOUNDS, size)
    return [r["customer_id"] for r in rows] + [None]


async def prepare(conn: asyncpg.Connection) -> None:
    """The chunk's temporary tables (once per session; emptied at every commit)."""
    for sql in _TEMP_TABLES:
        await conn.execute(sql)


@dataclass(frozen=True)
class ChunkResult:
    customers: int  # customers of the diff in this chunk
    entered: int
    exited: int
    announced: int  # customers whose segment list changed (one announcement each)


async def lock_chunk(conn: asyncpg.Connection, low: str | None, high: str | None) -> tuple[int, int]:
    """Lock the chunk's customers whose facts did not change since the diff was taken, and bump their
    segments version (kept in ``bf_locked``). The others were re-evaluated by the event path, under the
    current rules: theirs is the newer answer, and they are left alone. Returns (customers, locked). (Row
    locks are taken in the join's order, not by id: a rare deadlock with the event path is retried by the
    caller.)"""
    row = await conn.fetchrow(_LOCK, low, high)
    return int(row["in_chunk"]), int(row["locked"])


async def apply_chunk(conn: asyncpg.Connection, *, low: str | None, high: str | None, segment_ids: Sequence[str],
                      versions: dict[str, int], names: dict[str, str], today: date, now: datetime,
                      entered_reason: str, left_reason: str) -> tuple[int, int]:
    """Apply the diff of the locked customers of the chunk for ``segment_ids`` with exactly the meaning of
    ``domain.evaluate``: the rule's verdict and explanation are stored for every pair; a pair that starts
    matching and is neither manual nor excluded enters (member since ``today``), one that stops matching and
    is neither manual nor excluded leaves, and both are written to the history. Returns (entered, exited)."""
    await conn.execute(_DIFF, low, high, list(segment_ids))
    row = await conn.fetchrow(
        _APPLY, list(segment_ids), [names[s] for s in segment_ids], [versions[s] for s in segment_ids],
        entered_reason, left_reason, today, now,
    )
    return int(row["entered"]), int(row["exited"])


async def announce_chunk(conn: asyncpg.Connection, low: str | None, high: str | None, now: datetime) -> int:
    """One CustomerSegmentsChanged per locked customer whose visible list changed (an entry, an exit, a new
    explanation of an automatic membership), with its complete current list and its bumped version, into the
    outbox (ids ascending, so outbox order is stable). Returns how many."""
    result = await conn.execute(_ANNOUNCE, low, high, topics.SEGMENT_MEMBERSHIPS,
                                _DATETIME.dump_json(now).decode())
    return int(result.split()[-1])
