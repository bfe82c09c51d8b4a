"""The intermediate representation of a compiled rule, and its Python interpreter (the per-customer path).

A rule compiles (``compiler.py``) into a tree of ``Leaf`` / ``Conj`` / ``Disj`` / ``Inv`` nodes. Each leaf has a
predicate and an explanation made of small expressions over **metrics**: per-customer aggregates of the facts
(purchases in a window, spend in a window, per-store counts, signup day, tier). Two interpreters give the IR
its meaning: this module evaluates it for one customer's facts in Python, ``sqlgen.py`` renders the very same
tree as SQL over the facts tables for every customer at once (the set-based path). Nothing else decides who
matches, so both paths mean the same thing; a property test holds them to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from services.segment_engine.facts import ZERO, CustomerFacts

# --- metrics ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """``days`` business days ending ``offset`` days before today, today included when offset is 0.

    ``days=None`` is every day up to the end (lifetime).
    """

    days: int | None
    offset: int = 0

    def bounds(self, today: date) -> tuple[date | None, date]:
        high = today - timedelta(days=self.offset)
        low = None if self.days is None else high - timedelta(days=self.days - 1)
        return low, high


class Metric:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Purchases(Metric):
    """Purchases in the window (only those with a line in one of ``categories``, when given)."""

    window: Window
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Spend(Metric):
    """Net spend of the invoices of the window."""

    window: Window


@dataclass(frozen=True, slots=True)
class StoreMaxAll(Metric):
    """The purchases, in the window, at the customer's busiest store (0 without purchases)."""

    window: Window


@dataclass(frozen=True, slots=True)
class StoreMaxIn(Metric):
    """The purchases, in the window, at the busiest of ``stores`` (0 without purchases there)."""

    window: Window
    stores: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoreTopIn(Metric):
    """The busiest of ``stores`` in the window (ties: the smallest store id), or None."""

    window: Window
    stores: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SignupDay(Metric):
    pass


@dataclass(frozen=True, slots=True)
class Tier(Metric):
    pass


# --- expressions, predicates, text -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class M:
    metric: Metric


@dataclass(frozen=True, slots=True)
class Const:
    value: int | Decimal | date | str


@dataclass(frozen=True, slots=True)
class Mul:
    a: Expr
    b: Expr


@dataclass(frozen=True, slots=True)
class Div:
    """Integer division of non-negative integers (the divisor is guarded to be positive by the caller)."""

    a: Expr
    b: Expr


@dataclass(frozen=True, slots=True)
class DaysSince:
    """Whole days from a date to today."""

    a: Expr


Expr = M | Const | Mul | Div | DaysSince


@dataclass(frozen=True, slots=True)
class Cmp:
    op: str  # one of >=, <=, >, <, =
    a: Expr
    b: Expr


@dataclass(frozen=True, slots=True)
class InSet:
    a: Expr
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NotNull:
    a: Expr


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Pred, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Pred, ...]


@dataclass(frozen=True, slots=True)
class Neg:
    item: Pred


Pred = Cmp | InSet | NotNull | And | Or | Neg


@dataclass(frozen=True, slots=True)
class Lit:
    text: str


@dataclass(frozen=True, slots=True)
class IntText:
    a: Expr


@dataclass(frozen=True, slots=True)
class MoneyText:
    """``$1,240.50``."""

    a: Expr


@dataclass(frozen=True, slots=True)
class DateText:
    a: Expr


@dataclass(frozen=True, slots=True)
class StrText:
    a: Expr


@dataclass(frozen=True, slots=True)
class CountText:
    """``1 purchase`` / ``4 purchases``."""

    a: Expr
    one: str
    many: str


@dataclass(frozen=True, slots=True)
class Choose:
    cond: Pred
    then: tuple[Piece, ...]
    otherwise: tuple[Piece, ...]


Piece = Lit | IntText | MoneyText | DateText | StrText | CountText | Choose

