"""Rules (syntax) -> IR (meaning): each criterion becomes a predicate over metrics and an explanation that
quotes the customer's own figures next to the rule's thresholds. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from services.segment_engine import ir
from services.segment_engine.facts import CustomerFacts
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
    Node,
    NotNull,
    Piece,
    Pred,
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
from services.segment_engine.rules import (
    All,
    AnyOf,
    FrequencyDrop,
    Location,
    LoyaltyTier,
    Not,
    ProductCategories,
    PurchaseFrequency,
    Rule,
    Signup,
    TotalSpend,
    parse_rule,
)


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready for both evaluation paths."""

    node: Node
    pred: Pred
    parts: list[ir.Part]
    metrics: list[ir.Metric]

    def evaluate(self, facts: CustomerFacts, today: date, values: dict[ir.Metric, Any] | None = None) -> str | None:
        """The explanation when the rule matches the customer as of ``today``; None when it does not.

        ``values``: the customer's metrics computed already (a superset of this rule's, same ``today``)."""
        env = ir.Env(today, ir.compute_metrics(self.metrics, facts, today) if values is None else values)
        if not ir.holds(self.pred, env):
            return None
        return ir.explain(self.parts, env)

    def explain_failure(self, facts: CustomerFacts, today: date) -> str:
        env = ir.Env(today, ir.compute_metrics(self.metrics, facts, today))
        return ir.explain(ir.explanation_parts(self.node, positive=False), env)


def compile_rule(rule: Rule | dict[str, Any]) -> CompiledRule:
    if isinstance(rule, dict):
        rule = parse_rule(rule)
    node = _compile(rule)
    return CompiledRule(node=node, pred=ir.node_pred(node), parts=ir.explanation_parts(node),
                        metrics=ir.metrics_of(node))


def _compile(rule: Rule) -> Node:
    match rule:
        case All(items):
            return Conj(tuple(_compile(i) for i in items))
        case AnyOf(items):
            return Disj(tuple(_compile(i) for i in items))
        case Not(item):
            return Inv(_compile(item))
        case PurchaseFrequency():
            return _purchase_frequency(rule)
        case TotalSpend():
            return _total_spend(rule)
        case Signup():
            return _signup(rule)
        case ProductCategories():
            return _product_categories(rule)
        case Location():
            return _location(rule)
        case LoyaltyTier():
            return _loyalty_tier(rule)
        case FrequencyDrop():
            return _frequency_drop(rule)
    raise TypeError(f"not a rule: {rule!r}")


def _window_text(days: int | None) -> str:
    if days is None:
        return "in total"
    return "today" if days == 1 else f"in the last {days} days"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _bounded(expr: ir.Expr, low: Any, high: Any, fmt: Any = str) -> tuple[Pred, str]:
    """The comparison of a value against optional bounds, and how the rule states it."""
    preds: list[Pred] = []
    if low is not None:
        preds.append(Cmp(">=", expr, Const(low)))
    if high is not None:
        preds.append(Cmp("<=", expr, Const(high)))
    if low is not None and high is not None:
        text = f"between {fmt(low)} and {fmt(high)}"
    elif low is not None:
        text = f"at least {fmt(low)}"
    else:
        text = f"at most {fmt(high)}"
    return (preds[0] if len(preds) == 1 else And(tuple(preds))), text


def _purchase_frequency(rule: PurchaseFrequency) -> Leaf:
    count = M(Purchases(Window(rule.window_days)))
    figures: tuple[Piece, ...] = (CountText(count, "purchase", "purchases"), Lit(" " + _window_text(rule.window_days)))
    if rule.cadence is not None:
        needed = rule.cadence_min
        return Leaf(Cmp(">=", count, Const(needed)), figures,
                    f"{rule.cadence} on average, at least {_plural(needed, 'purchase', 'purchases')}")
    pred, text = _bounded(count, rule.min_purchases, rule.max_purchases)
    return Leaf(pred, figures, text)


def _total_spend(rule: TotalSpend) -> Leaf:
    spend = M(Spend(Window(rule.window_days)))
    pred, text = _bounded(spend, rule.min, rule.max, ir.format_money)
    return Leaf(pred, (Lit("Spent "), MoneyText(spend), Lit(" " + _window_text(rule.window_days))), text)


