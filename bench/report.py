"""The benchmark's outputs: bench/results/latest.json, docs/benchmarks.md and its plots (docs/benchmarks/*.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bench.stats import PROBE_LEGS, targets

REQUIRED_KEYS = (
    "ingest_events_per_s", "passthrough_events_per_s", "ingest_ratio", "freshness_p50_ms", "freshness_p99_ms",
    "read_rps", "read_p99_ms", "bare_http_rps", "bare_http_p99_ms", "backfill_1m_s", "bare_sql_scan_s",
    "rebuild_1m_s", "redis_bytes_per_customer",
)

METHOD = """\
## Method

Everything runs against the local stack of `make up` (Kafka, Postgres, Redis and the four services as
separate processes), on the machine described above. Each baseline is measured in the same run as the figure
it is compared with. `python -m bench.run --quick` runs every step with small sizes (a smoke run, about two
minutes); its figures are not meant to be compared with the targets.

- **bare pass-through** (`bench/baselines.py`): one Python process with a plain aiokafka consumer and
  producer moves POS-sized events (a 700-byte `sale.completed`) from one topic to another, batched per poll,
  with no decoding; the most events per second one Python hop can move here.
- **ingest**: a realistic mix from `ops/simulator.py` (sales, voids, returns, coupons, gift card activity,
  registrations, tier changes, duplicates and late events; new customer ids each run), pre-encoded, is
  published as fast as Kafka takes it into the real POS topics. The clock stops when every consumer group
  involved (giftcard_ledger, redemption_ledger, segment_engine on the POS topics; marketing_view on the
  domain topics) has committed up to the end offsets and every outbox is empty, i.e. every Redis document is
  up to date. ingest = events / that time; `ingest_ratio` = ingest / bare pass-through.
- **freshness**: while background POS traffic is published at half the measured ingest rate, probe
  `coupon.redeemed` events (one new probe customer each) are published one at a time; a Redis keyspace
  notification (`notify-keyspace-events` with hash events, enabled for the run and restored after) on the
  probe customer's document key gives the moment the tab reflects it. Latency = notification time -
  time just before the probe was handed to the producer (same clock, same process). The path is
  POS topic -> redemption_ledger (Postgres transaction, outbox) -> relay -> `coupons.redemptions.v1` ->
  marketing_view (Lua write). Its legs (`freshness_hops_ms`, wall clocks of the one machine): publication ->
  start of redemption_ledger's transaction (the redemption row's `recorded_at`) -> the relay's send (the
  record's producer timestamp, read back from the domain topic) -> the notification.
- **read**: the Go load generator (`bench/loadgen`) sends `GET /v1/customers/{id}/marketing` rotating over
  customers that exist (from the ingest step) while background ingest runs at half capacity: closed loop
  (16 connections) for requests per second, then open loop at a fixed rate (half the closed-loop rate) for
  latency, measured from each request's scheduled time. **bare HTTP** is a uvicorn + FastAPI app on uvloop
  (the read API's server and framework) answering a constant body of a tab's size, measured the same way at
  the same fixed rate, without background load (the targets' baseline); then once more during the same
  background ingest (`bare_http_during_ingest_*`, not a target: what the busy machine alone does to a
  constant answer).
- **backfill**: N customers with 5 invoices each over 400 days (a sixth of them registered, a fifth with a
  tier) are generated with SQL in a schema of the benchmark's own (`segment_engine_bench_<N>`, kept
  between runs), and segment_engine runs in-process on it. The High Value rule is changed (its threshold
  alternates between $1,000 and $1,200 each run) and the backfill job's own `started_at`..`finished_at`
  is the figure. **bare SQL** is one scan of the same facts evaluating the same predicate
  (`GROUP BY customer_id HAVING sum(net_spend) >= threshold` over the window), best of two.
- **rebuild**: N typical customers' domain events (3 segments, 10 coupon rows, insights, 2 gift cards: 14
  events each) are produced, pre-encoded from templates, on topics of a prefix of the benchmark's own, and
  marketing_view's rebuild (`Rebuilder.run`, the code of `python -m services.marketing_view rebuild`) replays
  them into a key prefix of its own. When N < 1,000,000 the run measures two sizes and extrapolates with a
  straight line only if both sizes take the same time per customer (within 25%); the table says so.
