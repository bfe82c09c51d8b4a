"""All SQL of giftcard_ledger. Functions run inside the caller's transaction; none commits.

Every change of a card happens while its row is locked (``lock_cards``/``lock_card``), so the outbox ids of
one card grow in commit order, and concurrent redemptions are serialised on the card (the CHECKs and the
ledger trigger are the backstop).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from services.giftcard_ledger.domain import CardState, Entry, EntryType, GiftCard, InvoiceTotals

_CARD_COLUMNS = ("card_id, last4, customer_id, currency, original_balance, current_balance, issued_at, expires_on,"
                 " state, expired_at, deactivated_at, version, last_seq")


def _card(row: asyncpg.Record) -> GiftCard:
    return GiftCard(
        card_id=row["card_id"], last4=row["last4"], customer_id=row["customer_id"], currency=row["currency"],
        original_balance=row["original_balance"], current_balance=row["current_balance"],
        issued_at=row["issued_at"], expires_on=row["expires_on"], state=CardState(row["state"]),
        expired_at=row["expired_at"], deactivated_at=row["deactivated_at"], version=row["version"],
        last_seq=row["last_seq"],
    )


# --- cards ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NumberMatch:
    card_id: str
    number_hmac: bytes
    key_version: str


async def find_by_hmacs(conn: asyncpg.Connection, digests: Sequence[bytes]) -> dict[bytes, NumberMatch]:
    """The cards whose stored HMAC is one of ``digests`` (one query for a whole batch)."""
    if not digests:
        return {}
    rows = await conn.fetch(
        "SELECT card_id, number_hmac, key_version FROM cards WHERE number_hmac = ANY($1::bytea[])", list(digests)
    )
    return {bytes(r["number_hmac"]): NumberMatch(r["card_id"], bytes(r["number_hmac"]), r["key_version"])
            for r in rows}


async def lock_cards(conn: asyncpg.Connection, card_ids: Iterable[str]) -> dict[str, GiftCard]:
    """Lock and load cards, in card_id order (a fixed order: no deadlock between batches)."""
    ids = sorted(set(card_ids))
    if not ids:
        return {}
    rows = await conn.fetch(
        f"SELECT {_CARD_COLUMNS} FROM cards WHERE card_id = ANY($1::text[]) ORDER BY card_id FOR UPDATE", ids
    )
    return {r["card_id"]: _card(r) for r in rows}


async def lock_card(conn: asyncpg.Connection, card_id: str) -> GiftCard | None:
    row = await conn.fetchrow(f"SELECT {_CARD_COLUMNS} FROM cards WHERE card_id = $1 FOR UPDATE", card_id)
    return None if row is None else _card(row)


async def get_card(conn: asyncpg.Connection | asyncpg.Pool, card_id: str) -> GiftCard | None:
    row = await conn.fetchrow(f"SELECT {_CARD_COLUMNS} FROM cards WHERE card_id = $1", card_id)
    return None if row is None else _card(row)


async def insert_card(conn: asyncpg.Connection, card: GiftCard, number_hmac: bytes, key_version: str,
                      issued_via: str) -> bool:
    """Insert a new card (balance 0: its first entry puts the money on it). False if the number is taken."""
    inserted = await conn.fetchval(
        "INSERT INTO cards (card_id, number_hmac, key_version, last4, customer_id, currency, original_balance,"
        " issued_at, expires_on, state, version, issued_via)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " ON CONFLICT (number_hmac) DO NOTHING RETURNING true",
        card.card_id, number_hmac, key_version, card.last4, card.customer_id, card.currency, card.original_balance,
        card.issued_at, card.expires_on, card.state.value, card.version, issued_via,
    )
    return bool(inserted)


async def rekey(conn: asyncpg.Connection, card_id: str, number_hmac: bytes, key_version: str) -> None:
    """Move a card found under a previous key to the current key (lazy rotation)."""
    await conn.execute("UPDATE cards SET number_hmac = $2, key_version = $3 WHERE card_id = $1",
                       card_id, number_hmac, key_version)


async def save_cards(conn: asyncpg.Connection, cards: Iterable[GiftCard]) -> None:
    """Write what the domain changed besides the balance (which only ledger entries move)."""
    cards = list(cards)
    if not cards:
        return
    await conn.execute(
        "UPDATE cards AS c SET customer_id = u.customer_id, state = u.state, expired_at = u.expired_at,"
        " deactivated_at = u.deactivated_at, version = u.version"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::bigint[])"
        " AS u(card_id, customer_id, state, expired_at, deactivated_at, version)"
        " WHERE c.card_id = u.card_id",
        [c.card_id for c in cards], [c.customer_id for c in cards], [c.state.value for c in cards],
        [c.expired_at for c in cards], [c.deactivated_at for c in cards], [c.version for c in cards],
    )


# --- ledger --------------------------------------------------------------------------------------------------


async def insert_entries(conn: asyncpg.Connection, entries: Sequence[Entry]) -> None:
    """Append entries in the given order (per card: seq order; the chain trigger checks it)."""
    if not entries:
        return
    await conn.execute(
        "INSERT INTO ledger_entries (card_id, seq, entry_type, amount, balance_after, occurred_at, store_id,"
        " invoice_number, original_invoice_number, customer_id, actor, reason, source)"
        " SELECT card_id, seq, entry_type, amount, balance_after, occurred_at, store_id, invoice_number,"
        " original_invoice_number, customer_id, actor, reason, source"
        " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::numeric[], $5::numeric[], $6::timestamptz[],"
        " $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])"
        " WITH ORDINALITY AS u(card_id, seq, entry_type, amount, balance_after, occurred_at, store_id,"
        " invoice_number, original_invoice_number, customer_id, actor, reason, source, ord)"
        " ORDER BY ord",
        [e.card_id for e in entries], [e.seq for e in entries], [e.type.value for e in entries],
        [e.amount for e in entries], [e.balance_after for e in entries], [e.occurred_at for e in entries],
        [e.store_id for e in entries], [e.invoice_number for e in entries],
        [e.original_invoice_number for e in entries], [e.customer_id for e in entries],
        [e.actor for e in entries], [e.reason for e in entries], [e.source for e in entries],
    )


async def invoice_totals(conn: asyncpg.Connection,
                         pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], InvoiceTotals]:
    """For (card_id, invoice) pairs: redeemed on that invoice, and refunded against it so far."""
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT p.card_id, p.invoice,"
        " coalesce((SELECT -sum(amount) FROM ledger_entries e WHERE e.card_id = p.card_id"
        "           AND e.entry_type = 'redeem' AND e.invoice_number = p.invoice), 0) AS redeemed,"
        " coalesce((SELECT sum(amount) FROM ledger_entries e WHERE e.card_id = p.card_id"
        "           AND e.entry_type = 'refund' AND e.original_invoice_number = p.invoice), 0) AS refunded"
        " FROM unnest($1::text[], $2::text[]) AS p(card_id, invoice)",
        [c for c, _ in wanted], [i for _, i in wanted],
    )
    return {(r["card_id"], r["invoice"]): InvoiceTotals(Decimal(r["redeemed"]), Decimal(r["refunded"]))
            for r in rows}


@dataclass(frozen=True, slots=True)
class EntryRow:
    seq: int
    type: EntryType
    amount: Decimal
    balance_after: Decimal
    occurred_at: datetime
    recorded_at: datetime
    store_id: str | None
    invoice_number: str | None
    original_invoice_number: str | None
    customer_id: str | None
    actor: str
    reason: str | None
    source: str


async def entries_page(conn: asyncpg.Connection | asyncpg.Pool, card_id: str, *, before_seq: int | None,
                       limit: int) -> list[EntryRow]:
    """A card's entries, newest first, those before ``before_seq`` (keyset pagination)."""
    rows = await conn.fetch(
        "SELECT seq, entry_type, amount, balance_after, occurred_at, recorded_at, store_id, invoice_number,"
        " original_invoice_number, customer_id, actor, reason, source FROM ledger_entries"
        " WHERE card_id = $1 AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3",
        card_id, before_seq, limit,
    )
    return [EntryRow(r["seq"], EntryType(r["entry_type"]), r["amount"], r["balance_after"], r["occurred_at"],
                     r["recorded_at"], r["store_id"], r["invoice_number"], r["original_invoice_number"],
                     r["customer_id"], r["actor"], r["reason"], r["source"]) for r in rows]


