"""Smoke test of the event latency benchmark (benchmarks/events.py): it runs, end to end through
pcscd + vpcd, prints its table and writes its JSON.

Only the shape of the output is checked, never the figures: timing assertions would make a flaky
test, and the benchmark reports its goal (PASS/OVER) itself.  It runs as a subprocess, the way
people run it, on the tests' vpcd slot (``SSCARD_VPCD_SLOT``, see conftest.py).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from support import pcsc_env

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "events.py"
ROUNDS = 3
TABLE_ROWS = (
    ("insert", "pcscd detection"),
    (None, "raw PC/SC client"),
    (None, "sscard event"),
    (None, "sscard addition"),
    ("remove", "raw PC/SC client (pcscd detection)"),
    (None, "sscard event"),
    (None, "sscard addition"),
)
#: Latencies measured from the card going in or out: never negative.
FROM_CARD = {
    "insert": ("pcscd_detection_ms", "raw_client_ms", "sscard_event_ms"),
    "remove": ("raw_client_ms", "sscard_event_ms"),
}


@pytest.mark.pcscd
def test_event_benchmark_prints_its_table_and_writes_its_json(vpcd_reader: str, tmp_path: Path) -> None:
    out = tmp_path / "events.json"
    command = [sys.executable, str(BENCHMARK), "--rounds", str(ROUNDS), "--slot", str(pcsc_env.DEFAULT_SLOT)]
    result = subprocess.run(
        [*command, "--json", str(out)], capture_output=True, text=True, timeout=120, cwd=BENCHMARK.parents[1]
    )
    assert result.returncode == 0, result.stderr

    lines = result.stdout.splitlines()
    header = next((i for i, line in enumerate(lines) if line.split()[-4:] == ["median", "p90", "max", "(ms)"]), None)
    assert header is not None, result.stdout
    table = lines[header + 1 : header + 1 + len(TABLE_ROWS)]
    for line, (group, label) in zip(table, TABLE_ROWS, strict=True):
        if group is not None:
            assert line.startswith(group), line
        assert label in line, line
        assert len(line.split(label, 1)[1].split()) >= 3, line  # median, p90, max
    additions = [line for line in table if "sscard addition" in line]
    assert all(("PASS" in line) != ("OVER" in line) for line in additions), additions
    assert "pcsc-lite" in result.stdout and f"rounds {ROUNDS}" in result.stdout

    data = json.loads(out.read_text())
    assert data["benchmark"] == "events"
    assert data["parameters"]["reader"] == vpcd_reader
    assert set(data["verdict"].values()) <= {"PASS", "OVER"}
    for phase, keys in FROM_CARD.items():
        samples = data["samples"][phase]
        assert [sample["round"] for sample in samples] == list(range(1, ROUNDS + 1))
        for sample in samples:
            for key in keys:
                assert isinstance(sample[key], float) and math.isfinite(sample[key]) and sample[key] >= 0, (key, sample)
            # A difference of two observers' wakes: finite, but not asserted >= 0, since on a loaded
            # machine the scheduler may run the raw client's thread after sscard's.
            assert math.isfinite(sample["sscard_addition_ms"]), sample
        for key in (*keys, "sscard_addition_ms"):
            summary = data["summary"][phase][key]
            assert summary["n"] == ROUNDS
            assert all(math.isfinite(summary[stat]) for stat in ("median_ms", "p90_ms", "max_ms")), summary

    # The benchmark took its card out again: the reader is free for the next test.
    assert pcsc_env.wait_for_reader(vpcd_reader, present=False)


@pytest.mark.pcscd
def test_event_benchmark_says_why_it_cannot_run() -> None:
    """A slot vpcd does not have: a clear message and a non-zero exit, at once (no waiting, no hang)."""
    readers = pcsc_env.list_readers()
    slot = next(n for n in range(100) if pcsc_env.reader_name(n) not in readers)
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--rounds", "1", "--slot", str(slot)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=BENCHMARK.parents[1],
    )
    assert result.returncode == 1
    assert "cannot run" in result.stderr and pcsc_env.reader_name(slot) in result.stderr
    assert result.stdout == ""
