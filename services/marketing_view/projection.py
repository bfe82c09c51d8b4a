"""Domain events -> each customer's keys in Redis, version-checked, for one or more generations at once.

A polled batch is first reduced to the newest version of each thing (state-carrying events: only the
newest matters), then written with one pipeline of Lua scripts. Gift cards take up to three more round
trips because the card index and the customers' keys live in different slots:

1. move the card index (version-checked: an old event cannot move a card back) and learn its owner and
   former owners;
2. put the card in its owner's keys, drop it from every former owner holding an older version;
3. read the index again: if a newer version moved the card meanwhile (two writers: live consumer and
   rebuild, or a rebalance), drop what step 2 put (4th round trip, rare). Every step is idempotent and
   version-checked, so any interleaving and any replay converge to the state of the newest version.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.marketing_view import domain, metrics, scripts
from services.marketing_view.keys import KeySpace
from services.marketing_view.scripts import AnyRedis
from shared.contracts.domain import (
    CouponRedemptionRecorded,
    CustomerCouponInsightsChanged,
    CustomerSegmentsChanged,
    GiftCardChanged,
)


@dataclass
class Applied:
    """How many writes changed something, and how many were older than (or equal to) what Redis had."""

    changed: int = 0
    unchanged: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=dict)

    def count(self, kind: str, changed: bool) -> None:
        entry = self.by_kind.setdefault(kind, [0, 0])
        if changed:
            self.changed += 1
            entry[0] += 1
        else:
            self.unchanged += 1
            entry[1] += 1


class Projector:
    def __init__(self, redis: AnyRedis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys

    async def apply(self, events: Iterable[Any], generations: Sequence[str]) -> Applied:
        """Apply domain events (any mix of kinds) to every generation named."""
        result = Applied()
        if not generations:
            return result
        segments: list[CustomerSegmentsChanged] = []
        insights: list[CustomerCouponInsightsChanged] = []
        redemptions: list[CouponRedemptionRecorded] = []
        cards: list[GiftCardChanged] = []
        for event in events:
            if isinstance(event, CustomerSegmentsChanged):
                segments.append(event)
            elif isinstance(event, CouponRedemptionRecorded):
                redemptions.append(event)
            elif isinstance(event, CustomerCouponInsightsChanged):
                insights.append(event)
            elif isinstance(event, GiftCardChanged):
                cards.append(event)
        segments = domain.latest(segments, lambda e: e.customer_id)
        insights = domain.latest(insights, lambda e: e.customer_id)
        redemptions = domain.latest(redemptions, lambda e: (e.customer_id, e.redemption_id))
        cards = domain.latest(cards, lambda e: e.card_id)

        k = self._keys
        calls: list[scripts.Call] = []
        tags: list[tuple[str, Any]] = []
        for gen in generations:
            for s in segments:
                calls.append(("put_segments", [k.doc(gen, s.customer_id)], [s.version, domain.segments_value(s)]))
                tags.append(("segments", None))
            for i in insights:
                calls.append(("hset_if_newer", [k.doc(gen, i.customer_id)], ["i", i.version, domain.insights_value(i)]))
                tags.append(("insights", None))
            for r in redemptions:
                w = domain.redemption_write(r)
                calls.append(("put_redemption", [k.doc(gen, w.customer_id), k.history(gen, w.customer_id)],
                              [w.digest, w.version, w.used_ms, w.compact, w.full, w.code, w.meta]))
                tags.append(("redemption", None))
            for c in cards:
                calls.append(("move_card", [k.card_index(gen, c.card_id)],
                              [c.version, c.customer_id or "", c.previous_customer_id or ""]))
                tags.append(("card", (gen, c)))
        results = await scripts.run(self._redis, calls) if calls else []
        moves: list[tuple[str, GiftCardChanged, list[Any]]] = []
        for (kind, payload), outcome in zip(tags, results, strict=True):
            if kind == "card":
                moves.append((*payload, outcome))
                result.count(kind, outcome[0] == 2)  # 0: a newer state is known; 1: the same version again
            else:
                result.count(kind, bool(outcome))
        if moves:
            await self._place_cards(moves)
        for kind, (changed, unchanged) in result.by_kind.items():
            metrics.PROJECTED.labels(kind, "changed").inc(changed)
            metrics.PROJECTED.labels(kind, "unchanged").inc(unchanged)
        return result

    async def _place_cards(self, moves: list[tuple[str, GiftCardChanged, list[Any]]]) -> None:
        k = self._keys
        calls: list[scripts.Call] = []
        placed: list[tuple[str, GiftCardChanged]] = []
        for gen, card, (applied, owner, formers) in moves:
            if not applied:
                continue
            owner_id = _text(owner)
            if owner_id and owner_id == card.customer_id:
                value = domain.card_value(card)
                calls.append(("put_card", [k.doc(gen, owner_id)], [card.card_id, card.version, value]))
                placed.append((gen, card))
            for former in _text(formers).split():
                calls.append(("drop_card", [k.doc(gen, former)], [card.card_id, card.version]))
        if calls:
            await scripts.run(self._redis, calls)
        if placed:
            await self._recheck(placed)

    async def _recheck(self, placed: list[tuple[str, GiftCardChanged]]) -> None:
        """Step 3: a card moved on by a newer version while we placed an older one is dropped again."""
        k = self._keys
        pipe = self._redis.pipeline(transaction=False)
        for gen, card in placed:
            pipe.get(k.card_index(gen, card.card_id))
        indexes = await pipe.execute()
        calls: list[scripts.Call] = []
        for (gen, card), raw in zip(placed, indexes, strict=True):
            if raw is None:
                continue
            version, owner, _ = raw.decode().split("|", 2)
            if int(version) > card.version and owner != card.customer_id and card.customer_id:
                calls.append(("drop_card", [k.doc(gen, card.customer_id)], [card.card_id, int(version)]))
        if calls:
            await scripts.run(self._redis, calls)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
