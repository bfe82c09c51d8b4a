"""The rule language of segments (SPEC §3.1): parse, validate and write back in canonical form.

A rule is a mapping (from YAML or JSON). Each key is a criterion or a combinator; several keys in one mapping
all have to hold (an implicit ``all``)::

    purchase_frequency: {min_purchases: 4, window_days: 30}       # or {cadence: weekly, window_days: 90}
    total_spend: {min: "1000.00", window_days: 365}                # window_days omitted: lifetime
    signup: {within_days: 30}                                      # or {before: 2025-01-01} / {since: ...}
    product_categories: {any_of: [Footwear], window_days: 180}     # all_of, min_purchases
    location: {most_frequent_store_in: [S-001], window_days: 365}
    loyalty_tier: {in: [Gold, Platinum]}
    frequency_drop: {recent_days: 60, baseline_days: 180, max_ratio: 0.5, min_baseline_purchases: 3}
    all: [...] / any: [...] / not: {...}

An invalid rule raises ``RuleError`` whose message names the path of each problem
(``rule.all[1].total_spend.min: ...``). Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_WINDOW_DAYS = 3660
MAX_COUNT = 1_000_000
MAX_MONEY = Decimal("999999999999.99")
MAX_LIST = 200
MAX_DEPTH = 12
MAX_CRITERIA = 100
MAX_NAME = 64

CADENCE_DAYS = {"daily": 1, "weekly": 7, "biweekly": 14, "monthly": 30, "quarterly": 91, "yearly": 365}


class RuleError(ValueError):
    """A rule that does not validate; ``problems`` lists (path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))


# --- the syntax tree -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurchaseFrequency:
    window_days: int | None
    min_purchases: int | None = None
    max_purchases: int | None = None
    cadence: str | None = None

    @property
    def cadence_min(self) -> int:
        """The purchases a cadence asks for: one per period on average over the window, rounded up."""
        assert self.cadence is not None and self.window_days is not None
        return math.ceil(self.window_days / CADENCE_DAYS[self.cadence])


@dataclass(frozen=True)
class TotalSpend:
    window_days: int | None
    min: Decimal | None = None
    max: Decimal | None = None


@dataclass(frozen=True)
class Signup:
    within_days: int | None = None
    before: date | None = None
    since: date | None = None


@dataclass(frozen=True)
class ProductCategories:
    window_days: int | None
    any_of: tuple[str, ...] = ()
    all_of: tuple[str, ...] = ()
    min_purchases: int = 1


@dataclass(frozen=True)
class Location:
    stores: tuple[str, ...]
    window_days: int | None


@dataclass(frozen=True)
class LoyaltyTier:
    tiers: tuple[str, ...]


@dataclass(frozen=True)
class FrequencyDrop:
    recent_days: int
    baseline_days: int
    max_ratio: Decimal
    min_baseline_purchases: int = 1


@dataclass(frozen=True)
class All:
    items: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    item: Rule


Criterion = PurchaseFrequency | TotalSpend | Signup | ProductCategories | Location | LoyaltyTier | FrequencyDrop
Rule = Criterion | All | AnyOf | Not

CRITERIA = ("purchase_frequency", "total_spend", "signup", "product_categories", "location", "loyalty_tier",
            "frequency_drop")
COMBINATORS = ("all", "any", "not")


# --- parsing ---------------------------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.criteria = 0

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))


def parse_rule(doc: Any, path: str = "rule") -> Rule:
    """Validate a rule document and return its syntax tree, or raise ``RuleError`` naming every bad path."""
    problems = _Problems()
    rule = _node(doc, path, problems, depth=0)
    if problems.items:
        raise RuleError(problems.items[:20])
    assert rule is not None
    return rule


def _node(doc: Any, path: str, problems: _Problems, depth: int) -> Rule | None:
    if depth > MAX_DEPTH:
        problems.add(path, f"rules nest at most {MAX_DEPTH} levels deep")
        return None
    if not isinstance(doc, dict):
        problems.add(path, f"expected a mapping with one of {', '.join(CRITERIA + COMBINATORS)}; "
                           f"got {_kind(doc)}")
        return None
    if not doc:
        problems.add(path, f"empty rule: give one of {', '.join(CRITERIA + COMBINATORS)}")
        return None
    parts: list[Rule] = []
    for key, value in doc.items():
        sub = f"{path}.{key}"
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                problems.add(sub, f"expected a non-empty list of rules; got {_kind(value)}")
                continue
            if len(value) > MAX_LIST:
                problems.add(sub, f"at most {MAX_LIST} rules")
                continue
            items = [_node(v, f"{sub}[{i}]", problems, depth + 1) for i, v in enumerate(value)]
            if all(i is not None for i in items):
                parts.append(All(tuple(items)) if key == "all" else AnyOf(tuple(items)))  # type: ignore[arg-type]
        elif key == "not":
            item = _node(value, sub, problems, depth + 1)
            if item is not None:
                parts.append(Not(item))
        elif key in _CRITERION_PARSERS:
            problems.criteria += 1
            if problems.criteria > MAX_CRITERIA:
                problems.add(sub, f"a rule has at most {MAX_CRITERIA} criteria")
                continue
            if not isinstance(value, dict):
                problems.add(sub, f"expected a mapping of settings; got {_kind(value)}")
                continue
            parsed = _CRITERION_PARSERS[key](_Fields(value, sub, problems, _ALLOWED[key]))
            if parsed is not None:
                parts.append(parsed)
        else:
            problems.add(sub, f"unknown criterion {key!r}; expected one of {', '.join(CRITERIA + COMBINATORS)}")
    if len(parts) != len(doc):
        return None
    return parts[0] if len(parts) == 1 else All(tuple(parts))


