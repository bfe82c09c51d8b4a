"""Seeded traffic from ops.simulator, with the scenario's faults injected on top."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import orjson

from ops.simulator import Config, simulate
from shared.contracts import topics

ANCHOR = datetime(2026, 12, 1, 12, tzinfo=UTC)  # fixed, so that a seed reproduces the same events
Log = list[tuple[str, bytes | None, bytes]]


def events(seed: int, customers: int, days: int, prefix: str) -> Log:
    sim = simulate(Config(customers=customers, days=days, seed=seed, now=ANCHOR, duplicate_rate=0, late_rate=0))
    return [(prefix + m.topic, m.key, orjson.dumps(m.event)) for m in sim.messages]


def disorder(log: Log, rng: random.Random, *, swap: float, duplicate: float) -> tuple[Log, int, int]:
    """Swap ``swap`` of the messages with the next message of the same key and topic, then publish
    ``duplicate`` of them a second time a little later. Returns the new log, swaps and duplicates."""
    out = list(log)
    by_key: dict[tuple[str, bytes | None], list[int]] = {}
    for i, (topic, key, _) in enumerate(out):
        by_key.setdefault((topic, key), []).append(i)
    swaps = 0
    for positions in by_key.values():
        j = 0
        while j < len(positions) - 1:
            if rng.random() < swap:
                a, b = positions[j], positions[j + 1]
                out[a], out[b] = out[b], out[a]
                swaps += 1
                j += 2
            else:
                j += 1
    final: Log = []
    later: dict[int, Log] = {}
    dups = 0
    for i, item in enumerate(out):
        final.extend(later.pop(i, []))
        final.append(item)
        if rng.random() < duplicate:
            later.setdefault(i + rng.randrange(1, 200), []).append(item)
            dups += 1
    for rest in later.values():
        final.extend(rest)
    return final, swaps, dups


def poison(rng: random.Random, n: int, prefix: str) -> Log:
    """``n`` malformed or contract-breaking messages, spread over the inbound topics and keys (so partitions)."""
    good = {
        topics.POS_SALES: {"event_type": "sale.voided", "invoice_number": "INV-P", "customer_id": "C-P",
                           "reason": "x"},
        topics.POS_COUPON_REDEMPTIONS: {"event_type": "coupon.redemption_reversed", "invoice_number": "INV-P",
                                        "coupon_code": "SAVE5", "customer_id": "C-P", "reason": "void"},
        topics.POS_GIFTCARD_ACTIVITY: {"event_type": "giftcard.redeemed", "card_number": "6034900000000000",
                                       "amount": "1.00", "currency": "USD", "invoice_number": "INV-P"},
        topics.CRM_CUSTOMERS: {"event_type": "customer.loyalty_tier_changed", "customer_id": "C-P", "tier": "Gold",
                               "previous_tier": None},
    }
    out: Log = []
    names = list(good)
    for i in range(n):
        topic = names[i % len(names)]
        body = {"event_id": f"00000000-0000-4000-8000-{i:012d}", "schema_version": 1,
                "occurred_at": "2026-11-30T10:00:00+00:00",
                "store_id": None if topic == topics.CRM_CUSTOMERS else "S-001", **good[topic]}
        for field in ("invoice_number", "customer_id"):  # every poison message distinct
            if field in body:
                body[field] = f"{body[field]}-{i}"
        kind = i % 5
        if kind == 0:
            value = b"{not json" + str(i).encode()
        elif kind == 1:
            value = orjson.dumps({**body, "schema_version": 99})
        elif kind == 2:
            value = orjson.dumps({**body, "event_type": "something.unknown"})
        elif kind == 3:
            value = orjson.dumps({**body, "occurred_at": "yesterday"})
        else:
            body.pop("event_id")
            value = orjson.dumps(body)
        out.append((prefix + topic, f"poison-{rng.randrange(10**6)}".encode(), value))
    return out
