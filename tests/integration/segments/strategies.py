"""Hypothesis strategies for segment rules and customer histories (shared by the segment tests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

STORES = ("S-1", "S-2", "S-3")
CATEGORIES = ("Footwear", "Socks", "Denim")
TIERS = ("Bronze", "Gold", "Platinum")
TODAY = date(2026, 6, 15)

windows = st.sampled_from([None, 1, 2, 7, 30, 45, 90, 365])
small = st.integers(min_value=0, max_value=4)
money = st.integers(min_value=0, max_value=600000).map(lambda c: f"{Decimal(c) / 100:.2f}")


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


purchase_frequency = st.one_of(
    st.builds(lambda lo, hi, w: _drop_none({"min_purchases": lo, "max_purchases": None if hi is None else lo + hi,
                                            "window_days": w}),
              small, st.none() | small, windows),
    st.builds(lambda hi, w: {"max_purchases": hi, **_drop_none({"window_days": w})}, small, windows),
    st.builds(lambda c, w: {"cadence": c, "window_days": w},
              st.sampled_from(["daily", "weekly", "biweekly", "monthly"]), st.sampled_from([7, 14, 30, 60, 90])),
).map(lambda body: {"purchase_frequency": body})

total_spend = st.builds(
    lambda lo, hi, w, which: {"total_spend": _drop_none({
        "min": lo if which != "max" else None, "max": hi if which != "min" else None, "window_days": w})},
    money, money, windows, st.sampled_from(["min", "max", "both"]),
).filter(lambda r: "min" not in r["total_spend"] or "max" not in r["total_spend"]
         or Decimal(r["total_spend"]["min"]) <= Decimal(r["total_spend"]["max"]))

signup = st.one_of(
    st.builds(lambda n: {"within_days": n}, st.integers(min_value=1, max_value=60)),
    st.builds(lambda d: {"before": (TODAY - timedelta(days=d)).isoformat()}, st.integers(-5, 400)),
    st.builds(lambda d: {"since": (TODAY - timedelta(days=d)).isoformat()}, st.integers(-5, 400)),
).map(lambda body: {"signup": body})

product_categories = st.builds(
    lambda any_of, all_of, n, w: {"product_categories": _drop_none({
        "any_of": any_of or None, "all_of": all_of or None if any_of else all_of or ["Socks"],
        "min_purchases": n, "window_days": w})},
    st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True),
    st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True),
    st.integers(min_value=1, max_value=3), windows,
)

location = st.builds(
    lambda stores, w: {"location": _drop_none({"most_frequent_store_in": stores, "window_days": w})},
    st.lists(st.sampled_from(STORES), min_size=1, max_size=2, unique=True), windows,
)

loyalty_tier = st.builds(lambda tiers: {"loyalty_tier": {"in": tiers}},
                         st.lists(st.sampled_from(TIERS), min_size=1, max_size=2, unique=True))

frequency_drop = st.builds(
    lambda r, b, ratio, n: {"frequency_drop": {"recent_days": r, "baseline_days": b, "max_ratio": ratio,
                                               "min_baseline_purchases": n}},
    st.sampled_from([7, 30, 60]), st.sampled_from([30, 90, 180]),
    st.sampled_from(["0", "0.25", "0.5", "0.3333", "1"]), st.integers(min_value=1, max_value=3),
)

criteria = st.one_of(purchase_frequency, total_spend, signup, product_categories, location, loyalty_tier,
                     frequency_drop)

rules = st.recursive(
    criteria,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda items: {"all": items}),
        st.lists(inner, min_size=1, max_size=3).map(lambda items: {"any": items}),
        inner.map(lambda item: {"not": item}),
    ),
    max_leaves=5,
)


@dataclass(frozen=True)
class Sale:
    invoice: str
    day: date
    store: str
    total: Decimal
    units: int
    categories: tuple[str, ...]
    voided: bool
    returns: tuple[tuple[int, Decimal], ...]  # (units, refund)


@dataclass(frozen=True)
class Customer:
    customer_id: str
    signup: date | None
    tier: str | None
    sales: tuple[Sale, ...]


def _sale(i: int, customer: int) -> st.SearchStrategy[Sale]:
    return st.builds(
        lambda day, store, cents, units, cats, voided, returns: Sale(
            f"INV-{customer}-{i}", TODAY - timedelta(days=day), store, Decimal(cents) / 100, units, tuple(cats),
            voided, tuple((min(u, units + 1), min(Decimal(r) / 100, Decimal(cents) / 100 + 1)) for u, r in returns),
        ),
        st.integers(min_value=-2, max_value=400) | st.sampled_from([0, 1, 29, 30, 31, 59, 60, 61, 89, 90, 364, 365]),
        st.sampled_from(STORES), st.integers(min_value=0, max_value=300000), st.integers(min_value=1, max_value=3),
        st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2, unique=True),
        st.sampled_from([False, False, False, True]),
        st.lists(st.tuples(st.integers(0, 3), st.integers(0, 60000)), max_size=2),
    )


@st.composite
def customers(draw: Any, max_customers: int = 5) -> list[Customer]:
    n = draw(st.integers(min_value=1, max_value=max_customers))
    out = []
    for c in range(n):
        signup = draw(st.none() | st.integers(min_value=-2, max_value=400).map(lambda d: TODAY - timedelta(days=d)))
        tier = draw(st.none() | st.sampled_from(TIERS))
        k = draw(st.integers(min_value=0, max_value=8))
        sales = tuple(draw(_sale(i, c)) for i in range(k))
        out.append(Customer(f"C-{c}", signup, tier, sales))
    return out
