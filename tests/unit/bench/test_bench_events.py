"""The benchmark's generated events are valid contract events with unique ids (decoded by the real codec)."""

from __future__ import annotations

from collections import Counter

import orjson

from bench.rebuild import EVENTS_PER_CUSTOMER, fill, templates
from bench.system import pos_mix, probe_event
from shared.contracts import topics as t
from shared.contracts.codec import decode


def test_rebuild_events_decode_and_every_id_is_unique_per_customer() -> None:
    events = fill(templates(), 1, 3)
    assert len(events) == 3 * EVENTS_PER_CUSTOMER
    decoded = [decode(topic, value) for topic, _key, value in events]
    assert len({e.event_id for e in decoded}) == len(decoded)
    customers = Counter(getattr(e, "customer_id", None) for e in decoded)
    assert customers == {"C-TPL0000001": 14, "C-TPL0000002": 14, "C-TPL0000003": 14}
    redemptions = [e.redemption_id for e in decoded if hasattr(e, "redemption_id")]
    assert len(redemptions) == len(set(redemptions)) == 30
    cards = [(e.card_id, key) for (topic, key, _), e in zip(events, decoded, strict=True)
             if topic == t.GIFTCARD_CARDS]
    assert len({c for c, _ in cards}) == 6
    assert all(key == card_id.encode() for card_id, key in cards)  # keyed by card, as giftcard_ledger does
    keyed = [(key, e) for (topic, key, _), e in zip(events, decoded, strict=True) if topic != t.GIFTCARD_CARDS]
    assert all(key == e.customer_id.encode() for key, e in keyed)


def test_pos_mix_is_valid_and_new_customers_each_run() -> None:
    messages, customers = pos_mix(20, 30, 12345678, "C-B12345678-")
    assert messages and customers
    assert all(c.startswith("C-B12345678-") for c in customers)
    for topic, _key, value in messages:
        decode(topic, value)
    assert {topic for topic, _, _ in messages} >= {t.POS_SALES, t.CRM_CUSTOMERS}
    decode(t.POS_COUPON_REDEMPTIONS, probe_event("C-P1-00001", 1))
    assert orjson.loads(probe_event("C-P1-00001", 1))["customer_id"] == "C-P1-00001"
