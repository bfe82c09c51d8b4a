"""Pure helpers of the benchmarks: percentiles, ratios, linearity, and the targets of issue 8."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PROBE_LEGS = ("to_ledger_transaction", "ledger_to_relay_send", "relay_to_tab")
"""The legs of a freshness probe, in the order it travels them (`freshness_hops_ms`)."""


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sample: the smallest value with at least p% of the
    sample at or below it (so p99 of 100 values is the 99th smallest, and never an interpolated value)."""
    if not values:
        raise ValueError("percentile of an empty sample")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} outside 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, or 0.0 when the denominator is not positive (a failed baseline)."""
    return numerator / denominator if denominator > 0 else 0.0


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


@dataclass(frozen=True)
class Fit:
    slope: float  # seconds per item
    intercept: float  # seconds
    r2: float  # coefficient of determination of the fit

    def at(self, n: float) -> float:
        return self.intercept + self.slope * n


def linear_fit(points: Sequence[tuple[float, float]]) -> Fit:
    """Least squares line through (n, seconds) points; r2 = 1 for a perfect line (and for two points)."""
    if len(points) < 2:
        raise ValueError("a line needs at least two points")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("all points have the same size")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return Fit(slope, intercept, 1.0 if ss_tot == 0 else 1 - ss_res / ss_tot)


def per_item_spread(points: Sequence[tuple[float, float]]) -> float:
    """How much the time per item varies across sizes: max/min of seconds/n (1.0 = perfectly proportional)."""
    per = [s / n for n, s in points if n > 0]
    return max(per) / min(per) if per and min(per) > 0 else math.inf


@dataclass(frozen=True)
class Target:
    figure: str
    text: str
    limit: float | None  # None: not computable (a figure is missing)
    value: float | None
    higher_is_better: bool

    @property
    def met(self) -> bool | None:
        if self.limit is None or self.value is None:
            return None
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit


def _num(results: dict[str, Any], key: str) -> float | None:
    value = results.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def targets(results: dict[str, Any]) -> list[Target]:
    """Every target of issue 8 against one run's figures (the baselines come from the same run)."""
    g = lambda k: _num(results, k)  # noqa: E731
    out = [
        Target("ingest_ratio", "ingest >= 0.3 x bare pass-through", 0.3, g("ingest_ratio"), True),
        Target("ingest_ratio", "stretch: ingest >= 0.5 x bare pass-through", 0.5, g("ingest_ratio"), True),
        Target("freshness_p50_ms", "freshness p50 <= 50 ms at half capacity", 50.0, g("freshness_p50_ms"), False),
        Target("freshness_p99_ms", "freshness p99 <= 250 ms at half capacity", 250.0, g("freshness_p99_ms"), False),
    ]
    bare_p99, bare_rps = g("bare_http_p99_ms"), g("bare_http_rps")
    out.append(Target("read_p99_ms", "read p99 <= 2 x bare HTTP p99 + 1 ms",
                      None if bare_p99 is None else 2 * bare_p99 + 1, g("read_p99_ms"), False))
    out.append(Target("read_rps", "read rps >= 0.5 x bare HTTP rps",
                      None if bare_rps is None else 0.5 * bare_rps, g("read_rps"), True))
    bare_sql = g("bare_sql_scan_s")
    out += [
        Target("backfill_1m_s", "backfill of 1,000,000 customers <= 60 s", 60.0, g("backfill_1m_s"), False),
        Target("backfill_1m_s", "backfill <= 3 x the bare SQL scan",
               None if bare_sql is None else 3 * bare_sql, g("backfill_1m_s"), False),
        Target("rebuild_1m_s", "rebuild of 1,000,000 customers <= 120 s", 120.0, g("rebuild_1m_s"), False),
        Target("redis_bytes_per_customer", "Redis <= 2 KiB per typical customer", 2048.0,
               g("redis_bytes_per_customer"), False),
    ]
    rss = results.get("service_rss_mb")
    if isinstance(rss, dict):
        for service, mb in sorted(rss.items()):
            value = float(mb) if isinstance(mb, int | float) else None
            out.append(Target(f"service_rss_mb.{service}", f"{service} resident memory < 200 MB", 200.0,
                              value, False))
    return out
