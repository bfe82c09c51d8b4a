"""redemption_ledger in-process on the real stack: its own schema, consumer group and topic prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import ConsumerRecord

from services.redemption_ledger.app import create_app
from services.redemption_ledger.config import Settings
from shared.contracts import topics as t
from shared.contracts.pos import CouponRedeemed, CouponRedemptionReversed, SaleCompleted, SaleVoided
from tests.conftest import Stack
from tests.helpers import publish, read_topic, running


@dataclass
class Ledger:
    """One running redemption_ledger and what a test needs around it."""

    stack: Stack
    prefix: str
    schema: str
    settings: Settings
    http: httpx.AsyncClient
    app: Any

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stack.api_key}"}

    async def call(self, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, headers=self.auth, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def coupon(self, code: str, **terms: Any) -> dict[str, Any]:
        body = {"code": code, "name": f"Coupon {code}", "discount_type": "percent", "discount_value": "10"} | terms
        return await self.call("POST", "/v1/coupons", json=body, expect=201)  # type: ignore[no-any-return]

    async def send_coupons(self, *events: CouponRedeemed | CouponRedemptionReversed | tuple[bytes, bytes]) -> None:
        await publish(self.stack.kafka, self.prefix + t.POS_COUPON_REDEMPTIONS, [_keyed(e) for e in events])

    async def send_sales(self, *events: SaleCompleted | SaleVoided | tuple[bytes, bytes]) -> None:
        await publish(self.stack.kafka, self.prefix + t.POS_SALES, [_keyed(e) for e in events])

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.stack.database_url, server_settings={"search_path": self.schema})
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def domain_events(self, at_least: int) -> list[tuple[ConsumerRecord, dict[str, Any]]]:
        records = await read_topic(self.stack.kafka, self.prefix + t.COUPON_REDEMPTIONS, at_least=at_least)
        return [(r, orjson.loads(r.value)) for r in records]


def _keyed(event: Any) -> tuple[bytes | None, bytes]:
    if isinstance(event, tuple):
        return event
    key = event.customer_id or event.store_id
    return key.encode(), event.model_dump_json().encode()


LedgerFactory = Callable[..., AbstractAsyncContextManager[Ledger]]


@pytest.fixture
async def ledger_factory(stack: Stack, topics: str, isolation: str) -> AsyncIterator[LedgerFactory]:
    """Start redemption_ledger instances (same schema and group each time: replicas of one service)."""
    schema = f"rl_{isolation}"

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Ledger]:
        settings = Settings(db_schema=schema, consumer_group=f"rl-{isolation}", insights_sweep_interval_s=0,
                            **overrides)
        app = create_app(settings)
        async with running(app) as client:
            yield Ledger(stack, topics, schema, settings, client, app)

    yield start
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def ledger(ledger_factory: LedgerFactory) -> AsyncIterator[Ledger]:
    async with ledger_factory() as running_ledger:
        yield running_ledger


# --- POS events -----------------------------------------------------------------------------------------------


def redeemed(invoice: str, code: str, customer: str | None, *, amount: str = "5.00", currency: str = "USD",
             at: datetime | None = None, store: str = "S-001", event_id: uuid.UUID | None = None) -> CouponRedeemed:
    return CouponRedeemed(event_id=event_id or uuid.uuid4(), occurred_at=at or datetime.now(UTC), store_id=store,
                          register_id="R-01", invoice_number=invoice, customer_id=customer, coupon_code=code,
                          discount_amount=Decimal(amount), currency=currency)


def reversal(invoice: str, code: str, customer: str | None, *, reason: str = "correction",
             at: datetime | None = None) -> CouponRedemptionReversed:
    return CouponRedemptionReversed(event_id=uuid.uuid4(), occurred_at=at or datetime.now(UTC), store_id="S-001",
                                    invoice_number=invoice, coupon_code=code, customer_id=customer,
                                    reason=reason)  # type: ignore[arg-type]


def sale(invoice: str, customer: str | None, *, coupons: tuple[str, ...] = (), at: datetime | None = None,
         total: str = "50.00") -> SaleCompleted:
    return SaleCompleted.model_validate({
        "event_id": str(uuid.uuid4()), "event_type": "sale.completed", "schema_version": 1,
        "occurred_at": (at or datetime.now(UTC)).isoformat(), "store_id": "S-001", "register_id": "R-01",
        "invoice_number": invoice, "customer_id": customer, "currency": "USD",
        "lines": [{"sku": "SKU-1", "category": "Footwear", "quantity": 1, "unit_price": total, "line_total": total}],
        "subtotal": total, "discount_total": "0.00", "tax_total": "0.00", "total": total,
        "coupon_codes": list(coupons), "tenders": [{"type": "cash", "amount": total}],
    })


def void(invoice: str, customer: str | None, *, at: datetime | None = None) -> SaleVoided:
    return SaleVoided(event_id=uuid.uuid4(), occurred_at=at or datetime.now(UTC), store_id="S-001",
                      invoice_number=invoice, customer_id=customer, reason="cashier error")
