"""Read the final state of the services under test and compare it with the oracle: lost and doubled effects."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from tests.reliability.harness import World
from tests.reliability.oracle import Expected


@dataclass
class Diff:
    lost: int = 0
    doubled: int = 0
    wrong: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.doubled and not self.wrong

    def __str__(self) -> str:
        return f"lost={self.lost} doubled={self.doubled} wrong={len(self.wrong)} {self.wrong[:10]}"


async def ledgers(world: World, exp: Expected) -> Diff:
    """Gift card balances and entry counts, rejections, coupon redemptions and reversals, segment facts."""
    diff = Diff()
    conn = await asyncpg.connect(world.stack.database_url)
    try:
        gs, rs, ss = (f'"{s}_{world.tag}"' for s in ("giftcard_ledger", "redemption_ledger", "segment_engine"))
        rows = await conn.fetch(f"SELECT number_hmac, current_balance, last_seq FROM {gs}.cards")
        actual = {bytes(r["number_hmac"]): (r["current_balance"], r["last_seq"]) for r in rows}
        counts = dict(await conn.fetch(f"SELECT card_id, count(*) FROM {gs}.ledger_entries GROUP BY card_id"))
        by_hmac = {bytes(r["number_hmac"]): r["card_id"] for r in
                   await conn.fetch(f"SELECT number_hmac, card_id FROM {gs}.cards")}
        for h, (balance, entries) in exp.giftcard_state(world.hmac_key).items():
            got = actual.get(h)
            if got is None:
                diff.lost += entries
                continue
            n = counts.get(by_hmac[h], 0)
            if n != entries or got[1] != entries:
                diff.lost += max(0, entries - n)
                diff.doubled += max(0, n - entries)
            if got[0] != balance:
                diff.wrong.append(f"card balance {got[0]} != {balance}")
        diff.doubled += max(0, len(actual) - len(exp.cards))
        rejections = await conn.fetchval(f"SELECT count(*) FROM {gs}.rejections")
        if rejections != exp.rejections:
            diff.lost += max(0, exp.rejections - rejections)
            diff.doubled += max(0, rejections - exp.rejections)

        rows = await conn.fetch(
            f"SELECT r.invoice_number, r.coupon_code, x.redemption_id IS NOT NULL AS reversed "
            f"FROM {rs}.redemptions r LEFT JOIN {rs}.redemption_reversals x USING (redemption_id)")
        coupons = {(r["invoice_number"], r["coupon_code"]): r["reversed"] for r in rows}
        expected = exp.coupon_state()
        diff.lost += len(expected.keys() - coupons.keys())
        diff.doubled += len(coupons.keys() - expected.keys()) + max(0, len(rows) - len(coupons))
        diff.wrong += [f"coupon {k} reversed={coupons[k]} expected {v}" for k, v in expected.items()
                       if k in coupons and coupons[k] != v]

        customers = {r[0] for r in await conn.fetch(f"SELECT customer_id FROM {ss}.customers")}
        rows = await conn.fetch(f"SELECT invoice_number, voided, returned_total FROM {ss}.invoices WHERE has_sale")
        invoices = {r[0] for r in rows}
        expected_invoices = exp.invoice_state()
        for r in rows:
            want = expected_invoices.get(r[0])
            if want is not None and (r["voided"], r["returned_total"]) != want:
                if r["returned_total"] > want[1]:
                    diff.doubled += 1
                diff.wrong.append(f"invoice {r[0]} voided/returned {(r['voided'], r['returned_total'])} != {want}")
        returns = {r[0] for r in await conn.fetch(f"SELECT return_invoice_number FROM {ss}.invoice_returns")}
        for name, want, got_set in (("customer", exp.customers, customers),
                                    ("invoice", set(exp.invoices), invoices), ("return", exp.returns, returns)):
            diff.lost += len(want - got_set)
            extra = got_set - want
            if name == "customer":  # sales, voids and returns also make a customer known to the engine
                extra -= exp.mentioned
            diff.doubled += len(extra)
            diff.wrong += [f"unexpected {name} {x}" for x in sorted(extra)[:5]]
    finally:
        await conn.close()
    return diff


async def tab(client: httpx.AsyncClient, base: str, key: str, customer: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    r = await client.get(f"{base}/v1/customers/{customer}/marketing", headers=headers, params={"limit": 100})
    r.raise_for_status()
    doc = r.json()
    usage = list(doc["coupon_usage"]["items"])
    cursor = doc["coupon_usage"]["next_cursor"]
    while cursor:
        page = await client.get(f"{base}/v1/customers/{customer}/marketing", headers=headers,
                                params={"limit": 100, "cursor": cursor})
        page.raise_for_status()
        usage += page.json()["coupon_usage"]["items"]
        cursor = page.json()["coupon_usage"]["next_cursor"]
    doc["coupon_usage"] = usage
    return doc


def essential(doc: dict[str, Any]) -> dict[str, Any]:
    """The parts of a tab document the oracle predicts (plus segments, compared with the segment engine)."""
    return {
        "gift_cards": sorted((c["last4"], c["original_balance"], c["current_balance"]) for c in doc["gift_cards"]),
        "coupon_usage": sorted((u["invoice_number"], u["coupon_code"], u["status"]) for u in doc["coupon_usage"]),
    }


async def memberships(world: World) -> dict[str, set[str]]:
    conn = await asyncpg.connect(world.stack.database_url)
    try:
        rows = await conn.fetch(f'SELECT customer_id, segment_id FROM "segment_engine_{world.tag}".memberships '
                                f"WHERE member_since IS NOT NULL")
    finally:
        await conn.close()
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r["customer_id"], set()).add(r["segment_id"])
    return out


async def documents(world: World, base: str, customers: list[str]) -> dict[str, dict[str, Any]]:
    sem = asyncio.Semaphore(8)
    async with httpx.AsyncClient(timeout=10) as client:
        async def one(c: str) -> tuple[str, dict[str, Any]]:
            async with sem:
                return c, await tab(client, base, world.stack.api_key, c)
        return dict(await asyncio.gather(*(one(c) for c in customers)))


async def tabs(world: World, base: str, exp: Expected) -> Diff:
    """Every customer's tab against the oracle (cards, coupon history) and the segment engine (segments)."""
    diff = Diff()
    customers = sorted(exp.customers | {c for c in exp.invoices.values() if c})
    docs = await documents(world, base, customers)
    members = await memberships(world)
    for c in customers:
        got, want = essential(docs[c]), exp.tab(c)
        for section in ("gift_cards", "coupon_usage"):
            g, w = got[section], [tuple(x) for x in want[section]]
            if g != w:
                diff.lost += len(set(w) - set(g))
                diff.doubled += max(0, len(g) - len(set(g)))
                diff.wrong.append(f"{c} {section}: {g} != {w}")
        segs = {s["segment_id"] for s in docs[c]["segments"]}
        if segs != members.get(c, set()):
            diff.wrong.append(f"{c} segments {sorted(segs)} != engine {sorted(members.get(c, set()))}")
    return diff


def money(value: Any) -> Decimal:
    return Decimal(str(value))