- **memory**: growth of Redis `used_memory` over the rebuild above divided by its customers (the same
  typical customer as `tests/integration/view/test_view_memory.py`), cross-checked by `MEMORY USAGE` of a
  sample of customers' keys; each service's resident memory is `VmRSS` of the pid in `.local/run/<svc>.pid`
  right after the ingest and read steps (peak `VmHWM` in the JSON).
"""


def write_json(results: dict[str, Any], path: Path) -> None:
    missing = [k for k in REQUIRED_KEYS if not isinstance(results.get(k), int | float)]
    if missing:
        raise ValueError(f"results lack numbers for {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def target_table(results: dict[str, Any]) -> str:
    lines = ["| target | limit | measured | met |", "|---|---|---|---|"]
    for t in targets(results):
        met = {True: "yes", False: "**no**", None: "n/a"}[t.met]
        lines.append(f"| {t.text} | {_fmt(t.limit)} | {_fmt(t.value)} | {met} |")
    return "\n".join(lines)


FIGURES = (
    ("passthrough_events_per_s", "bare pass-through", "events/s"),
    ("ingest_events_per_s", "ingest (POS -> Redis, all four services)", "events/s"),
    ("ingest_ratio", "ingest / bare pass-through", ""),
    ("freshness_rate_events_per_s", "background rate during freshness and read", "events/s"),
    ("freshness_p50_ms", "freshness p50", "ms"),
    ("freshness_p99_ms", "freshness p99", "ms"),
    ("bare_http_rps", "bare HTTP, closed loop", "req/s"),
    ("read_rps", "read API, closed loop, during ingest", "req/s"),
    ("read_fixed_rate", "fixed request rate of both latency figures", "req/s"),
    ("bare_http_p99_ms", "bare HTTP p99 at the fixed rate", "ms"),
    ("read_p99_ms", "read API p99 at the fixed rate, during ingest", "ms"),
    ("read_p50_ms", "read API p50 at the fixed rate, during ingest", "ms"),
    ("bare_http_during_ingest_rps", "bare HTTP, closed loop, during the same ingest (not a target)", "req/s"),
    ("bare_http_during_ingest_p99_ms", "bare HTTP p99 at the fixed rate, during the same ingest (not a target)",
     "ms"),
    ("bare_redis_writes_per_s", "bare Redis pipelined writes (tab-sized)", "docs/s"),
    ("bare_redis_reads_per_s", "bare Redis pipelined reads (tab-sized)", "docs/s"),
    ("bare_sql_scan_s", "bare SQL scan + predicate (1M customers)", "s"),
    ("backfill_1m_s", "backfill of a changed rule (1M customers)", "s"),
    ("rebuild_1m_s", "rebuild of the read model (1M customers)", "s"),
    ("rebuild_cpu_us_per_customer", "rebuild: CPU of the rebuilding process per customer (largest size)", "µs"),
    ("rebuild_bare_replay_1m_s", "bare replay: reading the rebuild's 14M records, no decoding (1M customers)", "s"),
    ("rebuild_bare_redis_1m_s", "bare Redis: one pipelined HSET of a rebuilt tab per customer (1M customers)", "s"),
    ("redis_bytes_per_customer", "Redis per typical customer", "bytes"),
)


def figure_table(results: dict[str, Any]) -> str:
    lines = ["| figure | value | unit |", "|---|---|---|"]
    for key, text, unit in FIGURES:
        if key in results:
            lines.append(f"| {text} (`{key}`) | {_fmt(results[key])} | {unit} |")
    hops = results.get("freshness_hops_ms") or {}
    for leg in (leg for leg in PROBE_LEGS if leg in hops):
        figures = hops[leg]
        lines.append(f"| freshness leg {leg.replace('_', ' ')}: p50 / p99 (`freshness_hops_ms.{leg}`) | "
                     f"{_fmt(figures.get('p50'))} / {_fmt(figures.get('p99'))} | ms |")
    for service, mb in sorted((results.get("service_rss_mb") or {}).items()):
        lines.append(f"| {service} resident memory (`service_rss_mb.{service}`) | {_fmt(mb)} | MB |")
    return "\n".join(lines)


def plots(results: dict[str, Any], directory: Path) -> list[Path]:
    """Two PNGs: throughput against its baselines, latency against its limits. Empty if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    made = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    pairs = [("bare pass-through", results.get("passthrough_events_per_s", 0)),
             ("ingest", results.get("ingest_events_per_s", 0))]
    axes[0].bar([p[0] for p in pairs], [p[1] for p in pairs], color=["#999999", "#1f77b4"])
    axes[0].axhline(0.3 * (results.get("passthrough_events_per_s") or 0), color="red", linestyle="--",
                    label="target 0.3 x pass-through")
    axes[0].set_ylabel("events per second")
    axes[0].set_title("Kafka events per second")
    axes[0].legend()
    pairs = [("bare HTTP", results.get("bare_http_rps", 0)), ("read API", results.get("read_rps", 0))]
    axes[1].bar([p[0] for p in pairs], [p[1] for p in pairs], color=["#999999", "#1f77b4"])
    axes[1].axhline(0.5 * (results.get("bare_http_rps") or 0), color="red", linestyle="--",
                    label="target 0.5 x bare")
    axes[1].set_ylabel("requests per second (closed loop)")
    axes[1].set_title("HTTP requests per second")
    axes[1].legend()
    fig.tight_layout()
    made.append(directory / "throughput.png")
    fig.savefig(made[-1], dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    samples = results.get("freshness_samples_ms") or []
    if samples:
        ordered = sorted(samples)
        axes[0].plot(ordered, [100 * (i + 1) / len(ordered) for i in range(len(ordered))])
    axes[0].axvline(50, color="orange", linestyle="--", label="p50 target 50 ms")
    axes[0].axvline(250, color="red", linestyle="--", label="p99 target 250 ms")
    axes[0].set_xlabel("POS publication -> tab updated (ms)")
    axes[0].set_ylabel("% of probes")
    axes[0].set_title("Freshness at half capacity (CDF)")
    axes[0].legend()
    names = ["p50", "p90", "p99"]
    bare = [results.get(f"bare_http_{n}_ms", 0) for n in names]
    read = [results.get(f"read_{n}_ms", 0) for n in names]
    xs = range(len(names))
    axes[1].bar([x - 0.2 for x in xs], bare, width=0.4, label="bare HTTP", color="#999999")
    axes[1].bar([x + 0.2 for x in xs], read, width=0.4, label="read API (during ingest)", color="#1f77b4")
    axes[1].set_xticks(list(xs), names)
    axes[1].set_ylabel("ms")
    axes[1].set_title(f"Latency at {_fmt(results.get('read_fixed_rate'))} req/s")
    axes[1].legend()
    fig.tight_layout()
    made.append(directory / "latency.png")
    fig.savefig(made[-1], dpi=90)
    plt.close(fig)
    return made


def render_markdown(results: dict[str, Any], images: list[str], notes: str = "",
                    json_name: str = "bench/results/latest.json") -> str:
    machine = results.get("machine", {})
    mode = "quick (smoke run: small sizes, not comparable with the targets)" if results.get("quick") else "full"
    parts = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench.run` (`make bench`; `make bench-quick` for a smoke run): do not edit by "
        f"hand, the next run rewrites it (the analysis comes from `bench/analysis.md`). Raw figures: `{json_name}`.",
        "",
        f"Run: {results.get('started_at', '?')}, commit `{results.get('commit', '?')}`, mode **{mode}**. "
        f"Machine: {machine.get('cores', '?')} cores, {_fmt(machine.get('memory_gb'))} GB, "
        f"{machine.get('cpu', '?')}; Python {machine.get('python', '?')}, Kafka {machine.get('kafka', '?')}, "
        f"Postgres {machine.get('postgres', '?')}, Redis {machine.get('redis', '?')}, "
        f"load average at start {machine.get('loadavg', '?')}.",
        "",
        "## Targets",
        "",
        target_table(results),
        "",
        "## Figures",
        "",
        figure_table(results),
        "",
    ]
    for image in images:
        parts += [f"![{Path(image).stem}]({image})", ""]
    for key, text in (("backfill_note", "Backfill"), ("rebuild_note", "Rebuild")):
        if results.get(key):
            parts += [f"**{text}.** {results[key]}", ""]
    if notes:
        parts += [notes.rstrip(), ""]
    parts.append(METHOD)
    return "\n".join(parts)
