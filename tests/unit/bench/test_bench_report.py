"""The benchmark's outputs: the JSON has every required key, the document its table, plots and methods."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bench.report import REQUIRED_KEYS, plots, render_markdown, write_json


def sample() -> dict:
    results = {key: 1.0 for key in REQUIRED_KEYS}
    results.update({
        "commit": "abc123", "quick": True, "started_at": "2026-12-03T16:00:00+00:00",
        "machine": {"cores": 2, "memory_gb": 23.5, "cpu": "x", "python": "3.11.7"},
        "service_rss_mb": {"giftcard_ledger": 90.5, "marketing_view": 80.0},
        "bare_http_p99_ms": 2.0, "read_p99_ms": 9.0, "freshness_samples_ms": [5.0, 7.0, 9.0, 40.0],
        "read_fixed_rate": 200.0, "rebuild_note": "measured 1,000 and 2,000 customers",
        "freshness_hops_ms": {"relay_to_tab": {"p50": 12.5, "p90": 20.0, "p99": 31.0, "n": 4}},
    })
    return results


def test_json_has_the_required_numbers(tmp_path: Path) -> None:
    path = tmp_path / "results" / "latest.json"
    write_json(sample(), path)
    data = orjson.loads(path.read_bytes())
    for key in REQUIRED_KEYS:
        assert isinstance(data[key], int | float), key
    assert isinstance(data["service_rss_mb"], dict)
    assert data["commit"] == "abc123" and data["machine"]["cores"] == 2


def test_json_refuses_a_run_without_a_figure(tmp_path: Path) -> None:
    results = sample()
    results["read_rps"] = None
    with pytest.raises(ValueError, match="read_rps"):
        write_json(results, tmp_path / "x.json")


def test_plots_are_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is a dependency of the benchmarks (pyproject)")
    images = plots(sample(), tmp_path / "benchmarks")
    assert [i.name for i in images] == ["throughput.png", "latency.png"]
    for image in images:
        assert image.read_bytes().startswith(b"\x89PNG")


def test_markdown_has_the_targets_the_figures_and_the_method() -> None:
    images = ["benchmarks/throughput.png", "benchmarks/latency.png"]
    text = render_markdown(sample(), images)
    assert "| read p99 <= 2 x bare HTTP p99 + 1 ms | 5.00 | 9.00 | **no** |" in text
    assert "giftcard_ledger resident memory" in text
    assert "| freshness leg relay to tab: p50 / p99 (`freshness_hops_ms.relay_to_tab`) | 12.5 / 31.0 | ms |" in text
    assert "quick" in text and "abc123" in text
    assert "![throughput](benchmarks/throughput.png)" in text
    assert "measured 1,000 and 2,000 customers" in text
    for method in ("**bare pass-through**", "**ingest**", "**freshness**", "**read**", "**backfill**",
                   "**rebuild**", "**memory**"):
        assert method in text
