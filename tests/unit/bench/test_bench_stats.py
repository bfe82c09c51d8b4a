"""The benchmark's arithmetic: percentiles, ratios, linear extrapolation and the targets (no timing here)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.run import extrapolations
from bench.stats import linear_fit, per_item_spread, percentile, ratio, targets


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([7.0], 99) == 7.0
    assert percentile([3, 1, 2], 50) == 2  # order of the sample does not matter


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200),
       st.floats(min_value=0, max_value=100))
def test_percentile_is_a_sample_value_with_enough_below(values: list[float], p: float) -> None:
    got = percentile(values, p)
    assert got in values
    assert sum(v <= got for v in values) >= p / 100 * len(values)
    assert percentile(values, 0) <= got <= percentile(values, 100)


def test_ratio_of_a_failed_baseline_is_zero() -> None:
    assert ratio(300, 1000) == 0.3
    assert ratio(5, 0) == 0.0


def test_linear_fit_recovers_a_line_and_spread_detects_non_linearity() -> None:
    fit = linear_fit([(1000, 2.5), (2000, 4.5), (4000, 8.5)])
    assert fit.slope == pytest.approx(0.002)
    assert fit.intercept == pytest.approx(0.5)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.at(1_000_000) == pytest.approx(2000.5)
    assert per_item_spread([(1000, 1.0), (2000, 2.0)]) == pytest.approx(1.0)
    assert per_item_spread([(1000, 1.0), (2000, 4.0)]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        linear_fit([(1000, 1.0)])
    with pytest.raises(ValueError):
        linear_fit([(1000, 1.0), (1000, 2.0)])


def figures(**over: object) -> dict:
    base = {"ingest_ratio": 0.4, "freshness_p50_ms": 20.0, "freshness_p99_ms": 300.0, "bare_http_p99_ms": 2.0,
            "read_p99_ms": 5.0, "bare_http_rps": 1000.0, "read_rps": 400.0, "backfill_1m_s": 30.0,
            "bare_sql_scan_s": 5.0, "rebuild_1m_s": 100.0, "redis_bytes_per_customer": 1990.0,
            "service_rss_mb": {"segment_engine": 120.0, "marketing_view": 250.0}}
    base.update(over)
    return base


def test_targets_use_the_baselines_of_the_same_run() -> None:
    verdict = {(t.figure, t.text): (t.limit, t.met) for t in targets(figures())}
    assert verdict[("ingest_ratio", "ingest >= 0.3 x bare pass-through")] == (0.3, True)
    assert verdict[("ingest_ratio", "stretch: ingest >= 0.5 x bare pass-through")] == (0.5, False)
    assert verdict[("freshness_p99_ms", "freshness p99 <= 250 ms at half capacity")] == (250.0, False)
    assert verdict[("read_p99_ms", "read p99 <= 2 x bare HTTP p99 + 1 ms")] == (5.0, True)  # 2*2+1, inclusive
    assert verdict[("read_rps", "read rps >= 0.5 x bare HTTP rps")] == (500.0, False)
    assert verdict[("backfill_1m_s", "backfill <= 3 x the bare SQL scan")] == (15.0, False)
    assert verdict[("backfill_1m_s", "backfill of 1,000,000 customers <= 60 s")] == (60.0, True)
    assert verdict[("service_rss_mb.marketing_view", "marketing_view resident memory < 200 MB")][1] is False
    assert verdict[("service_rss_mb.segment_engine", "segment_engine resident memory < 200 MB")][1] is True


def test_a_missing_figure_is_not_a_pass() -> None:
    results = figures()
    del results["bare_http_p99_ms"], results["rebuild_1m_s"]
    unknown = [t for t in targets(results) if t.met is None]
    assert {t.figure for t in unknown} == {"read_p99_ms", "rebuild_1m_s"}


def test_extrapolation_to_a_million_only_calls_a_line_linear_when_it_is() -> None:
    linear = {"backfill_customers": 20_000, "backfill_s": 0.5, "bare_sql_s": 0.1,
              "rebuild_points": [(1000, 1.1), (2000, 2.1)], "redis_bytes_per_customer_1000": 1900.0,
              "redis_bytes_per_customer_2000": 1950.0}
    extrapolations(linear)
    assert linear["backfill_1m_s"] == pytest.approx(25.0)
    assert linear["bare_sql_scan_s"] == pytest.approx(5.0)
    assert linear["rebuild_1m_s"] == pytest.approx(0.1 + 0.001 * 1_000_000)
    assert "linear in the number of customers" in linear["rebuild_note"]
    assert linear["redis_bytes_per_customer"] == 1900.0, "the lowest size's growth (no key-table doubling in it)"
    resized = {"redis_bytes_per_customer_20000": 1984.0, "redis_bytes_per_customer_40000": 2404.0,
               "rebuild_points": [(20_000, 9.0), (40_000, 18.0)]}
    extrapolations(resized)
    assert resized["redis_bytes_per_customer"] == 1984.0, "the key table doubled during the 40,000 point"
    curved = {"rebuild_points": [(1000, 1.0), (2000, 4.0)]}
    extrapolations(curved)
    assert "NOT shown linear" in curved["rebuild_note"]
    measured = {"rebuild_points": [(500_000, 40.0), (1_000_000, 81.0)]}
    extrapolations(measured)
    assert measured["rebuild_1m_s"] == 81.0 and not math.isnan(measured["rebuild_1m_s"])


def test_the_rebuild_floors_never_extrapolate_a_falling_line() -> None:
    # Two tiny sizes where start-up noise made the larger one faster: a line would predict a negative time.
    noisy = {"rebuild_points": [(1000, 1.1), (2000, 2.1)],
             "rebuild_bare_replay_points": [(1000, 0.29), (2000, 0.12)],
             "rebuild_bare_redis_points": [(1000, 0.06), (2000, 0.13)]}
    extrapolations(noisy)
    assert noisy["rebuild_bare_replay_1m_s"] == pytest.approx(0.12 * 500)  # proportional to the largest size
    assert noisy["rebuild_bare_redis_1m_s"] == pytest.approx(0.06 + 0.00007 * 999_000)  # the line, rising


def test_probe_legs_split_each_probe_and_skip_the_ones_not_seen_everywhere() -> None:
    from bench.system import probe_legs

    sent = {"a": 100.000, "b": 200.000, "lost": 300.0}
    applied = {"a": 100.010, "b": 200.020}
    relayed = {"a": 100.015, "b": 200.050}
    arrived = {"a": 100.045, "b": 200.060, "lost": 301.0}
    legs = probe_legs(sent, applied, relayed, arrived)
    assert {leg: figures["n"] for leg, figures in legs.items()} == {
        "to_ledger_transaction": 2, "ledger_to_relay_send": 2, "relay_to_tab": 2}
    assert legs["to_ledger_transaction"]["p99"] == pytest.approx(20.0)
    assert legs["ledger_to_relay_send"]["p50"] == pytest.approx(5.0)
    assert legs["relay_to_tab"]["p99"] == pytest.approx(30.0)
    assert probe_legs(sent, {}, relayed, arrived) == {}
