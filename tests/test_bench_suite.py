"""Smoke test of the benchmark suite (benchmarks/run.py): one command runs every section end to end
through pcscd + vpcd, prints a table per section and a summary, and writes its JSON.

Only the structure of the output is checked, never a timing figure (that would make a flaky test;
the suite reports its goals as PASS/OVER itself).  It runs as a subprocess with ``--quick``, the
way people run it, on the tests' vpcd slot (``SSCARD_VPCD_SLOT``, see conftest.py).

Two sections need something beyond the test fixtures: ``process`` compares with OpenSC's
``opensc-tool`` (Debian package opensc) and ``readers`` starts a private pcscd (root).  Locally the
suite runs without them (the OpenSC rows say so; ``readers`` is reported skipped, with the
reason); under CI (``CI`` set), where ``run.sh`` installs opensc and runs as root, both must run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import pcsc_env

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
SECTIONS = ("apdus", "overhead", "process", "parsers", "readers", "events", "native")
OPERATIONS = ("read", "read_photo", "verify", "sign_in")
VERDICTS = {"PASS", "OVER", ""}


def in_ci() -> bool:
    """The same rule as conftest.py's: ``CI`` set to anything but empty/0/false/no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _check_apdus(data: dict[str, Any]) -> None:
    assert set(data["operations"]) == set(OPERATIONS)
    for operation in data["operations"].values():
        assert set(operation) == {"sscard", "minimum", "vendor"}
        for side in operation.values():
            assert isinstance(side["count"], int) and side["count"] > 0
            assert len(side["commands"]) == side["count"]
            assert all(len(header) == 8 for header in side["commands"])  # CLA INS P1 P2, hex


def _check_overhead(data: dict[str, Any]) -> None:
    assert data["apdus_per_read"] == len(data["commands"]) > 0
    assert _number(data["ratio_median"]) and data["verdict"] in {"PASS", "OVER"}
    for key in ("raw_ms", "sscard_ms", "control_ms", "raw_cpu_ms", "sscard_cpu_ms"):
        assert data["summary"][key]["n"] == data["rounds"], key
    assert data["profile_ms_per_read"]


def _check_process(data: dict[str, Any]) -> None:
    assert data["summary"]["sscard"]["wall"]["n"] == data["rounds"]
    assert all(sample["apdus"] == data["apdus_per_read"] for sample in data["samples"]["sscard"])
    if data["opensc"]:
        assert all(sample["apdus"] == data["apdus_per_read"] for sample in data["samples"]["opensc"])
        assert _number(data["ratio_median"])
        assert data["verdict"] in {"PASS", "OVER"} and data["goal"]["at_most"] == 2.5
    assert _number(data["sscard_startup_ms"])
    assert _number(data["imports"]["sscard_read_ms"]) and data["imports"]["top_level"]


def _check_parsers(data: dict[str, Any]) -> None:
    assert data["differences"] == []  # the fast path and construct agree on every record
    assert data["records"]["well_formed"] > 0 and data["records"]["cards"] > 0
    assert _number(data["records_per_second"]) and data["records_per_second"] > 0
    assert data["tracemalloc"]["stream_peak_bytes"] > 0
    assert data["process_kb"]["parsed"]["hwm_kb"] > 0


def _check_readers(data: dict[str, Any]) -> None:
    assert len(data["readers"]) == 4
    for mode in ("one", "threads", "processes"):
        assert data["summary_ms"][mode]["n"] > 0
        assert set(data["cpu_ms_per_read"][mode]) == {"client", "pcscd", "cards"}
    assert _number(data["ratio_median"]) and data["verdict"] in {"PASS", "OVER"}


def _check_events(data: dict[str, Any]) -> None:
    assert data["benchmark"] == "events"
    assert set(data["verdict"].values()) <= {"PASS", "OVER"}


def _check_native(data: dict[str, Any]) -> None:
    assert data["reader"].startswith("Virtual PCD")  # through pcscd + vpcd, not the in-process simulator
    for key in ("library_ms", "in_process_ms", "process_ms", "added_ms"):
        assert _number(data[key])
    assert data["library_ms"] > 0 and data["verdict"] in {"met", "MISSED"}


CHECKS = {
    "apdus": _check_apdus,
    "overhead": _check_overhead,
    "process": _check_process,
    "parsers": _check_parsers,
    "readers": _check_readers,
    "events": _check_events,
    "native": _check_native,
}


@pytest.mark.pcscd
def test_suite_runs_every_section_and_prints_the_summary(vpcd_reader: str, tmp_path: Path) -> None:
    out = tmp_path / "suite.json"
    command = [sys.executable, str(SUITE), "--quick", "--slot", str(pcsc_env.DEFAULT_SLOT), "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=SUITE.parents[1])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    lines = result.stdout.splitlines()
    assert lines[0] == "sscard benchmark suite (benchmarks/run.py)"
    assert lines[1].startswith("machine: ") and "pcsc-lite" in lines[1]
    assert lines[2].startswith("date: ") and "quick True" in lines[2]
    for name in SECTIONS:
        assert any(line.startswith(f"== {name}: ") for line in lines), name
    summary = lines.index("== summary ==")
    assert lines[summary + 1].split() == ["section", "figure", "value", "goal", "verdict"]
    assert any(line.startswith("overhead") and ("PASS" in line or "OVER" in line) for line in lines[summary:])

    data = json.loads(out.read_text())
    assert data["benchmark"] == "suite" and data["parameters"]["quick"] is True
    assert list(data["sections"]) == list(SECTIONS)
    assert data["summary"] and all(row["verdict"] in VERDICTS for row in data["summary"])
    for name, section in data["sections"].items():
        if section["status"] == "skipped":
            assert not in_ci(), f"{name} skipped under CI: {section['reason']}"
            assert name == "readers" and section["reason"], section
            continue
        assert section["status"] == "ok", (name, section)
        assert section["figures"] and all(figure["verdict"] in VERDICTS for figure in section["figures"])
        CHECKS[name](section["data"])
    if in_ci():
        assert data["sections"]["process"]["data"]["opensc"], "opensc-tool must be installed in CI (run.sh)"

    # Every section took its card out again: the reader is free for the next test.
    assert pcsc_env.wait_for_reader(vpcd_reader, present=False)


def test_suite_refuses_an_unknown_section() -> None:
    result = subprocess.run(
        [sys.executable, str(SUITE), "--only", "apdus,nosuch"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unknown section(s) nosuch" in result.stderr
    assert result.stdout == ""