def _signup(rule: Signup) -> Leaf:
    day = M(SignupDay())
    preds: list[Pred] = [NotNull(day)]
    texts: list[str] = []
    if rule.within_days is not None:
        ago = DaysSince(day)
        preds += [Cmp(">=", ago, Const(0)), Cmp("<", ago, Const(rule.within_days))]
        texts.append("within the last day" if rule.within_days == 1 else f"within the last {rule.within_days} days")
    if rule.since is not None:
        preds.append(Cmp(">=", day, Const(rule.since)))
        texts.append(f"on or after {rule.since.isoformat()}")
    if rule.before is not None:
        preds.append(Cmp("<", day, Const(rule.before)))
        texts.append(f"before {rule.before.isoformat()}")
    ago_text = Choose(Cmp("=", DaysSince(day), Const(0)), (Lit("today"),),
                      (CountText(DaysSince(day), "day", "days"), Lit(" ago")))
    figures: tuple[Piece, ...] = (Choose(NotNull(day), (Lit("Signed up on "), DateText(day), Lit(", "), ago_text),
                                         (Lit("No signup date"),)),)
    return Leaf(And(tuple(preds)), figures, "signed up " + " and ".join(texts))


def _product_categories(rule: ProductCategories) -> Node:
    window = Window(rule.window_days)
    leaves: list[Node] = []
    n = rule.min_purchases
    if rule.any_of:
        count = M(Purchases(window, rule.any_of))
        names = ", ".join(rule.any_of)
        leaves.append(Leaf(
            Cmp(">=", count, Const(n)),
            (CountText(count, "purchase", "purchases"), Lit(f" in {names} {_window_text(rule.window_days)}")),
            f"at least {_plural(n, 'purchase', 'purchases')} in {'any of ' if len(rule.any_of) > 1 else ''}{names}",
        ))
    if rule.all_of:
        counts = [(c, M(Purchases(window, (c,)))) for c in rule.all_of]
        figures: list[Piece] = [Lit("Bought ")]
        for i, (category, count) in enumerate(counts):
            figures += [Lit(("" if i == 0 else ", ") + category + " "), CountText(count, "time", "times")]
        figures.append(Lit(" " + _window_text(rule.window_days)))
        leaves.append(Leaf(
            And(tuple(Cmp(">=", count, Const(n)) for _, count in counts)), tuple(figures),
            f"{'each of ' if len(counts) > 1 else ''}{', '.join(rule.all_of)} at least {_plural(n, 'time', 'times')}",
        ))
    return leaves[0] if len(leaves) == 1 else Conj(tuple(leaves))


def _location(rule: Location) -> Leaf:
    window = Window(rule.window_days)
    top_in, top_all = M(StoreMaxIn(window, rule.stores)), M(StoreMaxAll(window))
    top_store, total = M(StoreTopIn(window, rule.stores)), M(Purchases(window))
    stores = ", ".join(rule.stores)
    wins = And((Cmp(">", top_in, Const(0)), Cmp(">=", top_in, top_all)))
    of_total: tuple[Piece, ...] = (IntText(top_in), Lit(" of "), CountText(total, "purchase", "purchases"),
                                   Lit(" " + _window_text(rule.window_days)))
    figures = (Choose(
        NotNull(top_store),
        (Choose(wins, (Lit("Shops most often at "), StrText(top_store), Lit(" ("), *of_total, Lit(")")),
                (Lit("Shops more often elsewhere than at "), StrText(top_store), Lit(" ("), *of_total, Lit(")"))),),
        (Lit(f"No purchases at {stores} {_window_text(rule.window_days)}"),),
    ),)
    return Leaf(wins, figures, f"most frequent store in {stores}")


def _loyalty_tier(rule: LoyaltyTier) -> Leaf:
    tier = M(Tier())
    figures = (Choose(NotNull(tier), (Lit("Loyalty tier "), StrText(tier)), (Lit("No loyalty tier"),)),)
    return Leaf(InSet(tier, rule.tiers), figures, f"tier {' or '.join(rule.tiers)}")


def _frequency_drop(rule: FrequencyDrop) -> Leaf:
    r, b = rule.recent_days, rule.baseline_days
    recent = M(Purchases(Window(r)))
    baseline = M(Purchases(Window(b, offset=r)))
    minimum = max(1, rule.min_baseline_purchases)
    # recent / r <= max_ratio * baseline / b, in exact arithmetic: recent * b <= max_ratio * baseline * r
    pred = And((
        Cmp(">=", baseline, Const(minimum)),
        Cmp("<=", Mul(recent, Const(b)), Mul(Mul(Const(rule.max_ratio), baseline), Const(r))),
    ))
    percent = Div(Mul(Mul(recent, Const(b)), Const(100)), Mul(baseline, Const(r)))
    figures = (
        CountText(recent, "purchase", "purchases"), Lit(f" {_window_text(r)} against "), IntText(baseline),
        Lit(f" in the {b} days before"),
        Choose(Cmp(">", baseline, Const(0)), (Lit(" ("), IntText(percent), Lit("% of the usual rate)")), ()),
    )
    ratio = (rule.max_ratio * 100).normalize()
    ratio_text = f"{ratio:f}"
    return Leaf(pred, figures, f"purchase rate at most {ratio_text}% of the {b} days before, "
                               f"with at least {_plural(minimum, 'purchase', 'purchases')} then")

