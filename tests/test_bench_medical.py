"""Smoke test of the e-voucher benchmark (benchmarks/medical.py): it runs as people run it, a
subprocess, and prints its table with a figure in every row of what is installed.  Only the shape
of the output is checked, never the figures (a timing assertion would make a flaky test)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "medical.py"


def test_the_medical_benchmark_prints_its_table() -> None:
    done = subprocess.run([sys.executable, str(BENCHMARK), "--quick"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("E-voucher resolution") and "median" in lines[1]
    figures = {line.split("  ")[0]: line for line in lines[2:]}
    for row in ("stdlib http.client + ssl", "sscard.medical (the package", "ec.query round trip"):
        line = next(text for label, text in figures.items() if label.startswith(row))
        assert re.search(r"\d+\.\d\d +\d+\.\d\d$", line), line
    assert any(label.startswith("httpx") for label in figures)
