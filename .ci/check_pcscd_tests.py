"""Fail CI unless the end-to-end tests through pcscd + vpcd really ran and passed.

Reads the report that tests/support/ci_guard.py writes (default test-output/pcscd-report.json).  Exit 0 only
when at least one ``pcscd`` test passed and none was skipped, xfailed, failed, errored or left unrun:
a CI machine where pcscd or the vpcd driver is missing must go red, not green-with-skips.

Standard library only, so it runs with any python3.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: Outcomes that fail CI, with how the message says it.
NOT_PASSED = {
    "skipped": "were skipped",
    "xfailed": "xfailed",
    "failed": "failed",
    "error": "errored",
    "not_run": "were collected but did not run",
}


def check(path: Path) -> list[str]:
    """Return the problems found; print the counts and every test that did not pass."""
    if not path.is_file():
        return [f"{path} is missing: pytest did not run to the end, or the ci_guard plugin was not loaded"]
    report = json.loads(path.read_text(encoding="utf-8"))
    counts: dict[str, int] = report["counts"]
    shown = ", ".join(f"{name} {count}" for name, count in counts.items())
    print(f"ci: pcscd end-to-end tests — {shown}")
    problems = []
    for skipped in report.get("collection_skips", []):
        print(f"ci:   module skipped at collection: {skipped['nodeid']}: {skipped['reason']}")
    for test in report["tests"]:
        if test["outcome"] != "passed":
            reason = f": {test['reason']}" if test["reason"] else ""
            print(f"ci:   {test['outcome']}: {test['nodeid']}{reason}")
    if counts.get("passed", 0) == 0:
        problems.append("no end-to-end test through pcscd passed (none marked `pcscd` ran)")
    for outcome, verb in NOT_PASSED.items():
        if counts.get(outcome, 0):
            problems.append(f"{counts[outcome]} end-to-end test(s) through pcscd {verb}")
    return problems


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "test-output/pcscd-report.json")
    problems = check(path)
    for problem in problems:
        print(f"ci: FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
