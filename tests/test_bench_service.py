"""Smoke test of the service load benchmark (benchmarks/service.py): it starts ``sscard serve``,
drives it end to end through pcscd + vpcd with a few WebSocket subscribers and reads, prints its
tables and writes its JSON.

Only the shape of the output is checked, never the figures (timing assertions would be flaky).  It
runs as a subprocess, the way people run it, on the tests' vpcd slot (``SSCARD_VPCD_SLOT``, see
conftest.py); the benchmark inserts and removes its own cards there.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import pcsc_env

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "service.py"
SUBSCRIBERS, ROUNDS, READS = 10, 1, 5
EVENT_ROWS = (
    ("spread", "after the first subscriber", ROUNDS * SUBSCRIBERS),
    (None, "last - first subscriber (per round)", ROUNDS),
    ("floor", "after the first (bare websockets broadcast)", ROUNDS * SUBSCRIBERS),
    (None, "last - first (per round)", ROUNDS),
    ("latency", "after pcscd powered the card", ROUNDS * SUBSCRIBERS),
    (None, "after a raw PC/SC client woke", ROUNDS * SUBSCRIBERS),
    (None, "first subscriber after the raw client", ROUNDS),
    ("pcscd", "raw PC/SC client woke after power-on", ROUNDS),
)
MEMORY_KEYS = ("idle_rss_kb", "connected_rss_kb", "loaded_rss_kb", "peak_hwm_kb", "after_rss_kb")


def _finite(summary: dict[str, Any], *stats: str) -> bool:
    return all(isinstance(summary[stat], float | int) and math.isfinite(summary[stat]) for stat in stats)


@pytest.mark.pcscd
def test_service_benchmark_prints_its_tables_and_writes_its_json(vpcd_reader: str, tmp_path: Path) -> None:
    out = tmp_path / "service.json"
    command = [
        sys.executable,
        str(BENCHMARK),
        *("--subscribers", str(SUBSCRIBERS), "--rounds", str(ROUNDS), "--reads", str(READS)),
        *("--slot", str(pcsc_env.DEFAULT_SLOT), "--json", str(out)),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=BENCHMARK.parents[1])
    assert result.returncode == 0, result.stderr

    lines = result.stdout.splitlines()
    assert "pcsc-lite" in result.stdout and f"subscribers {SUBSCRIBERS}" in result.stdout
    assert f"{ROUNDS * SUBSCRIBERS} of {ROUNDS * SUBSCRIBERS} delivered" in result.stdout
    # The event table: n, min, median, p90, max for every row.
    heads = ["n", "min", "median", "p90", "max", "(ms)"]
    header = next(i for i, line in enumerate(lines) if line.split() == heads)
    for line, (group, label, n) in zip(lines[header + 1 : header + 1 + len(EVENT_ROWS)], EVENT_ROWS, strict=True):
        if group is not None:
            assert line.startswith(group), line
        assert label in line, line
        cells = line.split(label, 1)[1].split()
        assert cells[0] == str(n) and len(cells) == 5, line
    # The read table and the ratio.
    reads = next(i for i, line in enumerate(lines) if line.split() == ["median", "p90", "max", "(ms)"])
    assert "service: POST /v1/read" in lines[reads + 1] and "facade: Terminal.read()" in lines[reads + 2]
    assert any(line.startswith("ratio service / facade (medians): ") for line in lines)
    assert sum("MiB" in line for line in lines) == len(MEMORY_KEYS)

    data = json.loads(out.read_text())
    assert data["benchmark"] == "service"
    assert data["parameters"]["reader"] == vpcd_reader
    assert data["parameters"]["subscribers"] == SUBSCRIBERS
    events = data["events"]
    assert events["delivered"] == events["expected"] == ROUNDS * SUBSCRIBERS
    assert [sample["round"] for sample in events["rounds"]] == list(range(1, ROUNDS + 1))
    for sample in events["rounds"]:
        assert sample["received"] == sample["subscribers"] == SUBSCRIBERS
        for key in ("after_first_ms", "after_raw_client_ms", "after_powered_ms"):
            values = sample[key]
            assert len(values) == SUBSCRIBERS and all(isinstance(v, float) for v in values), (key, values)
        assert min(sample["after_first_ms"]) == 0.0
        # Measured from the same clock in the same process: no subscriber hears of it before pcscd powered it.
        assert all(v >= 0 for v in sample["after_powered_ms"]), sample
    assert len(events["floor_rounds"]) == ROUNDS
    assert all(len(r["after_first_ms"]) == SUBSCRIBERS for r in events["floor_rounds"])
    for key in ("after_first_ms", "round_width_ms", "after_raw_client_ms", "floor_after_first_ms"):
        assert _finite(events["summary"][key], "min_ms", "median_ms", "p90_ms", "max_ms"), key

    read = data["read"]
    assert [sample["round"] for sample in read["samples"]] == list(range(1, READS + 1))
    assert {sample["first"] for sample in read["samples"]} == {"service", "facade"}
    for key in ("service_ms", "facade_ms"):
        assert read["summary"][key]["n"] == READS and _finite(read["summary"][key], "median_ms", "p90_ms", "max_ms")
    assert isinstance(read["ratio_median"], float) and read["ratio_median"] > 0

    memory = data["memory"]
    assert set(memory) == set(MEMORY_KEYS)
    assert all(isinstance(memory[key], int) and memory[key] > 0 for key in MEMORY_KEYS), memory
    assert memory["peak_hwm_kb"] >= memory["loaded_rss_kb"]

    # The benchmark took its card out again and stopped its service: the reader is free.
    assert pcsc_env.wait_for_reader(vpcd_reader, present=False)


@pytest.mark.pcscd
def test_service_benchmark_says_why_it_cannot_run() -> None:
    """A slot vpcd does not have: a clear message and a non-zero exit, at once (no service started)."""
    readers = pcsc_env.list_readers()
    slot = next(n for n in range(100) if pcsc_env.reader_name(n) not in readers)
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--subscribers", "1", "--rounds", "1", "--reads", "1", "--slot", str(slot)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=BENCHMARK.parents[1],
    )
    assert result.returncode == 1
    assert "cannot run" in result.stderr and pcsc_env.reader_name(slot) in result.stderr
    assert result.stdout == ""
