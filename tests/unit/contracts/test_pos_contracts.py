"""Conformance of the POS/CRM contract models: the vendor's examples, our fixtures, and strictness."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from shared.contracts import topics
from shared.contracts.codec import ContractViolation, decode, encode
from shared.contracts.pos import EVENT_TYPES, INBOUND
from tests.conftest import FIXTURES, POS_EXAMPLES

TOPIC_OF_PREFIX = {
    "sale": topics.POS_SALES,
    "coupon": topics.POS_COUPON_REDEMPTIONS,
    "giftcard": topics.POS_GIFTCARD_ACTIVITY,
    "customer": topics.CRM_CUSTOMERS,
}
OWN_FIXTURES = sorted((FIXTURES / "events").glob("*.json"))
VENDOR_EXAMPLES = sorted(POS_EXAMPLES.glob("*.json")) if POS_EXAMPLES.exists() else []


def topic_of(path: Path) -> str:
    return TOPIC_OF_PREFIX[path.name.split(".")[0]]


def test_the_vendor_examples_folder_is_read_in_place_when_it_exists() -> None:
    # CI lays ../shared beside the checkout: the conformance test must really see the vendor's files there.
    if POS_EXAMPLES.exists():
        assert len(VENDOR_EXAMPLES) >= len(EVENT_TYPES)


@pytest.mark.parametrize("path", VENDOR_EXAMPLES + OWN_FIXTURES, ids=lambda p: p.name)
def test_every_example_round_trips(path: Path) -> None:
    raw = path.read_bytes()
    event = decode(topic_of(path), raw)
    assert event.event_type == orjson.loads(raw)["event_type"]
    again = decode(topic_of(path), encode(event))
    assert again == event
    # Every field the file declares survives, with the same meaning (money stays a two-place string).
    original = orjson.loads(raw)
    dumped = orjson.loads(encode(event))
    for key, value in original.items():
        if key in type(event).model_fields:
            assert _normalise(dumped[key]) == _normalise(value), key


def _normalise(value: object) -> object:
    if isinstance(value, str) and "T" in value and value[:4].isdigit():
        from datetime import datetime

        return datetime.fromisoformat(value)
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def test_our_fixtures_cover_every_event_type_on_its_topic() -> None:
    seen = {orjson.loads(p.read_bytes())["event_type"] for p in OWN_FIXTURES}
    assert seen == set(EVENT_TYPES)
    for topic, union in INBOUND.items():
        assert union is not None, topic


def _example(name: str) -> dict:
    path = FIXTURES / "events" / name
    return json.loads(path.read_text())


def test_money_is_decimal_from_two_place_strings() -> None:
    event = decode(topics.POS_SALES, json.dumps(_example("sale.completed.with-coupon.json")).encode())
    assert event.total == Decimal("16.20") and isinstance(event.total, Decimal)
    assert orjson.loads(encode(event))["total"] == "16.20"


@pytest.mark.parametrize("bad", [16.2, "16.2", "16.200", "1e3", "", None, "16,20"])
def test_money_in_any_other_form_is_a_contract_violation(bad: object) -> None:
    raw = _example("sale.completed.with-coupon.json") | {"total": bad}
    with pytest.raises(ContractViolation, match="total"):
        decode(topics.POS_SALES, json.dumps(raw).encode())


def test_timestamps_must_carry_an_offset() -> None:
    raw = _example("sale.voided.json") | {"occurred_at": "2026-12-01T00:05:00"}
    with pytest.raises(ContractViolation, match="occurred_at"):
        decode(topics.POS_SALES, json.dumps(raw).encode())


def test_unknown_fields_are_ignored() -> None:
    event = decode(topics.POS_SALES, json.dumps(_example("sale.completed.anonymous.json")).encode())
    assert not hasattr(event, "loyalty_points")


def test_unknown_schema_version_is_named_in_the_reason() -> None:
    raw = _example("sale.voided.json") | {"schema_version": 2}
    with pytest.raises(ContractViolation, match="unsupported schema_version 2"):
        decode(topics.POS_SALES, json.dumps(raw).encode())


@pytest.mark.parametrize(
    ("topic", "value", "reason"),
    [
        (topics.POS_SALES, b"\xff\xfe", "not JSON"),
        (topics.POS_SALES, b"[]", "not a JSON object"),
        (topics.POS_SALES, None, "empty"),
        (topics.POS_SALES, b'{"schema_version": 1, "event_type": "coupon.redeemed"}', "event_type"),
        (topics.POS_GIFTCARD_ACTIVITY, b'{"schema_version": 1, "event_type": "giftcard.activated"}', "card_number"),
    ],
)
def test_malformed_messages_are_contract_violations(topic: str, value: bytes | None, reason: str) -> None:
    with pytest.raises(ContractViolation, match=reason):
        decode(topic, value)


def test_an_event_on_the_wrong_topic_is_refused() -> None:
    raw = json.dumps(_example("giftcard.redeemed.json")).encode()
    with pytest.raises(ContractViolation):
        decode(topics.POS_SALES, raw)


@pytest.mark.parametrize("card", ["1234567", "123456789012345678901", "1234 5678 9012", "ABCD-EFGH-1234"])
def test_card_numbers_are_8_to_20_letters_or_digits(card: str) -> None:
    raw = _example("giftcard.redeemed.json") | {"card_number": card}
    with pytest.raises(ContractViolation, match="card_number"):
        decode(topics.POS_GIFTCARD_ACTIVITY, json.dumps(raw).encode())


def test_gift_card_amounts_must_be_positive() -> None:
    raw = _example("giftcard.redeemed.json") | {"amount": "0.00"}
    with pytest.raises(ContractViolation, match="amount"):
        decode(topics.POS_GIFTCARD_ACTIVITY, json.dumps(raw).encode())


def test_quantities_are_strict_positive_integers() -> None:
    raw = _example("sale.returned.json")
    raw["lines"][0]["quantity"] = "1"
    with pytest.raises(ContractViolation, match="quantity"):
        decode(topics.POS_SALES, json.dumps(raw).encode())