# --- rule nodes ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leaf:
    """One criterion: when it holds, and how to say so with the customer's own figures."""

    pred: Pred
    figures: tuple[Piece, ...]
    requirement: str


@dataclass(frozen=True, slots=True)
class Conj:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Disj:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Inv:
    item: Node


Node = Leaf | Conj | Disj | Inv

Part = tuple[Pred | None, tuple[Piece, ...]]


def node_pred(node: Node) -> Pred:
    match node:
        case Leaf(pred=pred):
            return pred
        case Conj(items):
            return And(tuple(node_pred(i) for i in items))
        case Disj(items):
            return Or(tuple(node_pred(i) for i in items))
        case Inv(item):
            return Neg(node_pred(item))
    raise TypeError(node)


def explanation_parts(node: Node, positive: bool = True, guard: Pred | None = None,
                      negated: bool = False) -> list[Part]:
    """The sentences that explain why ``node`` holds (``positive``) or fails, each shown under its guard.

    ``all`` that holds: every part; ``any`` that holds: the parts that hold; ``not``: the inner rule's
    failure. Explaining a failure mirrors it (``all`` fails by the parts that fail, ``any`` by all of them).
    A leaf states its requirement as the whole rule asks it: under an odd number of ``not``, "not ...".
    """
    match node:
        case Leaf(figures=figures, requirement=requirement):
            rule = f" (rule: not {requirement})" if negated else f" (rule: {requirement})"
            return [(guard, (*figures, Lit(rule)))]
        case Inv(item):
            return explanation_parts(item, not positive, guard, not negated)
        case Conj(items) if positive:
            return [p for i in items for p in explanation_parts(i, True, guard, negated)]
        case Conj(items):
            return [p for i in items
                    for p in explanation_parts(i, False, _and(guard, Neg(node_pred(i))), negated)]
        case Disj(items) if positive:
            return [p for i in items for p in explanation_parts(i, True, _and(guard, node_pred(i)), negated)]
        case Disj(items):
            return [p for i in items for p in explanation_parts(i, False, guard, negated)]
    raise TypeError(node)


def _and(guard: Pred | None, pred: Pred) -> Pred:
    return pred if guard is None else And((guard, pred))


def metrics_of(node: Node) -> list[Metric]:
    """Every metric the node reads, each once, in a stable order."""
    seen: dict[Metric, None] = {}
    for metric in _walk_metrics(node):
        seen.setdefault(metric, None)
    return list(seen)


def _walk_metrics(obj: Any) -> Iterator[Metric]:
    if isinstance(obj, M):
        yield obj.metric
    elif isinstance(obj, tuple):
        for item in obj:
            yield from _walk_metrics(item)
    elif hasattr(obj, "__slots__") and not isinstance(obj, Metric | Lit | Const):
        for name in obj.__slots__:
            yield from _walk_metrics(getattr(obj, name))


# --- the Python interpreter ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Env:
    today: date
    values: dict[Metric, Any]


