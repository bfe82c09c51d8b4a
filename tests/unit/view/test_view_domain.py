"""Pure rules of marketing_view: stored forms round-trip, status as of reading, display, cursors, ETags."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.marketing_view import domain
from shared.contracts.domain import CardState
from tests.integration.view.builders import card, insights, redemption, segments

NY = ZoneInfo("America/New_York")


def stored(event: object) -> list:
    """What Redis holds for a card, as the read script hands it over (decoded JSON)."""
    return orjson.loads(domain.card_value(event))  # type: ignore[arg-type]
TEMPLATE = "https://pos.example/invoices/{invoice_number}"
TODAY = date(2026, 12, 3)


@pytest.mark.parametrize(
    ("state", "expires", "balance", "expected"),
    [
        (CardState.OPEN, None, "20.00", "active"),
        (CardState.OPEN, date(2026, 12, 3), "20.00", "active"),  # expires at the end of its date
        (CardState.OPEN, date(2026, 12, 2), "20.00", "expired"),  # passed: expired, no event needed
        (CardState.EXPIRED, date(2027, 1, 1), "20.00", "expired"),  # expired by staff
        (CardState.OPEN, None, "0.00", "fully_redeemed"),
        (CardState.OPEN, date(2026, 12, 2), "0.00", "expired"),
        (CardState.DEACTIVATED, None, "20.00", "deactivated"),
        (CardState.DEACTIVATED, date(2020, 1, 1), "0.00", "deactivated"),
    ],
)
def test_card_status_is_computed_as_of_reading(state: CardState, expires: date | None, balance: str,
                                               expected: str) -> None:
    assert domain.card_status(state, expires, Decimal(balance), TODAY) == expected


def test_today_is_the_business_day_not_the_utc_day() -> None:
    late_evening_in_new_york = datetime(2026, 12, 4, 3, 30, tzinfo=UTC)
    assert domain.today_in(NY, late_evening_in_new_york) == date(2026, 12, 3)


@pytest.mark.parametrize(
    ("kind", "value", "amount", "currency", "expected"),
    [
        ("percent", "10", "10.20", "USD", "10% ($10.20)"),
        ("amount", "5.00", "5.00", "USD", "$5.00"),
        ("amount", "5.00", "3.20", "USD", "$5.00 ($3.20)"),
        ("unknown", None, "4.00", "USD", "$4.00"),
        ("amount", "1500.00", "1500.00", "EUR", "€1,500.00"),
        ("percent", "12.5", "2.50", "CHF", "12.5% (2.50 CHF)"),
    ],
)
def test_discount_display(kind: str, value: str | None, amount: str, currency: str, expected: str) -> None:
    assert domain.discount_display(kind, value, amount, currency) == expected


def test_segments_round_trip() -> None:
    event = segments("C-1", 4, ("high-value", "High Value", "2026-11-28", "automatic", "Spent $1,240.50"),
                     ("vip", "VIP", "2026-01-02", "manual", "Owner's friend"))
    raw = domain.segments_value(event)
    assert orjson.loads(raw)[0] == 4, "the version comes first: Lua reads it without decoding JSON"
    assert domain.segment_items(orjson.loads(raw)) == [
        {"segment_id": "high-value", "name": "High Value", "date_assigned": "2026-11-28", "assigned_by": "automatic",
         "notes": "Spent $1,240.50"},
        {"segment_id": "vip", "name": "VIP", "date_assigned": "2026-01-02", "assigned_by": "manual",
         "notes": "Owner's friend"},
    ]
    assert domain.segment_items(None) == []


def test_redemption_round_trip_compact_and_full() -> None:
    event = redemption("C-1", "r-1", version=3, used_at="2026-11-28T14:03:12-05:00", invoice="INV:1.2")
    w = domain.redemption_write(event)
    assert w.digest == domain.row_digest("r-1") and len(w.digest) == domain.DIGEST_CHARS
    assert w.used_ms == domain.epoch_ms(datetime.fromisoformat("2026-11-28T14:03:12-05:00"))
    meta = orjson.loads(w.meta)
    expected = {
        "coupon_code": "FALL10", "coupon_name": "Fall 10% off",
        "discount": {"type": "percent", "value": "10", "amount": "10.20", "currency": "USD",
                     "display": "10% ($10.20)"},
        "used_at": "2026-11-28T14:03:12-05:00", "invoice_number": "INV:1.2",
        "invoice_url": "https://pos.example/invoices/INV%3A1.2", "status": "redeemed", "reversed_at": None,
        "reversal_reason": None, "flags": [],
    }
    compact = domain.coupon_item(w.used_ms, orjson.loads(w.compact), meta, tz=NY, invoice_template=TEMPLATE)
    full = domain.coupon_item(w.used_ms, orjson.loads(w.full), None, tz=NY, invoice_template=TEMPLATE)
    assert compact == expected
    assert full == expected
    assert len(w.compact) < 64, "a plain row fits a listpack entry"


def test_reversed_redemption_keeps_its_row_marked_reversed() -> None:
    reversed_at = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    event = redemption("C-1", "r-1", version=2, status="reversed", reversed_at=reversed_at, flags=["unknown_code"],
                       reason="return")
    w = domain.redemption_write(event)
    item = domain.coupon_item(w.used_ms, orjson.loads(w.compact), orjson.loads(w.meta), tz=NY,
                              invoice_template=TEMPLATE)
    full = domain.coupon_item(w.used_ms, orjson.loads(w.full), None, tz=NY, invoice_template=TEMPLATE)
    assert item == full
    assert item["status"] == "reversed" and item["reversal_reason"] == "return"
    assert item["reversed_at"] == "2026-11-29T05:00:00-05:00"
    assert item["flags"] == ["unknown_code"]


@given(
    amount=st.decimals(min_value=Decimal("0.00"), max_value=Decimal("99999.99"), places=2),
    kind=st.sampled_from(["amount", "percent", "unknown"]),
    name=st.text(max_size=40),
    moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    version=st.integers(min_value=1, max_value=10**12),
)
def test_any_redemption_round_trips(amount: Decimal, kind: str, name: str, moment: datetime, version: int) -> None:
    value = None if kind == "unknown" else ("10" if kind == "percent" else f"{amount:.2f}")
    event = redemption("C-1", str(uuid.uuid4()), version=version, kind=kind, value=value, amount=f"{amount:.2f}",
                       name=name, used_at=moment)
    w = domain.redemption_write(event)
    item = domain.coupon_item(w.used_ms, orjson.loads(w.compact), orjson.loads(w.meta), tz=NY,
                              invoice_template=TEMPLATE)
    assert item["discount"]["amount"] == f"{amount:.2f}"
    assert item["coupon_name"] == name
    assert datetime.fromisoformat(item["used_at"]) == moment.replace(microsecond=0)


def test_gift_card_round_trip_and_masking() -> None:
    event = card("gc-1", "C-1", version=5, last4="4821", original="50.00", current="20.00",
                 issued="2026-01-02", expires="2027-01-02")
    item = domain.gift_card_item("gc-1", stored(event), TODAY)
    assert item == {
        "card_id": "gc-1", "card_number_masked": "•••• •••• •••• 4821", "last4": "4821", "original_balance": "50.00",
        "current_balance": "20.00", "currency": "USD", "status": "active", "issue_date": "2026-01-02",
        "expiration_date": "2027-01-02",
    }
    never = domain.gift_card_item("gc-1", stored(card("gc-1", "C-1", expires=None)), TODAY)
    assert never["expiration_date"] is None
    short = card("gc-2", "C-1", last4="77").model_copy(update={"card_number_masked": "•••• 77"})
    assert domain.gift_card_item("gc-2", stored(short), TODAY)["card_number_masked"] == "•••• 77"


def test_insights_balance_and_expiring() -> None:
    cards = [
        domain.gift_card_item("a", stored(card("a", "C", current="20.00", expires="2026-12-20")), TODAY),
        domain.gift_card_item("b", stored(card("b", "C", current="30.00", expires="2027-06-01")), TODAY),
        domain.gift_card_item("c", stored(card("c", "C", current="40.00", expires="2026-11-01")), TODAY),
        domain.gift_card_item("d", stored(card("d", "C", current="5.00", state="deactivated")), TODAY),
        domain.gift_card_item("e", stored(card("e", "C", current="7.00", currency="EUR",
                                                         expires=None)), TODAY),
    ]
    assert domain.gift_card_balances(cards, TODAY, 30) == [
        {"currency": "EUR", "total_balance": "7.00", "expiring_balance": "0.00", "expiring_within_days": 30,
         "active_cards": 1},
        {"currency": "USD", "total_balance": "50.00", "expiring_balance": "20.00", "expiring_within_days": 30,
         "active_cards": 2},
    ]
    raw = orjson.loads(domain.insights_value(insights("C", 2, purchases=12, with_coupon=5, share="0.4167", only=True)))
    assert domain.price_sensitivity(raw) == {"window_days": 365, "purchases": 12, "purchases_with_coupon": 5,
                                             "coupon_share": "0.4167", "coupon_only_buyer": True}
    assert domain.price_sensitivity(None) is None


def test_latest_keeps_the_highest_version_of_each_thing() -> None:
    events = [segments("A", 2), segments("A", 5), segments("B", 1), segments("A", 3), segments("A", 5)]
    kept = {e.customer_id: e.version for e in domain.latest(events, lambda e: e.customer_id)}
    assert kept == {"A": 5, "B": 1}


def test_cursor_round_trip_and_rejects_forgeries() -> None:
    cursor = domain.Cursor(1764356592000, domain.row_digest("r-1"))
    assert domain.Cursor.decode(cursor.encode()) == cursor
    for bad in ["", "!!!", "bm90LWEtY3Vyc29y", domain.Cursor(1, "short").encode(), "x" * 200]:
        with pytest.raises(domain.InvalidCursor):
            domain.Cursor.decode(bad)


def test_page_size_default_and_cap() -> None:
    assert domain.page_size(None) == 20
    assert domain.page_size(5) == 5
    assert domain.page_size(1000) == 100
    assert domain.page_size(None, default=50) == 50


def test_etag_ignores_as_of_only() -> None:
    body = {"customer_id": "C", "as_of": "2026-12-03T15:04:05Z", "segments": []}
    later = {**body, "as_of": "2026-12-03T15:09:00Z"}
    changed = {**body, "segments": [{"name": "VIP"}]}
    assert domain.etag(body) == domain.etag(later)
    assert domain.etag(body) != domain.etag(changed)
    tag = domain.etag(body)
    assert domain.etag_matches(tag, tag)
    assert domain.etag_matches(f'"nope", W/{tag}', tag)
    assert domain.etag_matches("*", tag)
    assert not domain.etag_matches(None, tag)
    assert not domain.etag_matches('"other"', tag)
