"""The IR rendered as SQL over the facts tables: the set-based path (backfill, sweep, preview).

One statement evaluates any number of compiled rules for every customer in a single pass over the facts:
the metrics every rule reads become ``FILTER`` aggregates of one ``GROUP BY customer_id`` (plus one per-store
aggregate when a rule asks for the most frequent store), and each rule becomes a ``CASE`` that yields the
explanation when the rule holds and NULL when it does not. Every value the rules bring (dates, amounts,
names, texts) travels as a bind parameter; nothing from a rule is pasted into the SQL text.

Pure string building (no driver import); ``store.py`` runs what this module writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from services.segment_engine import ir
from services.segment_engine.compiler import CompiledRule
from services.segment_engine.ir import (
    And,
    Choose,
    Cmp,
    Conj,
    Const,
    CountText,
    DateText,
    DaysSince,
    Disj,
    Div,
    InSet,
    IntText,
    Inv,
    Leaf,
    Lit,
    M,
    MoneyText,
    Mul,
    Neg,
    NotNull,
    Or,
    Purchases,
    SignupDay,
    Spend,
    StoreMaxAll,
    StoreMaxIn,
    StoreTopIn,
    StrText,
    Tier,
    Window,
)

MONEY_FORMAT = "FM999,999,999,999,999,990.00"


@dataclass
class Query:
    sql: str
    args: list[Any] = field(default_factory=list)


class _Params:
    def __init__(self) -> None:
        self.args: list[Any] = []
        self._index: dict[tuple[type, Any, str], str] = {}

    def add(self, v: Any, cast: str) -> str:
        key = (type(v), tuple(v) if isinstance(v, list | tuple) else v, cast)
        if key not in self._index:
            self.args.append(list(v) if isinstance(v, tuple) else v)
            self._index[key] = f"${len(self.args)}::{cast}"
        return self._index[key]

    def const(self, v: Any) -> str:
        if isinstance(v, bool):
            raise TypeError("no booleans in rule constants")
        if isinstance(v, int):
            return self.add(v, "bigint")
        if isinstance(v, Decimal):
            return self.add(v, "numeric")
        if isinstance(v, date):
            return self.add(v, "date")
        if isinstance(v, str):
            return self.add(v, "text")
        raise TypeError(f"unsupported constant {v!r}")


class _Renderer:
    def __init__(self, params: _Params, today: date, columns: dict[ir.Metric, str]) -> None:
        self.p = params
        self.today = today
        self.columns = columns

    def value(self, expr: ir.Expr) -> str:
        match expr:
            case M(metric):
                return self.columns[metric]
            case Const(v):
                return self.p.const(v)
            case Mul(a, b):
                return f"({self.value(a)} * {self.value(b)})"
            case Div(a, b):
                return f"({self.value(a)} / NULLIF({self.value(b)}, 0))"
            case DaysSince(a):
                return f"({self.p.const(self.today)} - {self.value(a)})"
        raise TypeError(expr)

    def pred(self, pred: ir.Pred) -> str:
        # Atoms are made NULL-safe (NULL compares as false, as None does in Python), so NOT is exact.
        match pred:
            case Cmp(op, a, b):
                return f"COALESCE({self.value(a)} {op} {self.value(b)}, false)"
            case InSet(a, values):
                return f"COALESCE({self.value(a)} = ANY({self.p.add(values, 'text[]')}), false)"
            case NotNull(a):
                return f"({self.value(a)} IS NOT NULL)"
            case And(items):
                return "(" + " AND ".join(self.pred(i) for i in items) + ")"
            case Or(items):
                return "(" + " OR ".join(self.pred(i) for i in items) + ")"
            case Neg(item):
                return f"(NOT {self.pred(item)})"
        raise TypeError(pred)

    def text(self, pieces: Sequence[ir.Piece]) -> str:
        if not pieces:
            return "''"
        rendered = [self.piece(p) for p in pieces]
        return rendered[0] if len(rendered) == 1 else "concat(" + ", ".join(rendered) + ")"

    def piece(self, piece: ir.Piece) -> str:
        match piece:
            case Lit(text):
                return self.p.add(text, "text")
            case IntText(a):
                return f"({self.value(a)})::text"
            case MoneyText(a):
                return f"('$' || to_char({self.value(a)}, '{MONEY_FORMAT}'))"
            case DateText(a):
                return f"to_char({self.value(a)}, 'YYYY-MM-DD')"
            case StrText(a):
                return f"({self.value(a)})::text"
            case CountText(a, one, many):
                v = self.value(a)
                return (f"(({v})::text || CASE WHEN {v} = 1 THEN {self.p.add(' ' + one, 'text')}"
                        f" ELSE {self.p.add(' ' + many, 'text')} END)")
            case Choose(cond, then, otherwise):
                return f"(CASE WHEN {self.pred(cond)} THEN {self.text(then)} ELSE {self.text(otherwise)} END)"
        raise TypeError(piece)

    def node(self, node: ir.Node) -> str:
        match node:
            case Leaf(pred=pred):
                return self.pred(pred)
            case Conj(items):
                return "(" + " AND ".join(self.node(i) for i in items) + ")"
            case Disj(items):
                return "(" + " OR ".join(self.node(i) for i in items) + ")"
            case Inv(item):
                return f"(NOT {self.node(item)})"
        raise TypeError(node)

    def explanation(self, parts: list[ir.Part]) -> str:
        rendered = []
        for guard, pieces in parts:
            text = self.text(pieces)
            rendered.append(text if guard is None else f"CASE WHEN {self.pred(guard)} THEN {text} END")
        return "concat_ws('; ', " + ", ".join(rendered) + ")"


def _window_filter(p: _Params, window: Window, today: date, column: str = "i.business_day") -> str:
    low, high = window.bounds(today)
    parts = [f"{column} <= {p.const(high)}"]
    if low is not None:
        parts.append(f"{column} >= {p.const(low)}")
    return " AND ".join(parts)


def evaluation_query(rules: Sequence[CompiledRule], today: date, *, customer_ids: Sequence[str] | None = None,
                     only_matching: bool = False) -> Query:
    """For every customer (or those of ``customer_ids``): ``customer_id``, ``facts_version`` and ``notes``, an
    array with one element per rule: the explanation when the rule matches as of ``today``, else NULL.

    With ``only_matching``, only the customers at least one rule matches are returned.
    """
    p = _Params()
    metrics: dict[ir.Metric, None] = {}
    for rule in rules:
        for m in rule.metrics:
            metrics.setdefault(m, None)
    columns: dict[ir.Metric, str] = {}
    main_cols: list[str] = []  # aggregates per customer over the invoices
    store_windows: dict[Window, str] = {}  # per (customer, store) purchase counts, one column per window
    store_cols: list[str] = []  # aggregates per customer over the per-store counts
    base_cols: list[str] = []
    lowest: date | None = today  # the earliest business day any metric reads (None: lifetime)
    for n, metric in enumerate(metrics):
        name = f"m{n}"
        columns[metric] = name
        match metric:
            case Purchases(window=window, categories=categories):
                cond = "i.is_purchase AND " + _window_filter(p, window, today)
                if categories is not None:
                    cond += f" AND i.categories && {p.add(categories, 'text[]')}"
                main_cols.append(f"count(*) FILTER (WHERE {cond}) AS {name}")
                base_cols.append(f"COALESCE(f.{name}, 0) AS {name}")
            case Spend(window=window):
                main_cols.append(f"sum(i.net_spend) FILTER (WHERE {_window_filter(p, window, today)}) AS {name}")
                base_cols.append(f"COALESCE(f.{name}, 0.00) AS {name}")
            case StoreMaxAll(window=window) | StoreMaxIn(window=window) | StoreTopIn(window=window):
                if window not in store_windows:
                    store_windows[window] = f"n{len(store_windows)}"
                count = store_windows[window]
                if isinstance(metric, StoreMaxAll):
                    store_cols.append(f"max({count}) AS {name}")
                    base_cols.append(f"COALESCE(sa.{name}, 0) AS {name}")
                elif isinstance(metric, StoreMaxIn):
                    stores = p.add(metric.stores, "text[]")
                    store_cols.append(f"max({count}) FILTER (WHERE store_id = ANY({stores})) AS {name}")
                    base_cols.append(f"COALESCE(sa.{name}, 0) AS {name}")
                else:
                    stores = p.add(metric.stores, "text[]")
                    store_cols.append(f"(array_agg(store_id ORDER BY {count} DESC, store_id COLLATE \"C\")"
                                      f" FILTER (WHERE store_id = ANY({stores}) AND {count} > 0))[1] AS {name}")
                    base_cols.append(f"sa.{name} AS {name}")
            case SignupDay():
                base_cols.append(f"c.signup_day AS {name}")
            case Tier():
                base_cols.append(f"c.loyalty_tier AS {name}")
            case _:
                raise TypeError(metric)
        window_of = getattr(metric, "window", None)
        if isinstance(window_of, Window):
            low = window_of.bounds(today)[0]
            lowest = None if low is None or lowest is None else min(lowest, low)

    only = day_range = ""
    if main_cols or store_windows:
        if customer_ids is not None:
            only = f" AND i.customer_id = ANY({p.add(list(customer_ids), 'text[]')})"
        day_range = f"i.business_day <= {p.const(today)}"
        if lowest is not None:
            day_range += f" AND i.business_day >= {p.const(lowest)}"

    ctes: list[str] = []
    joins = ""
    if main_cols:
        ctes.append(
            "f AS (SELECT i.customer_id, " + ", ".join(main_cols)
            + f" FROM invoices i WHERE i.counted AND i.customer_id IS NOT NULL AND {day_range}{only}"
            + " GROUP BY i.customer_id)"
        )
        joins += " LEFT JOIN f ON f.customer_id = c.customer_id"
    if store_windows:
        counts = ", ".join(
            f"count(*) FILTER (WHERE {_window_filter(p, w, today)}) AS {col}" for w, col in store_windows.items()
        )
        ctes.append(
            f"st AS (SELECT i.customer_id, i.store_id, {counts} FROM invoices i"
            f" WHERE i.is_purchase AND i.customer_id IS NOT NULL AND i.store_id IS NOT NULL AND {day_range}{only}"
            " GROUP BY i.customer_id, i.store_id)"
        )
        ctes.append("sa AS (SELECT customer_id, " + ", ".join(store_cols) + " FROM st GROUP BY customer_id)")
        joins += " LEFT JOIN sa ON sa.customer_id = c.customer_id"
    where = "" if customer_ids is None else f" WHERE c.customer_id = ANY({p.add(list(customer_ids), 'text[]')})"
    ctes.append(
        "base AS (SELECT c.customer_id, c.facts_version" + "".join(", " + col for col in base_cols)
        + f" FROM customers c{joins}{where})"
    )

    r = _Renderer(p, today, columns)
    notes = []
    for rule in rules:
        notes.append(f"CASE WHEN {r.node(rule.node)} THEN {r.explanation(rule.parts)} END")
    array = "ARRAY[" + ", ".join(notes) + "]::text[]" if notes else "ARRAY[]::text[]"
    sql = "WITH " + ",\n".join(ctes) + f"\nSELECT customer_id, facts_version, notes FROM (SELECT customer_id," \
          f" facts_version, {array} AS notes FROM base) e"
    if only_matching:
        sql += " WHERE cardinality(array_remove(e.notes, NULL)) > 0"
    return Query(sql, p.args)