def compute_metrics(metrics: Iterable[Metric], facts: CustomerFacts, today: date) -> dict[Metric, Any]:
    """Each metric's value for one customer as of ``today`` (a business day).

    One pass selects the counted invoices; each window's bounds are computed once (this runs for every
    touched customer and every segment on the ingest path, so it is kept free of per-invoice calls).
    """
    # counted: the sale is known and stands; purchase: counted and not returned in full (see facts.py).
    counted = [i for i in facts.invoices
               if i.has_sale and not i.voided and i.business_day is not None and i.business_day <= today]
    purchases = [i for i in counted if i.returned_units < i.units]
    values: dict[Metric, Any] = {}
    bounds: dict[Window, tuple[date | None, date]] = {}
    stores: dict[Window, Counter[str]] = {}

    def window_of(window: Window) -> tuple[date | None, date]:
        found = bounds.get(window)
        if found is None:
            found = bounds[window] = window.bounds(today)
        return found

    def per_store(window: Window) -> Counter[str]:
        counts = stores.get(window)
        if counts is None:
            low, high = window_of(window)
            counts = stores[window] = Counter(
                i.store_id for i in purchases
                if i.store_id is not None and i.business_day <= high  # type: ignore[operator]
                and (low is None or i.business_day >= low)  # type: ignore[operator]
            )
        return counts

    for metric in metrics:
        match metric:
            case Purchases(window=window, categories=categories):
                low, high = window_of(window)
                wanted = None if categories is None else set(categories)
                values[metric] = sum(
                    1 for i in purchases
                    if i.business_day <= high and (low is None or i.business_day >= low)  # type: ignore[operator]
                    and (wanted is None or not wanted.isdisjoint(i.categories))
                )
            case Spend(window=window):
                low, high = window_of(window)
                values[metric] = sum(
                    (i.net_spend for i in counted
                     if i.business_day <= high and (low is None or i.business_day >= low)),  # type: ignore[operator]
                    ZERO,
                )
            case StoreMaxAll(window=window):
                values[metric] = max(per_store(window).values(), default=0)
            case StoreMaxIn(window=window, stores=wanted_stores):
                counts = per_store(window)
                values[metric] = max((counts[s] for s in wanted_stores if s in counts), default=0)
            case StoreTopIn(window=window, stores=wanted_stores):
                counts = per_store(window)
                ranked = sorted((-counts[s], s) for s in wanted_stores if counts.get(s, 0) > 0)
                values[metric] = ranked[0][1] if ranked else None
            case SignupDay():
                values[metric] = facts.signup_day
            case Tier():
                values[metric] = facts.loyalty_tier
            case _:
                raise TypeError(metric)
    return values


def value(expr: Expr, env: Env) -> Any:
    """The value of an expression; None (a missing signup day or tier) propagates, as NULL does in SQL."""
    match expr:
        case M(metric):
            return env.values[metric]
        case Const(v):
            return v
        case Mul(a, b):
            left, right = value(a, env), value(b, env)
            return None if left is None or right is None else left * right
        case Div(a, b):
            left, right = value(a, env), value(b, env)
            return None if left is None or not right else left // right
        case DaysSince(a):
            day = value(a, env)
            return None if day is None else (env.today - day).days
    raise TypeError(expr)


def holds(pred: Pred, env: Env) -> bool:
    match pred:
        case Cmp(op, a, b):
            left, right = value(a, env), value(b, env)
            if left is None or right is None:
                return False
            return bool(_OPS[op](left, right))
        case InSet(a, values):
            found = value(a, env)
            return found is not None and found in values
        case NotNull(a):
            return value(a, env) is not None
        case And(items):
            return all(holds(i, env) for i in items)
        case Or(items):
            return any(holds(i, env) for i in items)
        case Neg(item):
            return not holds(item, env)
    raise TypeError(pred)


_OPS = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
    "=": lambda a, b: a == b,
}


def render(pieces: Iterable[Piece], env: Env) -> str:
    out: list[str] = []
    for piece in pieces:
        match piece:
            case Lit(text):
                out.append(text)
            case IntText(a):
                out.append(str(value(a, env)))
            case MoneyText(a):
                out.append(format_money(value(a, env)))
            case DateText(a):
                out.append(value(a, env).isoformat())
            case StrText(a):
                out.append(str(value(a, env)))
            case CountText(a, one, many):
                n = value(a, env)
                out.append(f"{n} {one if n == 1 else many}")
            case Choose(cond, then, otherwise):
                out.append(render(then if holds(cond, env) else otherwise, env))
            case _:
                raise TypeError(piece)
    return "".join(out)


def format_money(amount: Decimal) -> str:
    return "$" + format(amount, ",.2f")


def explain(parts: list[Part], env: Env) -> str:
    return "; ".join(render(pieces, env) for guard, pieces in parts if guard is None or holds(guard, env))
