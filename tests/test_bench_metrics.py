"""Smoke test of the metrics benchmark (benchmarks/metrics.py): it runs, prints its table and writes
its JSON, in process on ``sim:typical`` and through pcscd + vpcd.  Only the shape of the output is
checked, never a figure (the benchmark reports its goals, PASS/OVER, itself)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import pcsc_env

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "metrics.py"
ROWS = (
    "render (generate_latest)",
    "render, every label",
    "GET /metrics over HTTP",
    "GET /healthz over HTTP",
    "a scrape's own cost",
    "POST /v1/read, metrics on",
    "POST /v1/read, observer off",
    "read A/B difference",
    "metrics' calls per read",
)


def _run(tmp_path: Path, *extra: str) -> dict[str, object]:
    out = tmp_path / "metrics.json"
    command = [sys.executable, str(BENCHMARK), "--quick", "--json", str(out), *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=BENCHMARK.parents[1])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for row in ROWS:
        assert any(line.startswith(row) for line in lines), (row, result.stdout)
    assert sum(line.rstrip().endswith(("PASS", "OVER")) for line in lines) == 2, result.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    results = data["results"]
    for key in ("render", "worst_render", "scrape_http", "healthz_http", "read_with_metrics", "read_without_metrics"):
        assert set(results[key]) == {"median_ms", "p95_ms"}, key
    assert results["exposition_samples"] > 50 and results["metrics_per_read_us"] > 0
    return results


def test_metrics_benchmark_runs_on_the_simulated_card(tmp_path: Path) -> None:
    assert _run(tmp_path)["reader"] == "sim:typical"


@pytest.mark.pcscd
def test_metrics_benchmark_runs_through_pcscd(vpcd_reader: str, tmp_path: Path) -> None:
    assert _run(tmp_path, "--slot", str(pcsc_env.DEFAULT_SLOT))["reader"] == vpcd_reader
