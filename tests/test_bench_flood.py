"""Smoke test of the flood benchmark (benchmarks/flood.py, issue 11 item 6): it starts ``sscard
serve`` twice (the default connection cap and one above the flood), floods it with stalled
connections from one process, and prints the read latency with and without them.

Only the shape of the output and what must hold whatever the machine (every read answered, every
stalled connection closed by the header timeout, none failed) are checked, never a time.  No
pcscd: the service reads the simulated card in process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "flood.py"


def test_flood_benchmark_reads_through_the_flood_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "flood.json"
    command = [sys.executable, str(BENCHMARK), "--quick", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=BENCHMARK.parents[1])
    assert result.returncode == 0, result.stderr
    assert "POST /v1/read, quiet" in result.stdout and "POST /v1/read, flooded" in result.stdout
    data = json.loads(out.read_text())
    assert data["benchmark"] == "flood" and data["status"] == "ok"
    caps = data["data"]["caps"]
    assert [cap["cap"] for cap in caps] == [256, 4096]
    for cap in caps:
        assert cap["connect_failures"] == 0 and cap["connections"] == 300
        assert cap["read_flooded"]["n"] >= 1, "a read answered while the connections were held"
        assert cap["closed_after_header_timeout"] == cap["connections"], "the header timeout closed them all"
        assert cap["peak"]["threads"] >= 1 and cap["peak"]["rss_kb"] > 0
    assert caps[0]["closed_while_held"] >= 300 - 256, "at the cap, the oldest stalled connections gave way"
    assert caps[1]["closed_while_held"] == 0, "under the cap, every stalled connection was held"
