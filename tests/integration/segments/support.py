"""Helpers for segment_engine tests on the real stack: POS/CRM event builders, the app in-process, waits."""

from __future__ import annotations

import asyncio
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
from aiokafka import AIOKafkaConsumer

from services.segment_engine.app import create_app
from services.segment_engine.config import Settings
from shared.clock import FixedClock
from shared.contracts import topics as t
from shared.contracts.codec import decode
from shared.contracts.domain import CustomerSegmentsChanged
from shared.kafka import delete_topics
from tests.conftest import Stack
from tests.helpers import eventually, publish, read_topic, running

# Noon in New York on a Monday in June: far from any day boundary unless a test moves it there.
NOW = datetime(2026, 6, 15, 16, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def sale(customer_id: str | None, invoice: str, at: datetime, total: str = "25.00", *, store: str = "S-001",
         lines: list[tuple[str, int, str]] | None = None) -> dict[str, Any]:
    lines = lines or [("Footwear", 1, total)]
    return {
        "event_id": str(uuid.uuid4()), "event_type": "sale.completed", "schema_version": 1, "occurred_at": iso(at),
        "store_id": store, "register_id": "R-1", "invoice_number": invoice, "customer_id": customer_id,
        "currency": "USD",
        "lines": [{"sku": f"SKU-{i}", "category": c, "quantity": q, "unit_price": amount, "line_total": amount}
                  for i, (c, q, amount) in enumerate(lines)],
        "subtotal": total, "discount_total": "0.00", "tax_total": "0.00", "total": total, "coupon_codes": [],
        "tenders": [{"type": "cash", "amount": total}],
    }


def void(customer_id: str | None, invoice: str, at: datetime, store: str = "S-001") -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": "sale.voided", "schema_version": 1, "occurred_at": iso(at),
            "store_id": store, "invoice_number": invoice, "customer_id": customer_id, "reason": "test"}


def returned(customer_id: str, return_invoice: str, original: str, at: datetime, refund: str, *,
             quantity: int = 1, category: str = "Footwear", store: str = "S-001") -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()), "event_type": "sale.returned", "schema_version": 1, "occurred_at": iso(at),
        "store_id": store, "invoice_number": return_invoice, "original_invoice_number": original,
        "customer_id": customer_id, "currency": "USD",
        "lines": [{"sku": "SKU-0", "category": category, "quantity": quantity, "line_total": refund}],
        "refund_total": refund,
    }


def registered(customer_id: str, at: datetime, tier: str | None = None) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": "customer.registered", "schema_version": 1,
            "occurred_at": iso(at), "store_id": None, "customer_id": customer_id, "registered_at": iso(at),
            "home_store_id": "S-001", "loyalty_tier": tier}


def tier_changed(customer_id: str, at: datetime, tier: str, previous: str | None = None) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": "customer.loyalty_tier_changed", "schema_version": 1,
            "occurred_at": iso(at), "store_id": None, "customer_id": customer_id, "tier": tier,
            "previous_tier": previous}


def days_ago(n: float, *, base: datetime = NOW) -> datetime:
    return base - timedelta(days=n)


