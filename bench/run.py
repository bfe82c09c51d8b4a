"""`python -m bench.run [--quick]`: every benchmark of issue 8 against the running local stack (`make up`).

Writes bench/results/latest.json and docs/benchmarks.md (+ docs/benchmarks/*.png); with --quick (a smoke run
with small sizes, about two minutes) bench/results/quick.json and bench/results/quick.md instead.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import baselines
from bench.report import plots, render_markdown, write_json
from bench.stats import linear_fit, per_item_spread, ratio
from bench.system import (
    ROOT,
    Stack,
    freshness,
    ingest,
    machine,
    pos_mix,
    read_and_bare_http,
    service_memory,
    wait_read_model,
)
from shared.kafka import delete_topics

MILLION = 1_000_000
LINEAR_SPREAD = 1.25  # time per customer may differ by at most 25% between sizes to extrapolate


@dataclass(frozen=True)
class Sizes:
    passthrough_events: int
    ingest_customers: int
    ingest_days: int
    probes: int
    read_seconds: float
    backfill_customers: int
    rebuild_sizes: tuple[int, ...]
    redis_docs: int


FULL = Sizes(passthrough_events=200_000, ingest_customers=4_000, ingest_days=180, probes=300, read_seconds=15,
             backfill_customers=MILLION, rebuild_sizes=(20_000, 40_000), redis_docs=50_000)
QUICK = Sizes(passthrough_events=20_000, ingest_customers=600, ingest_days=90, probes=40, read_seconds=4,
              backfill_customers=20_000, rebuild_sizes=(1_000, 2_000), redis_docs=5_000)
TAB_BYTES = 2_000  # a typical tab's JSON answer and stored document


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    sha = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return sha + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def extrapolations(results: dict[str, Any]) -> None:
    """Fill the 1M figures from what was measured, and say how."""
    n = results.get("backfill_customers")
    if n:
        scale = MILLION / n
        results["backfill_1m_s"] = results["backfill_s"] * scale
        results["bare_sql_scan_s"] = results["bare_sql_s"] * scale
        results["backfill_note"] = (
            f"measured on {n:,} customers ({n * 5:,} invoices): backfill {results['backfill_s']:.2f} s, bare SQL "
            f"{results['bare_sql_s']:.2f} s" + ("." if n == MILLION else
            f"; the 1M figures are scaled linearly by {scale:g} (not measured: quick mode)."))
    points = results.get("rebuild_points") or []
    if points:
        largest, seconds = max(points)
        if largest >= MILLION:
            results["rebuild_1m_s"] = seconds
            results["rebuild_note"] = f"measured on {largest:,} customers."
        elif len(points) >= 2:
            fit = linear_fit(points)
            spread = per_item_spread(points)
            results["rebuild_1m_s"] = fit.at(MILLION)
            results["rebuild_linearity"] = {"slope_s_per_customer": fit.slope, "intercept_s": fit.intercept,
                                            "r2": fit.r2, "per_customer_spread": spread}
            sizes = ", ".join(f"{n:,} customers in {s:.2f} s" for n, s in points)
            verdict = (f"time per customer differs by {100 * (spread - 1):.0f}% between the sizes, so the time is "
                       f"linear in the number of customers here and the line is extrapolated to 1,000,000"
                       if spread <= LINEAR_SPREAD else
                       f"time per customer differs by {100 * (spread - 1):.0f}% between the sizes: NOT shown "
                       f"linear, so the 1,000,000 figure below is a rough straight-line estimate only")
            results["rebuild_note"] = (
                f"1,000,000 customers ({MILLION * 14:,} events) do not fit one run's time budget here; measured "
                f"{sizes} (14 events per customer); {verdict}: {fit.slope * 1e6:.1f} µs per customer + "
                f"{fit.intercept:.2f} s -> {results['rebuild_1m_s']:.0f} s.")
        cpu = results.get(f"rebuild_{largest}_cpu_s")
        if cpu is not None:  # the rebuilding process's own CPU: steadier than wall time on a busy machine
            results["rebuild_cpu_us_per_customer"] = cpu / largest * 1e6
        for floor in ("replay", "redis"):  # the floors of the rebuild, measured on the same records
            measured = results.get(f"rebuild_bare_{floor}_points") or []
            fit = linear_fit(measured) if len(measured) >= 2 and largest < MILLION else None
            if fit is not None and fit.slope > 0:  # the same line as the rebuild's: slope, not start-up
                results[f"rebuild_bare_{floor}_1m_s"] = fit.at(MILLION)
            elif measured:  # one size, or sizes too small for a line (noise): proportional to the largest
                size, seconds = max(measured)
                results[f"rebuild_bare_{floor}_1m_s"] = seconds * MILLION / size
        per_size = [v for k, v in results.items()
                    if k.startswith("redis_bytes_per_customer_") and k.rsplit("_", 1)[1].isdigit()]
        if per_size:  # the lowest: a doubling of Redis's key table (8 bytes per slot for the whole keyspace,
            # 16 MB past a million keys) lands in one size's growth and is no customer's cost; nothing makes one smaller
            results["redis_bytes_per_customer"] = min(per_size)


async def step(results: dict[str, Any], name: str, coro: Any) -> None:
    started = time.perf_counter()
    print(f"[bench] {name} ...", flush=True)
    try:
        results.update(await coro)
    except Exception as exc:
        traceback.print_exc()
        results.setdefault("errors", {})[name] = repr(exc)
    results.setdefault("step_seconds", {})[name] = round(time.perf_counter() - started, 1)
    print(f"[bench] {name} done in {results['step_seconds'][name]} s", flush=True)


async def main_async(sizes: Sizes, quick: bool, only: set[str] | None,
                     background_rate: float | None = None) -> dict[str, Any]:
    from bench.backfill import backfill
    from bench.rebuild import rebuild

    stack = Stack.from_env()
    run_tag = f"{int(time.time()) % 10**8:08d}"
    seed = int(run_tag)
    results: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "commit": commit(),
                               "quick": quick, "machine": await machine(stack), "run_tag": run_tag,
                               "sizes": sizes.__dict__}
    baselines.loadgen()  # build the Go load generator before any timed step
    results["waited_for_read_model_s"] = round(await wait_read_model(stack), 1)
    want = (lambda s: True) if only is None else (lambda s: s in only)
    if want("passthrough"):
        await step(results, "passthrough", baselines.passthrough(stack.kafka, run_tag, sizes.passthrough_events))
        await delete_topics(stack.kafka, f"bench.{run_tag}.")
    if want("redis"):
        await step(results, "bare_redis", baselines.bare_redis(stack.redis_url, run_tag, sizes.redis_docs, TAB_BYTES))
    customers: list[str] = []
    if want("ingest") or want("freshness") or want("read"):
        messages, customers = pos_mix(sizes.ingest_customers, sizes.ingest_days, seed, f"C-B{run_tag}-")
        results["ingest_mix"] = _mix(messages)
        await step(results, "ingest", ingest(stack, messages, timeout_s=600))
        results["ingest_ratio"] = ratio(results.get("ingest_events_per_s", 0),
                                        results.get("passthrough_events_per_s", 0))
        rss1 = service_memory()
    half = max(50.0, results.get("ingest_events_per_s", 400) / 2)
    if background_rate:  # two variants compared at the same load (the targets are defined at half capacity)
        half = results["background_rate_fixed"] = background_rate
    if want("freshness") or want("read"):
        seconds = sizes.probes * 0.1 + 4 + 5 * sizes.read_seconds + 15  # freshness; read, fixed, bare busy
        per_customer = len(messages) / max(1, sizes.ingest_customers)
        background, _ = pos_mix(int(half * seconds * 2 / per_customer) + 50, sizes.ingest_days, seed + 1,
                                f"C-G{run_tag}-")
        if want("freshness"):
            await step(results, "freshness", freshness(stack, background, half, probes=sizes.probes, run_tag=run_tag))
        if want("read"):
            await step(results, "read", read_and_bare_http(stack, customers, background[len(background) // 3:], half,
                                                           seconds=sizes.read_seconds, bare_port=18099,
                                                           bare_body_bytes=TAB_BYTES))
        rss2 = service_memory()
        results["service_rss_mb"] = {s: max(rss1["service_rss_mb"].get(s, 0), v)
                                     for s, v in rss2["service_rss_mb"].items()}
        results["service_peak_rss_mb"] = rss2["service_peak_rss_mb"]
    if want("backfill"):
        await step(results, "backfill", backfill(stack, sizes.backfill_customers, run_tag))
    if want("rebuild"):
        await step(results, "rebuild", rebuild(stack, list(sizes.rebuild_sizes), run_tag))
    extrapolations(results)
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


def _mix(messages: list[tuple[str, bytes, bytes]]) -> dict[str, int]:
    import orjson
    counts: dict[str, int] = {}
    for _topic, _key, value in messages:
        kind = orjson.loads(value)["event_type"]
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every step")
    parser.add_argument("--only", action="append", choices=["passthrough", "redis", "ingest", "freshness", "read",
                                                            "backfill", "rebuild"],
                        help="run only these steps (repeatable); written to bench/results/partial.json and "
                             "partial.md unless --json/--doc say otherwise")
    parser.add_argument("--backfill-customers", type=int, help="override the backfill size")
    parser.add_argument("--rebuild-sizes", help="override the rebuild sizes, e.g. 50000,100000")
    parser.add_argument("--background-rate", type=float, metavar="EVENTS_PER_S",
                        help="run freshness and read at this rate instead of half the measured ingest, to compare "
                             "two variants at the same load (the targets are defined at half capacity)")
    parser.add_argument("--json", type=Path, help="where to write the figures")
    parser.add_argument("--doc", type=Path, help="where to write the Markdown report")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rewrite the Markdown report and plots from the JSON")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.backfill_customers:
        sizes = replace(sizes, backfill_customers=args.backfill_customers)
    if args.rebuild_sizes:
        sizes = replace(sizes, rebuild_sizes=tuple(int(x) for x in args.rebuild_sizes.split(",")))
    results_dir = ROOT / "bench" / "results"
    if args.only and not args.render_only:  # some steps only: never overwrite the report of a whole run
        json_path = args.json or results_dir / "partial.json"
        doc_path = args.doc or results_dir / "partial.md"
    else:
        json_path = args.json or results_dir / ("quick.json" if args.quick else "latest.json")
        doc_path = args.doc or (results_dir / "quick.md" if args.quick else ROOT / "docs" / "benchmarks.md")
    if args.render_only:
        import orjson
        results = orjson.loads(json_path.read_bytes())
    else:
        try:
            import uvloop
            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        results = runner(main_async(sizes, args.quick, set(args.only) if args.only else None,
                                   args.background_rate))
    images_dir = doc_path.parent / doc_path.stem
    images = [str(p.relative_to(doc_path.parent)) for p in plots(results, images_dir)]
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    analysis = ROOT / "bench" / "analysis.md"
    notes = analysis.read_text() if analysis.exists() else ""
    json_name = str(json_path.relative_to(ROOT)) if json_path.is_relative_to(ROOT) else str(json_path)
    doc_path.write_text(render_markdown(results, images, notes, json_name))
    if args.render_only:
        print(f"[bench] wrote {doc_path}")
        return 0
    try:
        write_json(results, json_path)
    except ValueError as exc:  # a step failed: keep what was measured, say so
        print(f"[bench] {exc}", file=sys.stderr)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        import orjson
        json_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    print(f"[bench] wrote {json_path} and {doc_path}")
    if results.get("errors"):
        print(f"[bench] failed steps: {results['errors']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
