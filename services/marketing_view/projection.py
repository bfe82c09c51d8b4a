"""Domain events -> each customer's keys in Redis, version-checked, for one or more generations at once.

A polled batch is first reduced to the newest version of each thing (state-carrying events: only the
newest matters, ``writes.Batch``), then written with few Lua calls: ALL the writes of one customer
(segment list, insights, coupon rows, card placements) are the arguments of ONE call of the ``apply``
script, and on a single Redis one call carries several customers (on a Redis Cluster the keys of one call
must share a slot, so there it is one call per customer). Gift cards take up to three more round trips
because the card index and the customers' keys live in different slots:

1. move the card indexes (``move_cards``, version-checked: an old event cannot move a card back) and learn
   each card's owner and former owners; this round trip comes first, so that step 2 rides in the same
   per-customer call as the customer's other writes;
2. put the card in its owner's keys, drop it from every former owner holding an older version;
3. read the indexes again: if a newer version moved a card meanwhile (two writers: live consumer and
   rebuild, or a rebalance), drop what step 2 put (4th round trip, rare). Every step is idempotent and
   version-checked, so any interleaving and any replay converge to the state of the newest version.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import RedisCluster
from redis.crc import key_slot

from services.marketing_view import metrics, scripts, writes
from services.marketing_view.keys import KeySpace
from services.marketing_view.scripts import AnyRedis


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
    def __init__(self, redis: AnyRedis, keys: KeySpace, *, writes_per_call: int = 64) -> None:
        self._redis = redis
        self._keys = keys
        self._cluster = isinstance(redis, RedisCluster)
        self._writes_per_call = writes_per_call  # bounds how long one Lua call holds Redis (~7 µs a write)

    async def apply(self, events: Iterable[Any], generations: Sequence[str]) -> Applied:
        """Apply domain events (contract models, any mix of kinds) to every generation named."""
        batch = writes.Batch()
        for event in events:
            batch.add(writes.from_model(event))
        return await self.apply_batch(batch, generations)

    async def apply_batch(self, batch: writes.Batch, generations: Sequence[str]) -> Applied:
        """Apply a batch of writes (already reduced to the newest of each thing) to every generation named."""
        result = Applied()
        if not generations or not len(batch):
            return result
        k = self._keys
        # per (generation, customer): its framed writes (scripts.*_op), and the kind of each counted write
        ops: dict[tuple[str, str], tuple[list[bytes], list[str | None], list[int]]] = {}

        def customer(gen: str, customer_id: str) -> tuple[list[bytes], list[str | None], list[int]]:
            entry = ops.get((gen, customer_id))
            if entry is None:
                entry = ops[(gen, customer_id)] = ([], [], [0])
            return entry

        placed: list[tuple[str, writes.CardWrite]] = []
        if batch.cards:
            moves = [(gen, c) for gen in generations for c in batch.cards.values()]
            outcomes = await self._call("move_cards", [
                ([k.card_index(gen, c.card_id)], scripts.move_card_args(c.version, c.customer_id or "",
                                                                       c.previous_customer_id or ""))
                for gen, c in moves])
            for (gen, card), outcome in zip(moves, outcomes, strict=True):
                applied, owner, formers = outcome.decode().split("|", 2)
                result.count("card", applied == "2")  # 0: a newer state is known; 1: the same version again
                if applied == "0":
                    continue
                if owner and owner == card.customer_id:
                    fields, kinds, count = customer(gen, owner)
                    fields.append(scripts.put_card_op(card.card_id, card.version, card.value))
                    kinds.append(None)
                    count[0] += 4
                    placed.append((gen, card))
                for former in formers.split():
                    fields, kinds, count = customer(gen, former)
                    fields.append(scripts.drop_card_op(card.card_id, card.version))
                    kinds.append(None)
                    count[0] += 3
        for gen in generations:
            for s in batch.segments.values():
                fields, kinds, count = customer(gen, s.customer_id)
                fields.append(scripts.segments_op(s.version, s.value))
                kinds.append("segments")
                count[0] += 3
            for i in batch.insights.values():
                fields, kinds, count = customer(gen, i.customer_id)
                fields.append(scripts.insights_op(i.version, i.value))
                kinds.append("insights")
                count[0] += 3
            for r in batch.redemptions.values():
                fields, kinds, count = customer(gen, r.customer_id)
                fields.append(scripts.redemption_op(r.digest, r.version, r.used_ms, r.compact, r.full, r.code, r.meta))
                kinds.append("redemption")
                count[0] += 8
        if ops:
            entries = list(ops.items())
            outcomes = await self._call(
                "apply", [(k.customer(gen, cid), scripts.frame(count[0], fields))
                          for (gen, cid), (fields, _, count) in entries],
                sizes=[len(kinds) for _, (_, kinds, _) in entries])
            for (_, (_, kinds, _)), outcome in zip(entries, outcomes, strict=True):
                for kind, changed in zip(kinds, outcome, strict=True):
                    if kind is not None:
                        result.count(kind, changed == 49)  # b"1"
        if placed:
            await self._recheck(placed)
        for kind, (changed, unchanged) in result.by_kind.items():
            metrics.PROJECTED.labels(kind, "changed").inc(changed)
            metrics.PROJECTED.labels(kind, "unchanged").inc(unchanged)
        return result

    async def _call(self, script: str, items: list[tuple[list[str], bytes]],
                    sizes: list[int] | None = None) -> list[bytes]:
        """Run a batched script over items (keys, blob), as few calls as the slots allow; one pipeline.
        Returns each item's answer, in order."""
        groups: dict[int, list[int]] = {}
        calls: list[list[int]] = []
        limit = self._writes_per_call
        weight = 0
        for n, (keys, _) in enumerate(items):
            slot = key_slot(keys[0].encode()) if self._cluster else 0
            group = groups.get(slot)
            size = sizes[n] if sizes is not None else 1
            if group is None or (not self._cluster and weight + size > limit):
                group = groups[slot] = []
                calls.append(group)
                weight = 0
            group.append(n)
            weight += size
        batch: list[scripts.Call] = []
        for group in calls:
            keys_out: list[str] = []
            blobs: list[bytes] = []
            for n in group:
                keys, blob = items[n]
                keys_out += keys
                blobs.append(blob)
            batch.append((script, keys_out, blobs))
        answers = await scripts.run(self._redis, batch)
        out: list[bytes] = [b""] * len(items)
        for group, answer in zip(calls, answers, strict=True):
            for n, value in zip(group, answer, strict=True):
                out[n] = value
        return out

    async def _recheck(self, placed: list[tuple[str, writes.CardWrite]]) -> None:
        """Step 3: a card moved on by a newer version while we placed an older one is dropped again."""
        k = self._keys
        names = [k.card_index(gen, card.card_id) for gen, card in placed]
        if self._cluster:
            pipe = self._redis.pipeline(transaction=False)
            for name in names:
                pipe.get(name)
            indexes = await pipe.execute()
        else:
            indexes = []
            for start in range(0, len(names), 1000):
                indexes += await self._redis.mget(names[start:start + 1000])
        drops: dict[tuple[str, str], list[bytes]] = {}
        for (gen, card), raw in zip(placed, indexes, strict=True):
            if raw is None:
                continue
            version, owner, _ = raw.decode().split("|", 2)
            if int(version) > card.version and owner != card.customer_id and card.customer_id:
                drops.setdefault((gen, card.customer_id), []).append(scripts.drop_card_op(card.card_id, int(version)))
        if drops:
            await self._call("apply", [(k.customer(gen, cid), scripts.frame(3 * len(ops), ops))
                                       for (gen, cid), ops in drops.items()])
