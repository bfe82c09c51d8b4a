"""giftcard_ledger run in-process on the real stack, with its own schema, topic prefix and a fixed clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI

from services.giftcard_ledger.app import create_app
from services.giftcard_ledger.config import Settings
from shared.clock import FixedClock
from shared.contracts import topics as t
from shared.kafka import delete_topics
from tests.conftest import POS_EXAMPLES, Stack
from tests.helpers import eventually, publish, read_topic, running

START = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)

_FALLBACK = {
    "giftcard.activated": {"customer_id": "C-10042", "expires_on": None},
    "giftcard.reloaded": {"customer_id": "C-10042"},
    "giftcard.redeemed": {"customer_id": "C-10042"},
    "giftcard.refunded": {"original_invoice_number": "INV-0"},
}


def pos_event(event_type: str, card_number: str, *, amount: str = "10.00", clock: FixedClock | None = None,
              **fields: Any) -> dict[str, Any]:
    """A POS gift card event like the contract's examples, with a fresh event_id."""
    path = POS_EXAMPLES / f"{event_type}.json"
    event: dict[str, Any] = orjson.loads(path.read_bytes()) if path.exists() else {
        "event_type": event_type, "schema_version": 1, "store_id": "S-001", "currency": "USD",
        "invoice_number": "INV-1", **_FALLBACK[event_type],
    }
    moment = (clock.now() if clock else START) - timedelta(minutes=1)
    invoice = fields.pop("invoice_number", f"INV-{uuid.uuid4().hex[:8]}")
    event.update(event_id=str(uuid.uuid4()), card_number=card_number, amount=amount,
                 occurred_at=moment.isoformat(), invoice_number=invoice)
    event.update(fields)
    return event


def card_number() -> str:
    return str(uuid.uuid4().int)[:16]


@dataclass
class Ledger:
    """The service under test and ways to look at it."""

    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings
    stack: Stack
    prefix: str
    clock: FixedClock
    auth: dict[str, str]

    @property
    def schema(self) -> str:
        return self.settings.db_schema

    async def publish(self, *events: dict[str, Any], raw: list[tuple[bytes | None, bytes]] | None = None) -> None:
        messages = [(e["card_number"].encode(), orjson.dumps(e)) for e in events] + (raw or [])
        await publish(self.stack.kafka, self.prefix + t.POS_GIFTCARD_ACTIVITY, messages)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.stack.database_url,
                                     server_settings={"search_path": self.schema})
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def processed(self, *events: dict[str, Any], timeout_s: float = 30) -> None:
        """Wait until the consumer recorded these events (applied or rejected)."""
        ids = [uuid.UUID(e["event_id"]) for e in events]

        async def done() -> bool:
            rows = await self.fetch("SELECT count(*) AS n FROM processed_messages WHERE event_id = ANY($1::uuid[])",
                                    ids)
            return rows[0]["n"] == len(set(ids))

        await eventually(done, timeout_s=timeout_s, what=f"{len(ids)} POS events processed")

    async def card_by_number(self, number: str) -> dict[str, Any] | None:
        r = await self.http.post("/v1/gift-cards/lookup", json={"card_number": number}, headers=self.auth)
        return r.json() if r.status_code == 200 else None

    async def entries(self, card_id: str) -> list[asyncpg.Record]:
        return await self.fetch("SELECT * FROM ledger_entries WHERE card_id = $1 ORDER BY seq", card_id)

    async def balance_consistent(self, card_id: str) -> Decimal:
        """The card's balance, after checking it equals the sum of its entries and the last balance_after."""
        card = (await self.fetch("SELECT current_balance FROM cards WHERE card_id = $1", card_id))[0]
        entries = await self.entries(card_id)
        assert card["current_balance"] == sum((e["amount"] for e in entries), Decimal("0"))
        assert card["current_balance"] == entries[-1]["balance_after"]
        assert all(e["balance_after"] >= 0 for e in entries)
        return Decimal(card["current_balance"])

    async def post(self, path: str, body: Any = None, *, key: str | None = None) -> httpx.Response:
        headers = {**self.auth, "Idempotency-Key": key or uuid.uuid4().hex}
        return await self.http.post(path, json=body, headers=headers)

    async def topic(self, name: str, *, at_least: int) -> list[Any]:
        return await read_topic(self.stack.kafka, self.prefix + name, at_least=at_least)


def make_settings(isolation: str, **overrides: Any) -> Settings:
    options: dict[str, Any] = {"db_schema": f"giftcards_{isolation}", "consumer_group": f"giftcards-{isolation}"}
    return Settings(**(options | overrides))


@asynccontextmanager
async def start_ledger(stack: Stack, prefix: str, isolation: str, clock: FixedClock, *, drop: bool = True,
                       **overrides: Any) -> AsyncIterator[Ledger]:
    """Run the service in-process; drop its schema afterwards (unless another replica still uses it)."""
    settings = make_settings(isolation, **overrides)
    app = create_app(settings, clock=clock)
    try:
        async with running(app) as http:
            yield Ledger(app, http, settings, stack, prefix, clock, {"Authorization": f"Bearer {stack.api_key}"})
    finally:
        if drop:
            await drop_schema(stack, settings.db_schema)


async def drop_schema(stack: Stack, schema: str) -> None:
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
async def _drop_own_topics(request: pytest.FixtureRequest, stack: Stack, isolation: str) -> AsyncIterator[None]:
    """Runs last at teardown (autouse fixtures are set up first): the service has stopped by then."""
    yield
    if "topics" in request.fixturenames:
        await delete_topics(stack.kafka, f"t{isolation}.")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
async def ledger(stack: Stack, topics: str, isolation: str, clock: FixedClock) -> AsyncIterator[Ledger]:
    async with start_ledger(stack, topics, isolation, clock) as service:
        yield service
