"""Redis -> the SPEC §2.4 JSON of a customer's Marketing tab, in one round trip.

One pipeline: EXISTS on the served generation's epoch sentinel, and one Lua read of the customer's three
keys (one slot). A vanished sentinel means Redis lost its data: the read answers "unavailable", never an
empty tab presented as current.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.marketing_view import domain, scripts
from services.marketing_view.generations import ReadModel
from services.marketing_view.keys import KeySpace
from services.marketing_view.scripts import AnyRedis


class ReadModelUnavailable(RuntimeError):
    """No generation can answer (Redis lost its data, or the first build has not finished)."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class TabSettings:
    timezone: ZoneInfo
    invoice_url_template: str
    expiring_within_days: int = 30
    page_size: int = domain.DEFAULT_PAGE_SIZE


class TabReader:
    def __init__(self, redis: AnyRedis, keys: KeySpace, model: ReadModel, settings: TabSettings) -> None:
        self._redis = redis
        self._keys = keys
        self._model = model
        self._settings = settings

    async def read(self, customer_id: str, *, cursor: domain.Cursor | None = None, limit: int | None = None,
                   now: datetime | None = None) -> dict[str, Any]:
        size = domain.page_size(limit, self._settings.page_size)
        args = [size, cursor.used_ms if cursor else "", cursor.digest if cursor else ""]
        try:
            return await self._read(customer_id, args, size, now)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise ReadModelUnavailable(f"redis unreachable ({type(exc).__name__})") from exc

    async def _read(self, customer_id: str, args: list[Any], size: int, now: datetime | None) -> dict[str, Any]:
        for _ in range(2):
            gen = self._model.current
            if not self._model.serving or gen is None:
                raise ReadModelUnavailable(self._model.status())
            exists, raw = await scripts.run(
                self._redis, [("read_tab", self._keys.customer(gen, customer_id), args)],
                before=lambda pipe, gen=gen: pipe.exists(self._keys.epoch(gen)),
            )
            if exists:
                return self._tab(customer_id, raw, size, now or datetime.now(UTC))
            await self._model.refresh()  # switched by a rebuild elsewhere, or lost: look again once
        raise ReadModelUnavailable(self._model.status())

    def _tab(self, customer_id: str, raw: bytes, size: int, now: datetime) -> dict[str, Any]:
        s = self._settings
        today = domain.today_in(s.timezone, now)
        doc = orjson.loads(raw)
        cards = [domain.gift_card_item(card_id, value, today) for card_id, value in doc["c"]]
        rows = doc["r"]
        metas = doc["m"]
        items = [domain.coupon_item(int(used_ms), row, metas.get(row[1]), tz=s.timezone,
                                    invoice_template=s.invoice_url_template) for _, used_ms, row in rows[:size]]
        next_cursor = None
        if len(rows) > size:
            digest, used_ms, _ = rows[size - 1]
            next_cursor = domain.Cursor(int(used_ms), digest).encode()
        cards = domain.sort_gift_cards(cards)
        return {
            "customer_id": customer_id,
            "as_of": now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "segments": domain.segment_items(doc["s"]),
            "coupon_usage": {"items": items, "next_cursor": next_cursor},
            "gift_cards": cards,
            "insights": {
                "gift_card_balances": domain.gift_card_balances(cards, today, s.expiring_within_days),
                "coupon_price_sensitivity": domain.price_sensitivity(doc["i"]),
            },
        }
