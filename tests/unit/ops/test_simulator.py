"""The POS simulator: reproducible from its seed, every event valid under the contract, realistic mix."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime

import orjson

from ops.simulator import Config, simulate
from shared.contracts.codec import decode

NOW = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)


def test_same_seed_same_traffic_other_seed_other_traffic() -> None:
    one = simulate(Config(customers=40, days=60, seed=11, now=NOW))
    two = simulate(Config(customers=40, days=60, seed=11, now=NOW))
    other = simulate(Config(customers=40, days=60, seed=12, now=NOW))
    assert [m.event for m in one.messages] == [m.event for m in two.messages]
    assert [m.event for m in one.messages] != [m.event for m in other.messages]


def test_every_event_honours_the_contract_and_its_key() -> None:
    sim = simulate(Config(customers=250, days=120, seed=3, now=NOW))
    types = Counter()
    for m in sim.messages:
        event = decode(m.topic, orjson.dumps(m.event))
        types[event.event_type] += 1
        expected_key = getattr(event, "card_number", None) or event.customer_id
        assert m.key.decode() == expected_key
        assert event.occurred_at <= NOW
    assert set(types) == {
        "customer.registered", "customer.loyalty_tier_changed", "sale.completed", "sale.voided", "sale.returned",
        "coupon.redeemed", "coupon.redemption_reversed", "giftcard.activated", "giftcard.redeemed",
        "giftcard.reloaded", "giftcard.refunded",
    }, types


def test_some_events_arrive_twice_and_some_late() -> None:
    sim = simulate(Config(customers=80, days=90, seed=5, now=NOW, duplicate_rate=0.05, late_rate=0.05))
    ids = Counter(m.event["event_id"] for m in sim.messages)
    assert any(n == 2 for n in ids.values())
    occurred = [m.occurred for m in sim.messages]
    assert any(later < earlier for earlier, later in itertools.pairwise(occurred))


def test_customers_have_different_habits() -> None:
    sim = simulate(Config(customers=200, days=120, seed=9, now=NOW))
    assert set(sim.customers.values()) == {"frequent", "lapsing", "big_spender", "coupon_hunter", "occasional", "new"}
    sales = Counter(m.event["customer_id"] for m in sim.messages if m.event["event_type"] == "sale.completed")
    frequent = [sales[c] for c, h in sim.customers.items() if h == "frequent"]
    occasional = [sales[c] for c, h in sim.customers.items() if h == "occasional"]
    assert sum(frequent) / len(frequent) > 3 * sum(occasional) / len(occasional)
