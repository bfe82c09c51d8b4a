"""Time: a card whose date passed reads as expired at once, and the sweep records and announces it, on demand or
on its own schedule, even when nothing else happens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from shared.clock import FixedClock
from shared.contracts import topics as t
from tests.conftest import Stack
from tests.helpers import eventually
from tests.integration.giftcards.conftest import Ledger, start_ledger


async def issue(ledger: Ledger, **extra: Any) -> str:
    r = await ledger.post("/v1/gift-cards", {"customer_id": "C-1", "amount": "20.00", "currency": "USD", **extra})
    assert r.status_code == 201, r.text
    return r.json()["card_id"]  # type: ignore[no-any-return]


async def card(ledger: Ledger, card_id: str) -> dict[str, Any]:
    return (await ledger.http.get(f"/v1/gift-cards/{card_id}", headers=ledger.auth)).json()  # type: ignore[no-any-return]


async def test_the_sweep_expires_what_the_calendar_expired(ledger: Ledger) -> None:
    today, later, never, stopped = (await issue(ledger, expires_on="2026-03-10"),
                                    await issue(ledger, expires_on="2026-03-12"), await issue(ledger),
                                    await issue(ledger, expires_on="2026-03-10"))
    assert (await ledger.post(f"/v1/gift-cards/{stopped}/deactivate", {})).status_code == 200
    assert (await card(ledger, today))["status"] == "active"
    ledger.clock.set(datetime(2026, 3, 11, 3, 59, tzinfo=UTC))  # 23:59 on the 10th in New York
    assert (await card(ledger, today))["status"] == "active", "valid through its last day, business time zone"
    ledger.clock.set(datetime(2026, 3, 11, 12, 0, tzinfo=UTC))
    before_sweep = await card(ledger, today)
    assert before_sweep["status"] == "expired" and before_sweep["state"] == "open", "right as of now, sweep or not"

    r = await ledger.post("/v1/gift-cards/sweep", {})
    assert r.status_code == 200 and r.json()["expired"] == 1
    swept = await card(ledger, today)
    assert swept["state"] == "expired" and swept["expired_at"] == "2026-03-11T04:00:00Z"
    assert swept["current_balance"] == "20.00", "the balance stays for the books"
    assert (await card(ledger, later))["status"] == "active" and (await card(ledger, never))["status"] == "active"
    assert (await card(ledger, stopped))["status"] == "deactivated"
    entries = await ledger.entries(today)
    assert [(e["entry_type"], e["actor"], e["source"], e["amount"]) for e in entries][-1] == (
        "expire", "system:sweep", "sweep:2026-03-10", Decimal("0.00"))
    assert (await ledger.post("/v1/gift-cards/sweep", {})).json()["expired"] == 0, "twice changes nothing"

    ledger.clock.advance(timedelta(days=3))
    assert (await ledger.post("/v1/gift-cards/sweep", {})).json()["expired"] == 1
    records = await ledger.topic(t.GIFTCARD_CARDS, at_least=7)
    expired = [orjson.loads(r.value) for r in records if orjson.loads(r.value)["change"] == "expire"]
    assert sorted(e["card_id"] for e in expired) == sorted([today, later])
    assert all(e["state"] == "expired" and e["version"] == 2 for e in expired)
    assert await ledger.balance_consistent(today) == Decimal("20.00")


async def test_an_as_of_in_the_past_only_expires_what_had_expired_by_then(ledger: Ledger) -> None:
    first, second = await issue(ledger, expires_on="2026-03-10"), await issue(ledger, expires_on="2026-03-20")
    ledger.clock.set(datetime(2026, 4, 1, tzinfo=UTC))
    r = await ledger.post("/v1/gift-cards/sweep", {"as_of": "2026-03-15T12:00:00-04:00"})
    assert r.status_code == 200 and r.json()["expired"] == 1
    assert (await card(ledger, first))["state"] == "expired" and (await card(ledger, second))["state"] == "open"


async def test_the_scheduled_sweep_runs_on_its_own(stack: Stack, topics: str, isolation: str,
                                                   clock: FixedClock) -> None:
    async with start_ledger(stack, topics, isolation, clock, sweep_interval_s=0.2) as ledger:
        card_id = await issue(ledger, expires_on="2026-03-10")
        clock.advance(timedelta(days=2))

        async def expired() -> bool:
            return (await card(ledger, card_id))["state"] == "expired"

        await eventually(expired, what="the background sweep expired the card")
        records = await ledger.topic(t.GIFTCARD_CARDS, at_least=2)
        assert [orjson.loads(r.value)["change"] for r in records] == ["issue", "expire"]