# --- reports -------------------------------------------------------------------------------------------------


async def customer_cards(conn: asyncpg.Connection | asyncpg.Pool, customer_id: str, *,
                         after: tuple[datetime, str] | None, limit: int) -> list[GiftCard]:
    """A customer's cards, newest issue first (keyset on issued_at, card_id)."""
    rows = await conn.fetch(
        f"SELECT {_CARD_COLUMNS} FROM cards WHERE customer_id = $1"
        " AND ($2::timestamptz IS NULL OR (issued_at, card_id) < ($2, $3))"
        " ORDER BY issued_at DESC, card_id DESC LIMIT $4",
        customer_id, after[0] if after else None, after[1] if after else None, limit,
    )
    return [_card(r) for r in rows]


async def expiring_cards(conn: asyncpg.Connection | asyncpg.Pool, *, first_day: date, last_day: date,
                         after: tuple[date, str] | None, limit: int) -> list[GiftCard]:
    """Open cards with a balance whose expiration date falls within [first_day, last_day]."""
    rows = await conn.fetch(
        f"SELECT {_CARD_COLUMNS} FROM cards WHERE state = 'open' AND current_balance > 0"
        " AND expires_on BETWEEN $1 AND $2"
        " AND ($3::date IS NULL OR (expires_on, card_id) > ($3, $4))"
        " ORDER BY expires_on, card_id LIMIT $5",
        first_day, last_day, after[0] if after else None, after[1] if after else None, limit,
    )
    return [_card(r) for r in rows]


