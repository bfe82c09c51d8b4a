"""What the projection writes, as plain values: one per thing (a customer's segment list, a customer's
insights, one coupon row, one card), each with its version and its stored value already encoded.

Two ways in, with the same result byte for byte:
- ``from_model``: a contract model (the live consumer, whose runtime already validated the event);
- ``from_json``: the raw JSON of a domain topic record (the rebuild). Replayed events were validated when
  they were written, so the replay does not build a pydantic model per event: it reads the fields it stores
  with orjson and checks their types and formats (identifiers, money, currency, dates, enum values,
  versions) itself. Anything it does not recognise exactly (a missing field, another type, another
  format) goes through the full contract decode instead, which either accepts it (lax conversions) or
  rejects it as ``ContractViolation``, as before.

``Batch`` keeps, of each thing, only the newest version seen (first seen wins a tie), like
``domain.latest``: events are state-carrying, only the newest matters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from services.marketing_view import domain
from shared.contracts.codec import decode
from shared.contracts.common import MONEY_PATTERN
from shared.contracts.domain import (
    CouponRedemptionRecorded,
    CustomerCouponInsightsChanged,
    CustomerSegmentsChanged,
    GiftCardChanged,
)


@dataclass(slots=True)
class SegmentsWrite:
    customer_id: str
    version: int
    value: bytes


@dataclass(slots=True)
class InsightsWrite:
    customer_id: str
    version: int
    value: bytes


@dataclass(slots=True)
class CardWrite:
    card_id: str
    version: int
    customer_id: str | None
    previous_customer_id: str | None
    value: bytes


Write = SegmentsWrite | InsightsWrite | domain.RedemptionWrite | CardWrite


class Batch:
    """The newest write of each thing in a polled batch."""

    __slots__ = ("cards", "insights", "redemptions", "segments")

    def __init__(self) -> None:
        self.segments: dict[str, SegmentsWrite] = {}
        self.insights: dict[str, InsightsWrite] = {}
        self.redemptions: dict[tuple[str, str], domain.RedemptionWrite] = {}
        self.cards: dict[str, CardWrite] = {}

    def __len__(self) -> int:
        return len(self.segments) + len(self.insights) + len(self.redemptions) + len(self.cards)

    def add(self, write: Write | None) -> None:
        if write is None:
            return
        kind = type(write)
        if kind is domain.RedemptionWrite:
            store: dict[Any, Any] = self.redemptions
            key: Any = (write.customer_id, write.digest)  # type: ignore[union-attr]
        elif kind is CardWrite:
            store, key = self.cards, write.card_id  # type: ignore[union-attr]
        elif kind is SegmentsWrite:
            store, key = self.segments, write.customer_id  # type: ignore[union-attr]
        else:
            store, key = self.insights, write.customer_id  # type: ignore[union-attr]
        kept = store.get(key)
        if kept is None or write.version > kept.version:
            store[key] = write


# --- from a validated contract model (the live consumer) -----------------------------------------------


def from_model(event: Any) -> Write | None:
    """The write of one domain event model (None for an event the read model does not show)."""
    if isinstance(event, CouponRedemptionRecorded):
        return domain.redemption_write(event)
    if isinstance(event, GiftCardChanged):
        return CardWrite(event.card_id, event.version, event.customer_id, event.previous_customer_id,
                         domain.card_value(event))
    if isinstance(event, CustomerSegmentsChanged):
        return SegmentsWrite(event.customer_id, event.version, domain.segments_value(event))
    if isinstance(event, CustomerCouponInsightsChanged):
        return InsightsWrite(event.customer_id, event.version, domain.insights_value(event))
    return None


# --- from a record's raw JSON (the replay) -------------------------------------------------------------
#
# Every check below is one the contract makes too; a value that fails one, or is of another shape, goes
# through the full contract decode. What is checked: the envelope's schema_version and event_type, the
# version, and every field the read model stores or uses as a key (types, identifier/money/currency/date
# formats, enum values). What is not re-checked on replay: fields the read model neither stores nor uses
# (event_id, occurred_at, store_id, campaign, register_id, change, thresholds): the record passed the full
# contract when its service wrote it, and the live consumer checks them again.


class _Slow(Exception):
    """Not recognised exactly by the fast path: decode with the contract models instead."""


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}").fullmatch
_MONEY = re.compile(MONEY_PATTERN).fullmatch
_CURRENCY = re.compile(r"[A-Z]{3}").fullmatch
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}").fullmatch
_ASSIGNED = {"automatic": "a", "manual": "m"}
_DISCOUNT = {"amount": "a", "percent": "p", "unknown": "u"}
_STATE = {"open": "o", "expired": "e", "deactivated": "d"}
_STATUS = {"redeemed": 0, "reversed": 1}
_MASK = domain.MASK
_fromiso = datetime.fromisoformat
_dumps = orjson.dumps
_date_int = domain.date_int
_EPOCH, _ONE_MS = domain.EPOCH, domain.ONE_MS
_RedemptionWrite, _row_digest = domain.RedemptionWrite, domain.row_digest
_metas: dict[tuple[Any, ...], bytes] = {}


_checked_id = ""


def _id(value: Any) -> str:
    global _checked_id
    if value == _checked_id:  # a customer's events come one after the other (the topic's key)
        return value  # type: ignore[no-any-return]
    if type(value) is not str or not _ID(value):
        raise _Slow
    _checked_id = value
    return value


def _cents(value: Any) -> int:
    """"12.34" -> 1234, exactly ``domain.cents(Decimal(value))`` for the contract's money format."""
    if type(value) is not str or not _MONEY(value):
        raise _Slow
    return int(value.replace(".", "", 1))


def _day(value: Any) -> int:
    if type(value) is not str or not _DATE(value):
        raise _Slow
    return _date_int(date.fromisoformat(value))


