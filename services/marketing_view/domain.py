"""Pure rules of the Marketing tab read model (no Redis, no HTTP here).

- the compact forms the projection stores (JSON arrays whose first element is the version, so a Lua
  script compares versions without decoding JSON);
- the SPEC §2.4 JSON built back from them, with gift card status computed at the moment of reading;
- cursors, ETags, discount display, insights.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson

from shared.contracts.domain import (
    AssignedBy,
    CardState,
    CouponRedemptionRecorded,
    CustomerCouponInsightsChanged,
    CustomerSegmentsChanged,
    DiscountType,
    GiftCardChanged,
    RedemptionStatus,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
MASK = "•••• •••• •••• "
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

_ASSIGNED = {AssignedBy.AUTOMATIC: "a", AssignedBy.MANUAL: "m"}
_ASSIGNED_BACK = {v: k.value for k, v in _ASSIGNED.items()}
_DISCOUNT = {DiscountType.AMOUNT: "a", DiscountType.PERCENT: "p", DiscountType.UNKNOWN: "u"}
_DISCOUNT_BACK = {v: k.value for k, v in _DISCOUNT.items()}
_STATE = {CardState.OPEN: "o", CardState.EXPIRED: "e", CardState.DEACTIVATED: "d"}
_STATE_BACK = {v: k for k, v in _STATE.items()}
_REDEMPTION = {RedemptionStatus.REDEEMED: 0, RedemptionStatus.REVERSED: 1}
_REDEMPTION_BACK = {v: k.value for k, v in _REDEMPTION.items()}
_SYMBOLS = {"USD": "$", "CAD": "CA$", "AUD": "A$", "NZD": "NZ$", "MXN": "MX$", "EUR": "€", "GBP": "£", "JPY": "¥"}

T = TypeVar("T")
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


# --- what the projection stores ------------------------------------------------------------------------


def epoch_ms(moment: datetime) -> int:
    return (moment - EPOCH) // ONE_MS


def from_epoch_ms(ms: int, tz: ZoneInfo) -> datetime:
    return (EPOCH + timedelta(milliseconds=ms)).astimezone(tz)


DIGEST_CHARS = 8


def row_digest(redemption_id: str) -> str:
    """8 characters (48 bits) naming a redemption inside its customer's keys. Two redemptions of one customer
    share a digest with odds of n^2/2^49 (about 2e-9 for a customer with 1,000 redemptions)."""
    digest = hashlib.blake2b(redemption_id.encode(), digest_size=6).digest()
    return binascii.b2a_base64(digest, newline=False).translate(_URLSAFE).decode()  # = urlsafe_b64encode


def cents(amount: Decimal) -> int:
    """Money is stored as integer cents (exact, and shorter than the decimal string)."""
    return int(amount.scaleb(2))


def from_cents(value: int) -> str:
    return f"{Decimal(value).scaleb(-2):.2f}"


def date_int(day: date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


def from_date_int(value: int) -> date:
    return date(value // 10000, value // 100 % 100, value % 100)


def segments_value(event: CustomerSegmentsChanged) -> bytes:
    return dumps([event.version, [
        [s.segment_id, s.name, date_int(s.date_assigned), _ASSIGNED[s.assigned_by], s.notes] for s in event.segments
    ]])


def insights_value(event: CustomerCouponInsightsChanged) -> bytes:
    return dumps([event.version, event.window_days, event.purchases, event.purchases_with_coupon,
                  event.coupon_share, 1 if event.coupon_only_buyer else 0])


@dataclass(slots=True)  # not frozen: a frozen dataclass takes 4x longer to build (the replay builds millions)
class RedemptionWrite:
    """One Coupon Usage History row, ready for the Lua script (which picks ``compact`` or ``full``)."""

    customer_id: str
    digest: str
    version: int
    used_ms: int
    compact: bytes  # without the coupon's name/type/value: those are stored once per code
    full: bytes  # with them, for a row whose coupon was named differently from the stored one
    code: str
    meta: bytes


def redemption_write(event: CouponRedemptionRecorded) -> RedemptionWrite:
    status = _REDEMPTION[event.status]
    reversed_ms = epoch_ms(event.reversed_at) if event.reversed_at else None
    flags = list(event.flags) or None
    reason = event.reversal_reason if event.status is RedemptionStatus.REVERSED else None
    meta = [event.coupon_name, _DISCOUNT[event.discount_type], event.discount_value, event.currency]
    head: list[Any] = [event.version, event.coupon_code, cents(event.discount_amount), event.invoice_number]
    tail: list[Any] = [status, reversed_ms, flags, None, reason]  # None: where a full row carries its meta
    while tail and not tail[-1]:
        tail.pop()  # [v, code, cents, invoice] for a plain redemption
    compact = head + tail
    full = [*head, status, reversed_ms, flags, meta, reason]
    return RedemptionWrite(
        customer_id=event.customer_id, digest=row_digest(event.redemption_id), version=event.version,
        used_ms=epoch_ms(event.used_at), compact=dumps(compact), full=dumps(full),
        code=event.coupon_code, meta=dumps(meta),
    )


def card_value(event: GiftCardChanged) -> bytes:
    value: list[Any] = [
        event.version, event.last4, cents(event.original_balance), cents(event.current_balance), event.currency,
        date_int(event.issue_date), date_int(event.expiration_date) if event.expiration_date else None,
        _STATE[event.state],
    ]
    if event.card_number_masked != MASK + event.last4:
        value.append(event.card_number_masked)
    return dumps(value)


def latest(events: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """State-carrying events: of each thing, only the highest version matters (first seen wins a tie)."""
    kept: dict[Hashable, T] = {}
    for event in events:
        k = key(event)
        if k not in kept or event.version > kept[k].version:  # type: ignore[attr-defined]
            kept[k] = event
    return list(kept.values())


# --- what the API shows --------------------------------------------------------------------------------


def today_in(tz: ZoneInfo, now: datetime) -> date:
    return now.astimezone(tz).date()


def card_status(state: CardState, expiration_date: date | None, current_balance: Decimal, today: date) -> str:
    """SPEC §2.3, as of the moment of reading: a date that passed an hour ago already means expired."""
    if state is CardState.DEACTIVATED:
        return "deactivated"
    if state is CardState.EXPIRED or (expiration_date is not None and expiration_date < today):
        return "expired"
    if current_balance == 0:
        return "fully_redeemed"
    return "active"


def money_display(amount: Decimal | str, currency: str) -> str:
    value = Decimal(amount)
    symbol = _SYMBOLS.get(currency)
    sign = "-" if value < 0 else ""
    if symbol is None:
        return f"{sign}{abs(value):,.2f} {currency}"
    return f"{sign}{symbol}{abs(value):,.2f}"


def discount_display(discount_type: str, value: str | None, amount: str, currency: str) -> str:
    applied = money_display(amount, currency)
    if discount_type == "percent" and value is not None:
        return f"{value}% ({applied})"
    if discount_type == "amount" and value is not None:
        nominal = money_display(value, currency)
        return nominal if Decimal(value) == Decimal(amount) else f"{nominal} ({applied})"
    return applied


def invoice_url(template: str, invoice_number: str) -> str:
    return template.replace("{invoice_number}", quote(invoice_number, safe=""))


def segment_items(stored: list[Any] | None) -> list[dict[str, Any]]:
    if not stored:
        return []
    _, segments = stored
    return [
        {"segment_id": sid, "name": name, "date_assigned": from_date_int(assigned).isoformat(),
         "assigned_by": _ASSIGNED_BACK[by], "notes": notes}
        for sid, name, assigned, by, notes in segments
    ]


def coupon_item(used_ms: int, row: list[Any], meta: list[Any] | None, *, tz: ZoneInfo,
                invoice_template: str) -> dict[str, Any]:
    _, code, amount_cents, invoice, *rest = row
    amount = from_cents(amount_cents)
    status = rest[0] if len(rest) > 0 else 0
    reversed_ms = rest[1] if len(rest) > 1 else None
    flags = rest[2] if len(rest) > 2 and rest[2] else []
    if len(rest) > 3 and rest[3]:
        meta = rest[3]
    reason = rest[4] if len(rest) > 4 else None
    name, type_code, value, currency = meta or [code, "u", None, "USD"]
    discount_type = _DISCOUNT_BACK[type_code]
    return {
        "coupon_code": code,
        "coupon_name": name,
        "discount": {"type": discount_type, "value": value, "amount": amount, "currency": currency,
                     "display": discount_display(discount_type, value, amount, currency)},
        "used_at": from_epoch_ms(used_ms, tz).isoformat(timespec="seconds"),
        "invoice_number": invoice,
        "invoice_url": invoice_url(invoice_template, invoice),
        "status": _REDEMPTION_BACK[status],
        "reversed_at": from_epoch_ms(reversed_ms, tz).isoformat(timespec="seconds") if reversed_ms else None,
        "reversal_reason": reason,
        "flags": flags,
    }


def gift_card_item(card_id: str, stored: list[Any], today: date) -> dict[str, Any]:
    _, last4, original, current, currency, issued, expires, state, *masked = stored
    expiration = from_date_int(expires) if expires else None
    return {
        "card_id": card_id,
        "card_number_masked": masked[0] if masked else MASK + last4,
        "last4": last4,
        "original_balance": from_cents(original),
        "current_balance": from_cents(current),
        "currency": currency,
        "status": card_status(_STATE_BACK[state], expiration, Decimal(current), today),
        "issue_date": from_date_int(issued).isoformat(),
        "expiration_date": expiration.isoformat() if expiration else None,
    }


def sort_gift_cards(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest card first; the card id breaks ties so the order never flickers."""
    return sorted(cards, key=lambda c: (c["issue_date"], c["card_id"]), reverse=True)