class _Fields:
    """Typed access to one criterion's settings, recording problems under their paths."""

    def __init__(self, doc: dict[str, Any], path: str, problems: _Problems, allowed: tuple[str, ...]) -> None:
        self.doc = doc
        self.path = path
        self.problems = problems
        self.ok = True
        for key in doc:
            if key not in allowed:
                self.fail(str(key), f"unknown setting; expected {', '.join(allowed)}")

    def fail(self, key: str | None, message: str) -> None:
        self.ok = False
        self.problems.add(f"{self.path}.{key}" if key else self.path, message)

    def has(self, key: str) -> bool:
        return self.doc.get(key) is not None

    def int(self, key: str, *, low: int, high: int, required: bool = False) -> int | None:
        value = self.doc.get(key)
        if value is None:
            if required:
                self.fail(key, "required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value.strip())
            else:
                self.fail(key, f"expected a whole number; got {_kind(value)}")
                return None
        if not low <= value <= high:
            self.fail(key, f"must be between {low} and {high}; got {value}")
            return None
        return value

    def window(self, key: str = "window_days", *, required: bool = False) -> int | None:
        return self.int(key, low=1, high=MAX_WINDOW_DAYS, required=required)

    def decimal(self, key: str, *, places: int, low: Decimal, high: Decimal, what: str) -> Decimal | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
            self.fail(key, f"expected {what}; got {_kind(value)}")
            return None
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            self.fail(key, f"expected {what}; got {value!r}")
            return None
        if not number.is_finite():
            self.fail(key, f"expected {what}; got {value!r}")
            return None
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -places:
            self.fail(key, f"at most {places} decimal places; got {value!r}")
            return None
        if not low <= number <= high:
            self.fail(key, f"must be between {low} and {high}; got {value!r}")
            return None
        return number

    def money(self, key: str) -> Decimal | None:
        value = self.decimal(key, places=2, low=Decimal(0), high=MAX_MONEY, what='an amount like "1000.00"')
        return None if value is None else value.quantize(Decimal("0.01"))

    def date(self, key: str) -> date | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        self.fail(key, f"expected a date like 2025-01-01; got {value!r}")
        return None

    def names(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        value = self.doc.get(key)
        if value is None:
            if required:
                self.fail(key, "required")
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            self.fail(key, f"expected a non-empty list of names; got {_kind(value)}")
            return ()
        if len(value) > MAX_LIST:
            self.fail(key, f"at most {MAX_LIST} names")
            return ()
        names: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip() or len(item) > MAX_NAME:
                self.fail(f"{key}[{i}]", f"expected a name of 1 to {MAX_NAME} characters; got {_kind(item)}")
                continue
            if item not in names:
                names.append(item)
        return tuple(names)


def _purchase_frequency(f: _Fields) -> PurchaseFrequency | None:
    window = f.window()
    low = f.int("min_purchases", low=0, high=MAX_COUNT)
    high = f.int("max_purchases", low=0, high=MAX_COUNT)
    cadence = f.doc.get("cadence")
    if cadence is not None:
        if cadence not in CADENCE_DAYS:
            f.fail("cadence", f"expected one of {', '.join(CADENCE_DAYS)}; got {cadence!r}")
        elif f.has("min_purchases") or f.has("max_purchases"):
            f.fail(None, "give either cadence or min_purchases/max_purchases, not both")
        elif window is None and f.ok:
            f.fail("window_days", "required with cadence")
    elif not f.has("min_purchases") and not f.has("max_purchases"):
        f.fail(None, "give min_purchases, max_purchases or cadence")
    if low is not None and high is not None and low > high:
        f.fail("max_purchases", f"must be at least min_purchases ({low})")
    if not f.ok:
        return None
    return PurchaseFrequency(window_days=window, min_purchases=low, max_purchases=high, cadence=cadence)


def _total_spend(f: _Fields) -> TotalSpend | None:
    window = f.window()
    low, high = f.money("min"), f.money("max")
    if not f.has("min") and not f.has("max"):
        f.fail(None, "give min, max or both")
    if low is not None and high is not None and low > high:
        f.fail("max", f"must be at least min ({low})")
    return TotalSpend(window_days=window, min=low, max=high) if f.ok else None


def _signup(f: _Fields) -> Signup | None:
    within = f.int("within_days", low=1, high=MAX_WINDOW_DAYS)
    before, since = f.date("before"), f.date("since")
    if not (f.has("within_days") or f.has("before") or f.has("since")):
        f.fail(None, "give within_days, before or since")
    if before is not None and since is not None and since >= before:
        f.fail("before", f"must be after since ({since})")
    return Signup(within_days=within, before=before, since=since) if f.ok else None


def _product_categories(f: _Fields) -> ProductCategories | None:
    window = f.window()
    any_of, all_of = f.names("any_of"), f.names("all_of")
    minimum = f.int("min_purchases", low=1, high=MAX_COUNT)
    if not f.has("any_of") and not f.has("all_of"):
        f.fail(None, "give any_of, all_of or both")
    if not f.ok:
        return None
    return ProductCategories(window_days=window, any_of=any_of, all_of=all_of, min_purchases=minimum or 1)


def _location(f: _Fields) -> Location | None:
    stores = f.names("most_frequent_store_in", required=True)
    window = f.window()
    return Location(stores=stores, window_days=window) if f.ok else None


def _loyalty_tier(f: _Fields) -> LoyaltyTier | None:
    tiers = f.names("in", required=True)
    return LoyaltyTier(tiers=tiers) if f.ok else None


def _frequency_drop(f: _Fields) -> FrequencyDrop | None:
    recent = f.window("recent_days", required=True)
    baseline = f.window("baseline_days", required=True)
    ratio = f.decimal("max_ratio", places=4, low=Decimal(0), high=Decimal(1), what="a ratio like 0.5")
    if not f.has("max_ratio"):
        f.fail("max_ratio", "required")
    minimum = f.int("min_baseline_purchases", low=1, high=MAX_COUNT)
    if not f.ok:
        return None
    assert recent is not None and baseline is not None and ratio is not None
    return FrequencyDrop(recent_days=recent, baseline_days=baseline, max_ratio=ratio.normalize(),
                         min_baseline_purchases=minimum or 1)


_CRITERION_PARSERS = {
    "purchase_frequency": _purchase_frequency,
    "total_spend": _total_spend,
    "signup": _signup,
    "product_categories": _product_categories,
    "location": _location,
    "loyalty_tier": _loyalty_tier,
    "frequency_drop": _frequency_drop,
}
_ALLOWED = {
    "purchase_frequency": ("min_purchases", "max_purchases", "cadence", "window_days"),
    "total_spend": ("min", "max", "window_days"),
    "signup": ("within_days", "before", "since"),
    "product_categories": ("any_of", "all_of", "min_purchases", "window_days"),
    "location": ("most_frequent_store_in", "window_days"),
    "loyalty_tier": ("in",),
    "frequency_drop": ("recent_days", "baseline_days", "max_ratio", "min_baseline_purchases"),
}


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"{type(value).__name__} {value!r}"


# --- canonical form --------------------------------------------------------------------------------------


def to_doc(rule: Rule) -> dict[str, Any]:
    """The canonical JSON form of a rule: what is stored, versioned and compared."""
    match rule:
        case All(items):
            return {"all": [to_doc(i) for i in items]}
        case AnyOf(items):
            return {"any": [to_doc(i) for i in items]}
        case Not(item):
            return {"not": to_doc(item)}
        case PurchaseFrequency():
            body: dict[str, Any] = {}
            if rule.cadence is not None:
                body["cadence"] = rule.cadence
            if rule.min_purchases is not None:
                body["min_purchases"] = rule.min_purchases
            if rule.max_purchases is not None:
                body["max_purchases"] = rule.max_purchases
            return {"purchase_frequency": _with_window(body, rule.window_days)}
        case TotalSpend():
            body = {}
            if rule.min is not None:
                body["min"] = f"{rule.min:.2f}"
            if rule.max is not None:
                body["max"] = f"{rule.max:.2f}"
            return {"total_spend": _with_window(body, rule.window_days)}
        case Signup():
            body = {}
            if rule.within_days is not None:
                body["within_days"] = rule.within_days
            if rule.before is not None:
                body["before"] = rule.before.isoformat()
            if rule.since is not None:
                body["since"] = rule.since.isoformat()
            return {"signup": body}
        case ProductCategories():
            body = {}
            if rule.any_of:
                body["any_of"] = list(rule.any_of)
            if rule.all_of:
                body["all_of"] = list(rule.all_of)
            body["min_purchases"] = rule.min_purchases
            return {"product_categories": _with_window(body, rule.window_days)}
        case Location():
            return {"location": _with_window({"most_frequent_store_in": list(rule.stores)}, rule.window_days)}
        case LoyaltyTier():
            return {"loyalty_tier": {"in": list(rule.tiers)}}
        case FrequencyDrop():
            return {"frequency_drop": {
                "recent_days": rule.recent_days, "baseline_days": rule.baseline_days,
                "max_ratio": str(rule.max_ratio), "min_baseline_purchases": rule.min_baseline_purchases,
            }}
    raise TypeError(f"not a rule: {rule!r}")


def _with_window(body: dict[str, Any], window_days: int | None) -> dict[str, Any]:
    if window_days is not None:
        body["window_days"] = window_days
    return body


def canonical(doc: Any, path: str = "rule") -> dict[str, Any]:
    """Validate ``doc`` and return its canonical form (raises ``RuleError``)."""
    return to_doc(parse_rule(doc, path))
