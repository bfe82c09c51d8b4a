"""The per-customer path (Python over one customer's facts) and the set-based path (SQL over the facts tables)
mean the same thing: for random rules and random histories, on real Postgres, they agree on who matches and
on the explanation, word for word. Hypothesis prints the failing example and its seed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.segment_engine import store
from services.segment_engine.app import MIGRATIONS
from services.segment_engine.compiler import compile_rule
from services.segment_engine.sqlgen import evaluation_query
from shared.db import create_pool, migrate
from tests.conftest import Stack
from tests.integration.segments.strategies import TODAY, Customer, customers, rules


class Db:
    def __init__(self, loop: asyncio.AbstractEventLoop, pool: asyncpg.Pool) -> None:
        self.loop = loop
        self.pool = pool

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)


@pytest.fixture(scope="module")
def db(stack: Stack) -> Iterator[Db]:
    loop = asyncio.new_event_loop()
    schema = f"segprop_{uuid.uuid4().hex[:10]}"
    loop.run_until_complete(migrate(stack.database_url, schema, MIGRATIONS))
    pool = loop.run_until_complete(create_pool(stack.database_url, schema, max_size=2))
    try:
        yield Db(loop, pool)
    finally:
        loop.run_until_complete(pool.execute(f'DROP SCHEMA "{schema}" CASCADE'))
        loop.run_until_complete(pool.close())
        loop.close()


async def load(pool: asyncpg.Pool, history: list[Customer]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("TRUNCATE customers, invoices, invoice_returns")
        await store.ensure_customers(conn, [c.customer_id for c in history])
        for c in history:
            await conn.execute("UPDATE customers SET signup_day = $2, loyalty_tier = $3 WHERE customer_id = $1",
                               c.customer_id, c.signup, c.tier)
            for s in c.sales:
                # Voids and returns sometimes before the sale: the facts must not depend on arrival order.
                early = hash(s.invoice) % 2 == 0
                if early:
                    await _after_sale(conn, c.customer_id, s)
                await store.apply_sale(conn, invoice_number=s.invoice, customer_id=c.customer_id, store_id=s.store,
                                       business_day=s.day, occurred_at=_at(s), total=s.total, units=s.units,
                                       categories=s.categories)
                if not early:
                    await _after_sale(conn, c.customer_id, s)


async def _after_sale(conn: asyncpg.Connection, customer_id: str, s) -> None:  # type: ignore[no-untyped-def]
    if s.voided:
        await store.apply_void(conn, invoice_number=s.invoice, customer_id=customer_id)
    for n, (units, refund) in enumerate(s.returns):
        if units:
            await store.apply_return(conn, return_invoice_number=f"R-{s.invoice}-{n}",
                                     original_invoice_number=s.invoice, customer_id=customer_id,
                                     refund_total=refund.quantize(refund.__class__("0.01")), units=units,
                                     occurred_at=_at(s))


def _at(s):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, time

    return datetime.combine(s.day, time(12), tzinfo=UTC)


async def both_paths(pool: asyncpg.Pool, docs: list[dict], today) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    compiled = [compile_rule(d) for d in docs]
    async with pool.acquire() as conn:
        query = evaluation_query(compiled, today)
        set_based = {r["customer_id"]: list(r["notes"]) for r in await store.run_query(conn, query)}
        facts = await store.load_facts(conn, list(set_based))
    per_customer = {cid: [c.evaluate(f, today) for c in compiled] for cid, f in facts.items()}
    return per_customer, set_based


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
          print_blob=True)
@given(rule=rules, history=customers(), shift=st.integers(min_value=-3, max_value=3))
def test_per_customer_and_set_based_paths_agree(db: Db, rule: dict, history: list[Customer], shift: int) -> None:
    from datetime import timedelta

    today = TODAY + timedelta(days=shift)
    db.run(load(db.pool, history))
    per_customer, set_based = db.run(both_paths(db.pool, [rule], today))
    matched = sum(1 for notes in set_based.values() if notes[0] is not None)
    event("matches: " + ("none" if matched == 0 else "all" if matched == len(set_based) else "some"))
    event("explains an amount of $1,000.00 or more: "
          + str(any(n[0] and "Spent $" in n[0] and "," in n[0].split("Spent $")[1][:6] for n in set_based.values())))
    assert per_customer == set_based


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
          print_blob=True)
@given(docs=st.lists(rules, min_size=2, max_size=4), history=customers())
def test_many_rules_in_one_statement_agree_with_each_alone(db: Db, docs: list[dict], history: list[Customer]) -> None:
    """A sweep evaluates every segment in one statement (metrics shared between rules): same answers."""
    db.run(load(db.pool, history))
    per_customer, together = db.run(both_paths(db.pool, docs, TODAY))
    assert per_customer == together
    for i, doc in enumerate(docs):
        _, alone = db.run(both_paths(db.pool, [doc], TODAY))
        assert {c: n[0] for c, n in alone.items()} == {c: n[i] for c, n in together.items()}
