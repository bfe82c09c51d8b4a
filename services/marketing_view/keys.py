"""Where everything lives in Redis. One place, so the layout in README.md is the layout in the code.

Control keys (one each):
    <p>:current            the generation the API serves (the atomic switch of a rebuild)
    <p>:building           the generation a rebuild is filling (expires unless the rebuild renews it)
    <p>:rebuild:lock       held by the one process that rebuilds (expires unless renewed)
    <p>:rebuild:progress   JSON progress of the running rebuild, for every instance's /readyz

Per generation ``<g>`` (a rebuild builds a whole new one beside the served one):
    <p>:<g>:epoch          sentinel written when the generation is created: gone = Redis lost its data
    <p>:<g>:{<cid>}:d      HASH    segment list, coupon rows, coupon names, gift cards, card list, insights
    <p>:<g>:{<cid>}:h      ZSET    coupon history order: member = row digest, score = used_at (epoch ms)
    <p>:<g>:c:{<card_id>}  STRING  card -> owner index, with its version and former owners

Every key of one customer carries the hash tag ``{customer_id}`` (one Redis Cluster slot), so each
customer is written and read by single-slot Lua scripts; the card index has its own tag.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

GENERATION = re.compile(r"^v[0-9a-z]{4,16}$")
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _BASE36[r] + out
        if n == 0:
            return out


def new_generation() -> str:
    """A short, unique, time-ordered generation id, e.g. ``vt2k9qz4a``."""
    return "v" + _base36(int(time.time())) + _base36(secrets.randbelow(36**2)).rjust(2, "0")


@dataclass(frozen=True, slots=True)
class KeySpace:
    prefix: str

    @property
    def current(self) -> str:
        return f"{self.prefix}:current"

    @property
    def building(self) -> str:
        return f"{self.prefix}:building"

    @property
    def lock(self) -> str:
        return f"{self.prefix}:rebuild:lock"

    @property
    def progress(self) -> str:
        return f"{self.prefix}:rebuild:progress"

    @property
    def pattern(self) -> str:
        """Glob of every key of this key space (for the clean-up of old generations)."""
        return f"{self.prefix}:*"

    def epoch(self, gen: str) -> str:
        return f"{self.prefix}:{gen}:epoch"

    def doc(self, gen: str, customer_id: str) -> str:
        return f"{self.prefix}:{gen}:{{{customer_id}}}:d"

    def history(self, gen: str, customer_id: str) -> str:
        return f"{self.prefix}:{gen}:{{{customer_id}}}:h"

    def customer(self, gen: str, customer_id: str) -> list[str]:
        """The keys of one customer, in the order the Lua scripts expect them."""
        return [self.doc(gen, customer_id), self.history(gen, customer_id)]

    def card_index(self, gen: str, card_id: str) -> str:
        return f"{self.prefix}:{gen}:c:{{{card_id}}}"

    def generation_of(self, key: str) -> str | None:
        """The generation a key belongs to, or None for a control key (or a key of another layout)."""
        rest = key[len(self.prefix) + 1:] if key.startswith(self.prefix + ":") else None
        if rest is None:
            return None
        gen = rest.split(":", 1)[0]
        return gen if GENERATION.match(gen) else None

    def is_control(self, key: str) -> bool:
        return key in (self.current, self.building, self.lock, self.progress)
