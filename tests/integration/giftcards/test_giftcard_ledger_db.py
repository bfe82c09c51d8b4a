"""The database enforces the ledger's invariants by itself, whatever the code does: entries are append-only,
each continues its card's chain, balances never go below zero, the balance moves only through entries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from services.giftcard_ledger.app import MIGRATIONS
from shared.db import migrate
from tests.conftest import Stack

CARD = "gc_" + "A" * 22
NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


@pytest.fixture
async def db(stack: Stack, isolation: str) -> AsyncIterator[asyncpg.Connection]:
    schema = f"giftcards_db_{isolation}"
    await migrate(stack.database_url, schema, MIGRATIONS)
    conn = await asyncpg.connect(stack.database_url, server_settings={"search_path": schema})
    try:
        async with conn.transaction():
            await new_card(conn, CARD, "50.00")
        yield conn
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def new_card(conn: asyncpg.Connection, card_id: str, amount: str) -> None:
    await conn.execute(
        "INSERT INTO cards (card_id, number_hmac, key_version, last4, currency, original_balance, issued_at, version,"
        " issued_via) VALUES ($1, $2, 'k1', '4821', 'USD', $3::numeric, $4, 1, 'api')",
        card_id, uuid.uuid4().bytes * 2, amount, NOW,
    )
    await entry(conn, card_id, 1, "issue", amount, amount)


async def entry(conn: asyncpg.Connection, card_id: str, seq: int, kind: str, amount: str, after: str,
                **extra: Any) -> None:
    columns = ", ".join(extra)
    values = ", ".join(f"${i}" for i in range(7, 7 + len(extra)))
    await conn.execute(
        f"INSERT INTO ledger_entries (card_id, seq, entry_type, amount, balance_after, occurred_at, actor, source"
        f"{', ' + columns if extra else ''}) VALUES ($1, $2, $3, $4::numeric, $5::numeric, $6, 'test',"
        f" '{kind}:{seq}:{uuid.uuid4().hex}'{', ' + values if extra else ''})",
        card_id, seq, kind, amount, after, NOW, *extra.values(),
    )


async def refused(conn: asyncpg.Connection, sql: str, *args: Any, match: str) -> None:
    with pytest.raises(asyncpg.PostgresError, match=match):
        async with conn.transaction():
            await conn.execute(sql, *args)


async def balance(conn: asyncpg.Connection) -> str:
    return str(await conn.fetchval("SELECT current_balance FROM cards WHERE card_id = $1", CARD))


async def test_entries_are_append_only(db: asyncpg.Connection) -> None:
    await refused(db, "UPDATE ledger_entries SET amount = 500", match="append-only")
    await refused(db, "DELETE FROM ledger_entries", match="append-only")
    await refused(db, "TRUNCATE ledger_entries", match="append-only")
    await refused(db, "DELETE FROM cards", match="append-only")
    await db.execute("INSERT INTO rejections (event_id, event_type, reason, detail, last4, occurred_at)"
                     " VALUES ($1, 'giftcard.redeemed', 'unknown_card', 'no such card', '4821', now())", uuid.uuid4())
    await refused(db, "DELETE FROM rejections", match="append-only")
    await refused(db, "UPDATE rejections SET reason = 'ok'", match="append-only")
    await refused(db, "TRUNCATE rejections", match="append-only")
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 1


async def test_an_entry_moves_the_balance_and_must_continue_the_chain(db: asyncpg.Connection) -> None:
    async with db.transaction():
        await entry(db, CARD, 2, "redeem", "-20.00", "30.00", invoice_number="INV-1")
    assert await balance(db) == "30.00"

    async def insert(*args: Any, match: str, **extra: Any) -> None:
        with pytest.raises(asyncpg.PostgresError, match=match):
            async with db.transaction():
                await entry(db, CARD, *args, **extra)

    await insert(3, "redeem", "-5.00", "26.00", match="balance after")  # not 30 - 5
    await insert(4, "redeem", "-5.00", "25.00", match="does not follow")  # skips seq 3
    await insert(2, "redeem", "-5.00", "25.00", match="does not follow|duplicate key")  # seq taken
    await insert(3, "redeem", "-30.01", "-0.01", match="balance_after_check|check")  # below zero
    await insert(3, "redeem", "5.00", "35.00", match="check")  # a redemption takes money
    await insert(3, "expire", "1.00", "31.00", match="check")  # lifecycle entries move no money
    await insert(3, "refund", "20.01", "50.01", match="exceed", original_invoice_number="INV-1")
    await insert(3, "refund", "1.00", "31.00", match="exceed", original_invoice_number="INV-404")
    async with db.transaction():
        await entry(db, CARD, 3, "refund", "20.00", "50.00", original_invoice_number="INV-1")
    await insert(4, "refund", "0.01", "50.01", match="exceed", original_invoice_number="INV-1")
    assert await balance(db) == "50.00"
    total = await db.fetchval("SELECT sum(amount) FROM ledger_entries WHERE card_id = $1", CARD)
    last = await db.fetchval("SELECT balance_after FROM ledger_entries WHERE card_id = $1 ORDER BY seq DESC LIMIT 1",
                             CARD)
    assert str(total) == str(last) == "50.00"


async def test_the_balance_moves_only_through_the_ledger(db: asyncpg.Connection) -> None:
    await refused(db, "UPDATE cards SET current_balance = 1000", match="only through ledger entries")
    await refused(db, "UPDATE cards SET current_balance = -1", match="only through ledger entries|check")
    await refused(db, "UPDATE cards SET original_balance = 10", match="never change")
    await refused(db, "UPDATE cards SET currency = 'EUR'", match="never change")
    await refused(db, "UPDATE cards SET version = 0", match="cannot go back|check")
    async with db.transaction():
        await db.execute("UPDATE cards SET state = 'deactivated', deactivated_at = now(), version = 2")
    await refused(db, "UPDATE cards SET state = 'open'", match="permanent")
    assert await balance(db) == "50.00"


async def test_a_card_cannot_commit_without_its_first_entry(db: asyncpg.Connection) -> None:
    other = "gc_" + "B" * 22
    with pytest.raises(asyncpg.PostgresError, match="first entry"):
        async with db.transaction():
            await db.execute(
                "INSERT INTO cards (card_id, number_hmac, key_version, last4, currency, original_balance, issued_at,"
                " version, issued_via) VALUES ($1, $2, 'k1', '0001', 'USD', 10, $3, 1, 'api')",
                other, uuid.uuid4().bytes * 2, NOW,
            )
    await refused(db, "INSERT INTO cards (card_id, number_hmac, key_version, last4, currency, original_balance,"
                      " current_balance, issued_at, version, issued_via)"
                      " VALUES ($1, $2, 'k1', '0001', 'USD', 10, 10, $3, 1, 'api')",
                  other, uuid.uuid4().bytes * 2, NOW, match="starts at balance 0")
    with pytest.raises(asyncpg.PostgresError, match="first entry"):
        async with db.transaction():
            await db.execute(
                "INSERT INTO cards (card_id, number_hmac, key_version, last4, currency, original_balance, issued_at,"
                " version, issued_via) VALUES ($1, $2, 'k1', '0001', 'USD', 10, $3, 1, 'api')",
                other, uuid.uuid4().bytes * 2, NOW,
            )
            await entry(db, other, 1, "issue", "9.00", "9.00")  # not the original balance
    async with db.transaction():
        await new_card(db, other, "10.00")
    assert await db.fetchval("SELECT current_balance FROM cards WHERE card_id = $1", other) == 10


async def test_one_statement_of_many_entries_is_checked_as_a_whole(db: asyncpg.Connection) -> None:
    other = "gc_" + "C" * 22
    async with db.transaction():
        await new_card(db, other, "10.00")

    async def insert_many(rows: list[tuple[str, int, str, str, str]]) -> None:
        async with db.transaction():
            await db.execute(
                "INSERT INTO ledger_entries (card_id, seq, entry_type, amount, balance_after, occurred_at, actor,"
                " source, invoice_number)"
                " SELECT c, s, t, a::numeric, b::numeric, $6, 'test', 'src:' || c || ':' || s, 'INV-M'"
                " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[]) AS u(c, s, t, a, b)",
                [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
                [r[4] for r in rows], NOW,
            )

    with pytest.raises(asyncpg.PostgresError, match="balance after"):
        await insert_many([(CARD, 2, "redeem", "-5.00", "45.00"), (CARD, 3, "redeem", "-5.00", "41.00"),
                           (other, 2, "reload", "1.00", "11.00")])
    with pytest.raises(asyncpg.PostgresError, match="does not follow"):
        await insert_many([(CARD, 2, "redeem", "-5.00", "45.00"), (CARD, 4, "redeem", "-5.00", "40.00")])
    with pytest.raises(asyncpg.PostgresError, match="check"):
        await insert_many([(CARD, 2, "redeem", "-30.00", "20.00"), (CARD, 3, "redeem", "-30.00", "-10.00")])
    assert await balance(db) == "50.00", "a refused statement leaves nothing behind"
    await insert_many([(CARD, 2, "redeem", "-5.00", "45.00"), (other, 2, "reload", "1.00", "11.00"),
                       (CARD, 3, "reload", "2.50", "47.50"), (CARD, 4, "redeem", "-47.50", "0.00")])
    assert await balance(db) == "0.00"
    assert await db.fetchval("SELECT current_balance FROM cards WHERE card_id = $1", other) == 11
    assert await db.fetchval("SELECT last_seq FROM cards WHERE card_id = $1", CARD) == 4
