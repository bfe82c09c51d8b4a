"""Rotating the card HMAC key: cards stored under the previous key stay reachable, POS activity moves them to
the current key, and a number cannot be issued twice across keys."""

from __future__ import annotations

from services.giftcard_ledger.cardnumbers import key_version
from shared.clock import FixedClock
from tests.conftest import Stack
from tests.integration.giftcards.conftest import card_number, pos_event, start_ledger

OLD = "old-card-key-0123456789abcdef"
NEW = "new-card-key-fedcba9876543210"


async def test_cards_stay_reachable_across_a_key_rotation(stack: Stack, topics: str, isolation: str,
                                                          clock: FixedClock) -> None:
    at_till, by_staff = card_number(), card_number()
    async with start_ledger(stack, topics, isolation, clock, card_hmac_key=OLD, drop=False) as before:
        activation = pos_event("giftcard.activated", at_till, amount="30.00")
        await before.publish(activation)
        await before.processed(activation)
        issued = await before.post("/v1/gift-cards", {"customer_id": "C-1", "amount": "10.00", "currency": "USD",
                                                      "card_number": by_staff})
        assert issued.status_code == 201

    async with start_ledger(stack, topics, isolation, clock, card_hmac_key=NEW,
                            card_hmac_previous_keys=[OLD]) as after:
        redemption = pos_event("giftcard.redeemed", at_till, amount="5.00")
        await after.publish(redemption)
        await after.processed(redemption)
        assert await after.fetch("SELECT * FROM rejections") == []
        moved = await after.card_by_number(at_till)
        assert moved is not None and moved["current_balance"] == "25.00"
        staff_card = await after.card_by_number(by_staff)
        assert staff_card is not None and staff_card["card_id"] == issued.json()["card_id"]
        versions = {r["card_id"]: r["key_version"] for r in await after.fetch("SELECT * FROM cards")}
        assert versions == {moved["card_id"]: key_version(NEW.encode()),  # re-keyed by the POS activity
                            staff_card["card_id"]: key_version(OLD.encode())}

        twice = await after.post("/v1/gift-cards", {"customer_id": "C-2", "amount": "1.00", "currency": "USD",
                                                    "card_number": by_staff})
        assert twice.status_code == 409 and twice.json()["reason"] == "card_already_active"
        again = pos_event("giftcard.activated", by_staff, amount="5.00")
        await after.publish(again)
        await after.processed(again)
        assert [r["reason"] for r in await after.fetch("SELECT reason FROM rejections")] == ["card_already_active"]