def price_sensitivity(stored: list[Any] | None) -> dict[str, Any] | None:
    if not stored:
        return None
    _, window_days, purchases, with_coupon, share, only = stored
    return {"window_days": window_days, "purchases": purchases, "purchases_with_coupon": with_coupon,
            "coupon_share": share, "coupon_only_buyer": bool(only)}


def gift_card_balances(cards: list[dict[str, Any]], today: date, within_days: int) -> list[dict[str, Any]]:
    """Per currency: what active cards hold, and how much of it expires within ``within_days`` days."""
    horizon = today + timedelta(days=within_days)
    totals: dict[str, list[Any]] = {}
    for card in cards:
        if card["status"] != "active":
            continue
        entry = totals.setdefault(card["currency"], [Decimal("0.00"), Decimal("0.00"), 0])
        balance = Decimal(card["current_balance"])
        entry[0] += balance
        entry[2] += 1
        expires = card["expiration_date"]
        if expires is not None and date.fromisoformat(expires) <= horizon:
            entry[1] += balance
    return [
        {"currency": currency, "total_balance": f"{total:.2f}", "expiring_balance": f"{expiring:.2f}",
         "expiring_within_days": within_days, "active_cards": count}
        for currency, (total, expiring, count) in sorted(totals.items())
    ]


# --- cursors and ETags ---------------------------------------------------------------------------------


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: strictly after (older than) this row."""

    used_ms: int
    digest: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.used_ms}.{self.digest}".encode()).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            ms, digest = raw.split(".", 1)
            if not ms.isdigit() or len(digest) != DIGEST_CHARS or len(ms) > 16:
                raise ValueError(raw)
            base64.urlsafe_b64decode(digest)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidCursor("cursor is not one this API gave out") from exc
        return cls(int(ms), digest)


def page_size(requested: int | None, default: int = DEFAULT_PAGE_SIZE) -> int:
    """Default 20, capped at 100."""
    return max(1, min(default if requested is None else requested, MAX_PAGE_SIZE))


def etag(body: dict[str, Any]) -> str:
    """A strong validator of everything the body says except ``as_of`` (which changes every second)."""
    stable = {k: v for k, v in body.items() if k != "as_of"}
    return '"' + hashlib.blake2b(orjson.dumps(stable, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest() + '"'


def etag_matches(if_none_match: str | None, current: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = [c.strip() for c in if_none_match.split(",")]
    return any(c.removeprefix("W/") == current for c in candidates)
