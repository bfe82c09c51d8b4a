"""Contract violations on pos.giftcard-activity.v1 are parked on its dead-letter topic; business refusals are not
(they are recorded and announced); the consumer goes on either way."""

from __future__ import annotations

import orjson

from shared.contracts import topics as t
from shared.redaction import redact_gift_card_message
from tests.integration.giftcards.conftest import Ledger, card_number, pos_event


async def test_contract_violations_go_to_the_dead_letter_topic(ledger: Ledger) -> None:
    number = card_number()
    good = [pos_event("giftcard.activated", number, amount="10.00"),
            pos_event("giftcard.redeemed", number, amount="4.00")]
    refused = pos_event("giftcard.redeemed", number, amount="99.00")  # a business refusal, not a violation
    poison = {
        b"not-json": b"{card_number: 1234",
        b"version-2": orjson.dumps(pos_event("giftcard.redeemed", number, schema_version=2)),
        b"float-amount": orjson.dumps(pos_event("giftcard.redeemed", number) | {"amount": 4.5}),
        b"zero-amount": orjson.dumps(pos_event("giftcard.reloaded", number, amount="0.00")),
        b"short-number": orjson.dumps(pos_event("giftcard.redeemed", "1234567")),
        b"unknown-type": orjson.dumps(pos_event("giftcard.redeemed", number) | {"event_type": "giftcard.exploded"}),
        b"no-original": orjson.dumps({k: v for k, v in pos_event("giftcard.refunded", number).items()
                                      if k != "original_invoice_number"}),
        b"no-offset": orjson.dumps(pos_event("giftcard.redeemed", number) | {"occurred_at": "2026-03-10T10:00:00"}),
    }
    await ledger.publish(good[0], raw=list(poison.items()))
    await ledger.publish(good[1], refused)
    await ledger.processed(*good, refused)

    keyed_by_number = orjson.dumps(pos_event("giftcard.redeemed", number) | {"amount": "4.555"})
    await ledger.publish(raw=[(number.encode(), keyed_by_number)])  # as the POS keys it: by the card number
    poison[b"****" + number[-4:].encode()] = keyed_by_number

    dead = await ledger.topic(t.dlq(t.POS_GIFTCARD_ACTIVITY), at_least=len(poison))
    assert {r.key for r in dead} == set(poison), "a key that is a card number is masked as well"
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        assert record.value == redact_gift_card_message(poison[record.key], record.key)[0], \
            "the original bytes are kept, but for the card number (last 4 only)"
        assert number.encode() not in record.value and number not in str(record.headers)
        assert headers["dlq.original.topic"] == t.POS_GIFTCARD_ACTIVITY and headers["dlq.reason"]
    reasons = {r.key: dict(r.headers)["dlq.reason"].decode() for r in dead}
    assert reasons[b"not-json"].startswith("not JSON") and "schema_version 2" in reasons[b"version-2"]
    assert "amount" in reasons[b"float-amount"] and "amount" in reasons[b"zero-amount"]
    assert "card_number" in reasons[b"short-number"] and "original_invoice_number" in reasons[b"no-original"]

    card = await ledger.card_by_number(number)
    assert card is not None and card["current_balance"] == "6.00", "the consumer went on"
    rejections = await ledger.fetch("SELECT event_id, reason FROM rejections")
    assert [(str(r["event_id"]), r["reason"]) for r in rejections] == [(refused["event_id"], "insufficient_balance")]