async def lock_cards_to_expire(conn: asyncpg.Connection, business_date: date, limit: int) -> list[GiftCard]:
    """Open cards whose expiration date is before ``business_date``, locked."""
    rows = await conn.fetch(
        f"SELECT {_CARD_COLUMNS} FROM cards WHERE state = 'open' AND expires_on < $1"
        " ORDER BY card_id LIMIT $2 FOR UPDATE",
        business_date, limit,
    )
    return [_card(r) for r in rows]


# --- rejections ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RejectionRow:
    event_id: Any
    event_type: str
    reason: str
    detail: str
    card_id: str | None
    last4: str
    amount: Decimal | None
    currency: str | None
    store_id: str | None
    invoice_number: str | None
    occurred_at: datetime


async def insert_rejections(conn: asyncpg.Connection, rows: Sequence[RejectionRow]) -> None:
    if not rows:
        return
    await conn.execute(
        "INSERT INTO rejections (event_id, event_type, reason, detail, card_id, last4, amount, currency, store_id,"
        " invoice_number, occurred_at)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::numeric[], $8::text[], $9::text[], $10::text[], $11::timestamptz[])"
        " ON CONFLICT (event_id) DO NOTHING",
        [r.event_id for r in rows], [r.event_type for r in rows], [r.reason for r in rows],
        [r.detail for r in rows], [r.card_id for r in rows], [r.last4 for r in rows], [r.amount for r in rows],
        [r.currency for r in rows], [r.store_id for r in rows], [r.invoice_number for r in rows],
        [r.occurred_at for r in rows],
    )


async def rejections_of_card(conn: asyncpg.Connection | asyncpg.Pool, card_id: str,
                             limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT event_id, event_type, reason, detail, amount, currency, store_id, invoice_number, occurred_at,"
        " recorded_at FROM rejections WHERE card_id = $1 ORDER BY id DESC LIMIT $2",
        card_id, limit,
    )


# --- idempotency ---------------------------------------------------------------------------------------------


async def claim_idempotency_key(conn: asyncpg.Connection, key: str, request_hash: bytes, method: str,
                                path: str) -> bool:
    """True if this transaction now owns the key. A concurrent holder makes this wait for its outcome."""
    claimed = await conn.fetchval(
        "INSERT INTO idempotency_keys (idempotency_key, request_hash, method, path) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING true",
        key, request_hash, method, path,
    )
    return bool(claimed)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: bytes
    status_code: int
    response: Any


async def stored_response(conn: asyncpg.Connection, key: str) -> StoredResponse | None:
    row = await conn.fetchrow(
        "SELECT request_hash, status_code, response FROM idempotency_keys WHERE idempotency_key = $1", key
    )
    if row is None or row["status_code"] is None:
        return None
    return StoredResponse(bytes(row["request_hash"]), row["status_code"], row["response"])


async def complete_idempotency_key(conn: asyncpg.Connection, key: str, status_code: int, response: Any) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET status_code = $2, response = $3 WHERE idempotency_key = $1",
        key, status_code, response,
    )


async def forget_idempotency_keys(conn: asyncpg.Connection | asyncpg.Pool, older_than: datetime) -> int:
    result = await conn.execute("DELETE FROM idempotency_keys WHERE created_at < $1", older_than)
    return int(result.split()[-1])
