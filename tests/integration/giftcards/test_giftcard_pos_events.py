"""POS gift card events on real Kafka and Postgres: every type applied, duplicates ignored, refusals recorded and
announced (the consumer goes on), the card's whole state published after every change, never its number."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import orjson

from shared import metrics
from shared.clock import FixedClock
from shared.contracts import topics as t
from tests.conftest import Stack
from tests.integration.giftcards.conftest import Ledger, card_number, pos_event, start_ledger


async def test_every_event_type_moves_the_ledger_and_publishes_the_card(ledger: Ledger) -> None:
    number = card_number()
    events = [
        pos_event("giftcard.activated", number, amount="50.00", customer_id="C-1", expires_on="2027-01-02"),
        pos_event("giftcard.reloaded", number, amount="25.00"),
        pos_event("giftcard.redeemed", number, amount="30.00", invoice_number="INV-A"),
        pos_event("giftcard.refunded", number, amount="4.29", invoice_number="RET-1", original_invoice_number="INV-A"),
    ]
    await ledger.publish(*events)
    await ledger.processed(*events)

    card = await ledger.card_by_number(number)
    assert card is not None
    assert card["current_balance"] == "49.29" and card["original_balance"] == "50.00"
    assert card["status"] == "active" and card["customer_id"] == "C-1" and card["last4"] == number[-4:]
    assert card["card_number_masked"] == "•••• •••• •••• " + number[-4:]
    assert card["expiration_date"] == "2027-01-02"
    entries = await ledger.entries(card["card_id"])
    assert [e["entry_type"] for e in entries] == ["activate", "reload", "redeem", "refund"]
    assert [e["amount"] for e in entries] == [Decimal("50.00"), Decimal("25.00"), Decimal("-30.00"), Decimal("4.29")]
    assert [e["balance_after"] for e in entries] == [Decimal("50.00"), Decimal("75.00"), Decimal("45.00"),
                                                     Decimal("49.29")]
    assert entries[3]["original_invoice_number"] == "INV-A" and entries[3]["invoice_number"] == "RET-1"
    assert [e["source"] for e in entries] == [f"event:{e['event_id']}" for e in events]
    assert [e["store_id"] for e in entries] == [e["store_id"] for e in events]
    assert all(e["actor"] == f"pos:{e['store_id']}" for e in entries)
    assert await ledger.balance_consistent(card["card_id"]) == Decimal("49.29")

    records = await ledger.topic(t.GIFTCARD_CARDS, at_least=4)
    assert {r.key for r in records} == {card["card_id"].encode()}, "keyed by card id: one card's events in order"
    bodies = [orjson.loads(r.value) for r in records]
    assert [b["version"] for b in bodies] == [1, 2, 3, 4]
    assert [b["change"] for b in bodies] == ["activate", "reload", "redeem", "refund"]
    assert [b["current_balance"] for b in bodies] == ["50.00", "75.00", "45.00", "49.29"]
    assert bodies[-1]["customer_id"] == "C-1" and bodies[-1]["state"] == "open"
    assert bodies[-1]["issue_date"] == "2026-03-10" and bodies[-1]["expiration_date"] == "2027-01-02"
    assert all(number.encode() not in r.value for r in records), "never the full number on an internal topic"
    rows = await ledger.fetch("SELECT * FROM cards")
    assert all(number not in str(dict(r)) for r in rows)


async def test_a_duplicate_event_changes_nothing(ledger: Ledger) -> None:
    number = card_number()
    activation = pos_event("giftcard.activated", number, amount="40.00")
    redemption = pos_event("giftcard.redeemed", number, amount="15.00")
    await ledger.publish(activation, redemption, redemption)  # twice in one poll
    await ledger.processed(activation, redemption)
    await ledger.publish(redemption, activation)  # and again later
    marker = pos_event("giftcard.reloaded", number, amount="1.00")
    await ledger.publish(marker)
    await ledger.processed(marker)

    card = await ledger.card_by_number(number)
    assert card is not None and card["current_balance"] == "26.00"
    entries = await ledger.entries(card["card_id"])
    assert [e["entry_type"] for e in entries] == ["activate", "redeem", "reload"]
    assert await ledger.fetch("SELECT * FROM rejections") == [], "a duplicate is not a rejection"


async def test_refusals_are_recorded_announced_and_the_consumer_goes_on(ledger: Ledger) -> None:
    number, other, unknown = card_number(), card_number(), card_number()
    setup = [
        pos_event("giftcard.activated", number, amount="20.00"),
        pos_event("giftcard.redeemed", number, amount="5.00", invoice_number="INV-S"),
        pos_event("giftcard.activated", other, amount="10.00"),
    ]
    await ledger.publish(*setup)
    await ledger.processed(*setup)
    other_card = await ledger.card_by_number(other)
    assert other_card is not None
    r = await ledger.post(f"/v1/gift-cards/{other_card['card_id']}/deactivate", {"reason": "reported stolen"})
    assert r.status_code == 200, r.text
    before = metrics.EVENTS_REJECTED.labels("giftcard_ledger", "giftcard.redeemed", "insufficient_balance")._value.get()

    refused = {
        "unknown_card": pos_event("giftcard.redeemed", unknown, amount="1.00"),
        "insufficient_balance": pos_event("giftcard.redeemed", number, amount="15.01"),
        "currency_mismatch": pos_event("giftcard.reloaded", number, amount="1.00", currency="EUR"),
        "refund_too_large": pos_event("giftcard.refunded", number, amount="5.01", original_invoice_number="INV-S"),
        "no_matching_redemption": pos_event("giftcard.refunded", number, amount="1.00",
                                            original_invoice_number="INV-NONE"),
        "card_already_active": pos_event("giftcard.activated", number, amount="20.00"),
        "inactive_card": pos_event("giftcard.redeemed", other, amount="1.00"),
    }
    accepted = pos_event("giftcard.redeemed", number, amount="15.00")
    await ledger.publish(*refused.values(), accepted)
    await ledger.processed(*refused.values(), accepted)

    card = await ledger.card_by_number(number)
    assert card is not None and card["current_balance"] == "0.00" and card["status"] == "fully_redeemed"
    assert await ledger.balance_consistent(card["card_id"]) == Decimal("0.00")
    rows = await ledger.fetch("SELECT * FROM rejections ORDER BY id")
    assert {r["reason"]: str(r["event_id"]) for r in rows} == {k: e["event_id"] for k, e in refused.items()}
    by_reason = {r["reason"]: r for r in rows}
    assert by_reason["unknown_card"]["card_id"] is None and by_reason["unknown_card"]["last4"] == unknown[-4:]
    assert by_reason["insufficient_balance"]["card_id"] == card["card_id"]
    assert "15.01" in by_reason["insufficient_balance"]["detail"]

    announced = await ledger.topic(t.GIFTCARD_REJECTIONS, at_least=len(refused))
    assert len(announced) == len(refused)
    bodies = {orjson.loads(a.value)["reason"]: (a.key, orjson.loads(a.value)) for a in announced}
    assert set(bodies) == set(refused)
    for reason, (_key, body) in bodies.items():
        event = refused[reason]
        assert body["rejected_event_id"] == event["event_id"]
        assert body["rejected_event_type"] == event["event_type"]
        assert body["last4"] == event["card_number"][-4:]
        assert body["invoice_number"] == event["invoice_number"] and body["store_id"] == event["store_id"]
        assert body["detail"]
    assert bodies["unknown_card"][0] == unknown[-4:].encode(), "an unknown card is keyed by its last 4"
    assert bodies["insufficient_balance"][0] == card["card_id"].encode()
    assert all(n.encode() not in a.value for a in announced for n in (number, other, unknown))
    after = metrics.EVENTS_REJECTED.labels("giftcard_ledger", "giftcard.redeemed", "insufficient_balance")._value.get()
    assert after == before + 1


async def test_refunds_never_exceed_what_was_redeemed_on_the_invoice(ledger: Ledger) -> None:
    number = card_number()
    events = [
        pos_event("giftcard.activated", number, amount="100.00"),
        pos_event("giftcard.redeemed", number, amount="30.00", invoice_number="INV-1"),
        pos_event("giftcard.redeemed", number, amount="20.00", invoice_number="INV-1"),  # split tender
        pos_event("giftcard.redeemed", number, amount="10.00", invoice_number="INV-2"),
        pos_event("giftcard.refunded", number, amount="45.00", original_invoice_number="INV-1"),
        pos_event("giftcard.refunded", number, amount="5.01", original_invoice_number="INV-1"),  # too much now
        pos_event("giftcard.refunded", number, amount="5.00", original_invoice_number="INV-1"),  # exactly the rest
        pos_event("giftcard.refunded", number, amount="0.01", original_invoice_number="INV-1"),  # nothing left
        pos_event("giftcard.refunded", number, amount="10.00", original_invoice_number="INV-2"),
    ]
    await ledger.publish(*events)
    await ledger.processed(*events)
    card = await ledger.card_by_number(number)
    assert card is not None
    assert await ledger.balance_consistent(card["card_id"]) == Decimal("100.00")
    rejected = await ledger.fetch("SELECT event_id, reason FROM rejections ORDER BY id")
    assert [(str(r["event_id"]), r["reason"]) for r in rejected] == [
        (events[5]["event_id"], "refund_too_large"), (events[7]["event_id"], "refund_too_large"),
    ]


async def test_an_expired_card_follows_the_store_policy(stack: Stack, topics: str, isolation: str,
                                                        clock: FixedClock) -> None:
    number = card_number()
    today = clock.now().date().isoformat()
    async with start_ledger(stack, topics, isolation, clock) as ledger:
        activation = pos_event("giftcard.activated", number, amount="30.00", expires_on=today, clock=clock)
        await ledger.publish(activation)
        await ledger.processed(activation)
        clock.advance(timedelta(days=2))
        late = pos_event("giftcard.redeemed", number, amount="5.00", clock=clock)
        await ledger.publish(late)
        await ledger.processed(late)
        rows = await ledger.fetch("SELECT reason FROM rejections")
        assert [r["reason"] for r in rows] == ["card_expired"]
        card = await ledger.card_by_number(number)
        assert card is not None and card["status"] == "expired" and card["current_balance"] == "30.00"

    async with start_ledger(stack, topics, isolation + "a", clock, expired_redemption_policy="allow",
                            consumer_group=f"giftcards-{isolation}-allow") as allowing:
        # A new consumer group re-reads the topic from the start into a fresh schema: same events, other policy.
        await allowing.processed(activation, late)
        assert await allowing.fetch("SELECT reason FROM rejections") == []
        card = await allowing.card_by_number(number)
        assert card is not None and card["status"] == "expired" and card["current_balance"] == "25.00"