def _moment_ms(value: Any) -> int:
    """RFC 3339 with an offset -> epoch milliseconds (floored, like ``domain.epoch_ms``)."""
    if type(value) is not str or len(value) < 20 or value[10] != "T":
        raise _Slow
    moment = _fromiso(value)
    if moment.tzinfo is None:
        raise _Slow
    return (moment - _EPOCH) // _ONE_MS


def _version(raw: dict[str, Any]) -> int:
    version, schema = raw["version"], raw["schema_version"]
    if type(version) is not int or version < 1 or type(schema) is not int or schema != 1:
        raise _Slow
    return version


def _segments(raw: dict[str, Any]) -> SegmentsWrite:
    version = _version(raw)
    items = raw["segments"]
    if type(items) is not list:
        raise _Slow
    rows = []
    for s in items:
        name, notes = s["name"], s.get("notes", "")
        if type(name) is not str or type(notes) is not str:
            raise _Slow
        rows.append([_id(s["segment_id"]), name, _day(s["date_assigned"]), _ASSIGNED[s["assigned_by"]], notes])
    return SegmentsWrite(_id(raw["customer_id"]), version, _dumps([version, rows]))


def _insights(raw: dict[str, Any]) -> InsightsWrite:
    version = _version(raw)
    only, window, purchases, with_coupon, share = (raw["coupon_only_buyer"], raw["window_days"], raw["purchases"],
                                                   raw["purchases_with_coupon"], raw["coupon_share"])
    if (type(only) is not bool or type(window) is not int or type(purchases) is not int or purchases < 0
            or type(with_coupon) is not int or with_coupon < 0 or type(share) is not str):
        raise _Slow
    value = _dumps([version, window, purchases, with_coupon, share, 1 if only else 0])
    return InsightsWrite(_id(raw["customer_id"]), version, value)


def _redemption(raw: dict[str, Any]) -> domain.RedemptionWrite:
    version = _version(raw)
    status = _STATUS[raw["status"]]
    reversed_at = raw.get("reversed_at")
    reversed_ms = None if reversed_at is None else _moment_ms(reversed_at)
    flags = raw.get("flags", [])
    if type(flags) is not list:
        raise _Slow
    if flags:
        for f in flags:
            if type(f) is not str:
                raise _Slow
    else:
        flags = None
    reason = raw.get("reversal_reason")
    code, name, value = raw["coupon_code"], raw["coupon_name"], raw["discount_value"]
    redemption_id = raw["redemption_id"]
    if (type(code) is not str or type(name) is not str or (value is not None and type(value) is not str)
            or (reason is not None and type(reason) is not str) or type(redemption_id) is not str
            or not _ID(redemption_id)):
        raise _Slow
    currency, discount = raw["currency"], raw["discount_type"]
    meta_key = (name, discount, value, currency)
    meta_bytes = _metas.get(meta_key)  # a coupon's name/type/value/currency repeat across its redemptions
    meta = [name, _DISCOUNT[discount], value, currency]
    if meta_bytes is None:
        if type(currency) is not str or not _CURRENCY(currency):
            raise _Slow
        if len(_metas) > 10_000:
            _metas.clear()
        meta_bytes = _metas[meta_key] = _dumps(meta)
    if status != 1:
        reason = None
    head: list[Any] = [version, code, _cents(raw["discount_amount"]), _id(raw["invoice_number"])]
    if reversed_ms is None and flags is None and reason is None:
        compact = _dumps(head) if status == 0 else _dumps([*head, status])
    else:
        tail: list[Any] = [status, reversed_ms, flags, None, reason]
        while tail and not tail[-1]:
            tail.pop()
        compact = _dumps(head + tail)
    return _RedemptionWrite(_id(raw["customer_id"]), _row_digest(redemption_id), version, _moment_ms(raw["used_at"]),
                            compact, _dumps([*head, status, reversed_ms, flags, meta, reason]), code, meta_bytes)


def _card(raw: dict[str, Any]) -> CardWrite:
    version = _version(raw)
    last4, masked, currency, expires = raw["last4"], raw["card_number_masked"], raw["currency"], raw["expiration_date"]
    if (type(last4) is not str or not 1 <= len(last4) <= 4 or type(masked) is not str or type(currency) is not str
            or not _CURRENCY(currency)):
        raise _Slow
    value: list[Any] = [version, last4, _cents(raw["original_balance"]), _cents(raw["current_balance"]), currency,
                        _day(raw["issue_date"]), None if expires is None else _day(expires), _STATE[raw["state"]]]
    if masked != _MASK + last4:
        value.append(masked)
    owner, previous = raw["customer_id"], raw.get("previous_customer_id")
    return CardWrite(_id(raw["card_id"]), version, None if owner is None else _id(owner),
                     None if previous is None else _id(previous), _dumps(value))


_FAST = {
    "customer.segments_changed": ("segments.memberships.v1", _segments),
    "customer.coupon_insights_changed": ("coupons.redemptions.v1", _insights),
    "coupon.redemption_recorded": ("coupons.redemptions.v1", _redemption),
    "giftcard.changed": ("giftcards.cards.v1", _card),
}


def from_json(topic: str, value: bytes | None) -> Write | None:
    """The write of one record of the logical domain ``topic``; raises ``ContractViolation`` for a record the
    contract rejects (exactly as ``codec.decode`` would)."""
    if value is not None:
        try:
            raw = orjson.loads(value)
            expected, fast = _FAST[raw["event_type"]]
            if expected == topic:
                return fast(raw)
        except (_Slow, KeyError, TypeError, ValueError, AttributeError, IndexError, orjson.JSONDecodeError):
            pass
    return from_model(decode(topic, value))
