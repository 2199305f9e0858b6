"""pytest plugin: record what became of every end-to-end test that goes through pcscd.

Loaded for every run with ``-p support.ci_guard`` (pyproject's ``[tool.pytest.ini_options]``).  Each test
carrying the ``pcscd`` marker gets one outcome — passed, failed, error, skipped, xfailed, xpassed,
or not_run when it was collected but never reported (``-x``, an interrupt) — and the session writes
``test-output/pcscd-report.json``::

    {"counts": {"passed": 3, "skipped": 0, ...}, "total": 3, "exitstatus": 0,
     "tests": [{"nodeid": "...", "outcome": "passed", "reason": null}, ...],
     "collection_skips": [{"nodeid": "...", "reason": "..."}]}

``.ci/check_pcscd_tests.py`` reads it after ``./run.sh test`` and fails CI when a pcscd test was
skipped or none passed, so a machine without pcscd or vpcd cannot turn CI green by skipping.
Tests deselected with ``-m``/``-k`` are not collected and do not appear.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

MARKER = "pcscd"
REPORT = Path("test-output") / "pcscd-report.json"
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "not_run")


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    wasxfail = getattr(report, "wasxfail", None)
    if wasxfail is not None:
        return str(wasxfail) or "xfail"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class PcscdOutcomes:
    """Collects one outcome per ``pcscd`` test and writes the report at session end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: dict[str, dict[str, Any]] = {}
        self.collection_skips: list[dict[str, str]] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # A module skipped at import (a top-level ``pytest.importorskip``) hides its tests from the
        # count; the report names it so an empty count can be explained.
        if report.skipped:
            self.collection_skips.append({"nodeid": report.nodeid, "reason": _skip_reason(report)})

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            if item.get_closest_marker(MARKER) is not None:
                self.results[item.nodeid] = {"nodeid": item.nodeid, "outcome": "not_run", "reason": None}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.results.get(report.nodeid)
        if entry is None:
            return
        outcome, reason = entry["outcome"], entry["reason"]
        if report.failed:
            # A failure in any phase wins; one outside the test body is an error, as pytest says.
            if outcome not in ("failed", "error"):
                outcome = "failed" if report.when == "call" else "error"
                reason = None
        elif report.skipped:
            if outcome in ("not_run", "passed"):
                outcome = "xfailed" if hasattr(report, "wasxfail") else "skipped"
                reason = _skip_reason(report)
        elif report.when == "call" and outcome == "not_run":
            outcome = "xpassed" if hasattr(report, "wasxfail") else "passed"
        entry["outcome"], entry["reason"] = outcome, reason

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for entry in self.results.values():
            counts[entry["outcome"]] += 1
        return counts

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        shown = ", ".join(f"{name} {count}" for name, count in self.counts().items() if count)
        terminalreporter.write_line(f"pcscd end-to-end tests ({REPORT}): {shown or 'none collected'}")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, exitstatus: int) -> None:
        report = {
            "counts": self.counts(),
            "total": len(self.results),
            "exitstatus": int(exitstatus),
            "tests": list(self.results.values()),
            "collection_skips": self.collection_skips,
        }
        path = self.config.rootpath / REPORT
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # under xdist only the controller sees every outcome
        config.pluginmanager.register(PcscdOutcomes(config), "ci_guard_pcscd_outcomes")