@dataclass
class Engine:
    """segment_engine running in-process on its own schema and topic prefix, with a clock the test moves."""

    stack: Stack
    prefix: str
    schema: str
    clock: FixedClock
    http: httpx.AsyncClient
    app: Any

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stack.api_key}"}

    async def send(self, topic: str, *events: dict[str, Any]) -> None:
        await publish(self.stack.kafka, self.prefix + topic, [
            ((e.get("customer_id") or e.get("store_id") or "anon").encode(), orjson.dumps(e)) for e in events
        ])

    async def sales(self, *events: dict[str, Any]) -> None:
        await self.send(t.POS_SALES, *events)

    async def crm(self, *events: dict[str, Any]) -> None:
        await self.send(t.CRM_CUSTOMERS, *events)

    async def db(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.stack.database_url, server_settings={"search_path": self.schema})
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(path, headers=self.headers, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def call(self, method: str, path: str, expect: int | tuple[int, ...] = (200, 201, 202), **kw: Any) -> Any:
        response = await self.http.request(method, path, headers=self.headers, **kw)
        expected = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in expected, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def segment_names(self, customer_id: str) -> list[str]:
        body = await self.get(f"/v1/customers/{customer_id}/segments")
        return sorted(s["name"] for s in body["segments"])

    async def wait_for_segments(self, customer_id: str, names: list[str], what: str = "") -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            body = await self.get(f"/v1/customers/{customer_id}/segments")
            got = sorted(s["name"] for s in body["segments"])
            assert got == sorted(names), f"{customer_id}: {got}"
            return body

        return await eventually(check, timeout_s=30, what=what or f"{customer_id} in {names}")

    async def wait_applied(self, n_events: int) -> None:
        """Wait until the consumer applied at least ``n_events`` events (the inbox counts them)."""
        async def check() -> bool:
            rows = await self.db("SELECT count(*) AS n FROM processed_messages")
            return rows[0]["n"] >= n_events

        await eventually(check, timeout_s=30, what=f"{n_events} events applied")

    async def run_job(self, job: dict[str, Any]) -> dict[str, Any]:
        async def finished() -> dict[str, Any] | None:
            body = await self.get(f"/v1/segments/jobs/{job['job_id']}")
            return body if body["finished"] else None

        done = await eventually(finished, timeout_s=60, what=f"job {job['job_id']} finished")
        assert done["status"] == "done", done
        return done

    async def sweep(self, as_of: datetime | None = None) -> dict[str, Any]:
        body = {"as_of": iso(as_of)} if as_of else {}
        return await self.run_job(await self.call("POST", "/v1/segments/sweep", json=body, expect=202))

    async def announced(self, at_least: int) -> list[CustomerSegmentsChanged]:
        records = await read_topic(self.stack.kafka, self.prefix + t.SEGMENT_MEMBERSHIPS, at_least=at_least)
        return [decode(t.SEGMENT_MEMBERSHIPS, r.value) for r in records]

    async def latest_announcement(self, customer_id: str, *, at_least: int = 1) -> CustomerSegmentsChanged:
        events = [e for e in await self.announced(at_least) if e.customer_id == customer_id]
        assert events, f"nothing announced for {customer_id}"
        return max(events, key=lambda e: e.version)

    async def all_announcements(self) -> list[CustomerSegmentsChanged]:
        """Every announcement, once the outbox is empty: read until the topic stays quiet for a second."""
        async def drained() -> bool:
            return (await self.db("SELECT count(*) AS n FROM outbox"))[0]["n"] == 0

        await eventually(drained, timeout_s=30, what="outbox drained")
        consumer = AIOKafkaConsumer(self.prefix + t.SEGMENT_MEMBERSHIPS, bootstrap_servers=self.stack.kafka,
                                    group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        records = []
        try:
            quiet_since = asyncio.get_running_loop().time()
            while asyncio.get_running_loop().time() - quiet_since < 1.0:
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records.extend(part)
                if any(batch.values()):
                    quiet_since = asyncio.get_running_loop().time()
        finally:
            await consumer.stop()
        return [decode(t.SEGMENT_MEMBERSHIPS, r.value) for r in records]

    async def history(self, customer_id: str) -> list[dict[str, Any]]:
        return (await self.get(f"/v1/customers/{customer_id}/segments/history"))["items"]


@asynccontextmanager
async def engine(stack: Stack, prefix: str, isolation: str, *, defaults: bool = True, now: datetime = NOW,
                 keep_schema: bool = False, **overrides: Any) -> AsyncIterator[Engine]:
    """The service in-process; its schema is dropped afterwards unless ``keep_schema`` (for a restart)."""
    schema = f"segment_engine_{isolation}"
    settings = Settings(db_schema=schema, consumer_group=f"segment-engine-{isolation}", sweep_on_start=False,
                        sweep_interval_s=3600, job_poll_s=0.2, load_default_segments=defaults, **overrides)
    clock = FixedClock(now)
    app = create_app(settings, clock=clock)
    try:
        async with running(app) as http:
            yield Engine(stack, prefix, schema, clock, http, app)
    finally:
        if not keep_schema:
            conn = await asyncpg.connect(stack.database_url)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()
            await delete_topics(stack.kafka, prefix)


def money(value: str) -> Decimal:
    return Decimal(value)
