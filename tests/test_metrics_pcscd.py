"""Health and metrics through the real pcscd + vpcd (issue 15, "Done when"): ``sscard serve`` as a
process on the vpcd reader; ``/metrics`` parsed with prometheus_client's own parser, its counters
moving by exactly one per read; ``/readyz`` 503 within 2 s of pcscd being killed and 200 again
after it restarts, with the reconnect counted."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import pcsc_env
from test_service_e2e import _post, service

__all__ = ["service"]  # the fixture: `sscard serve --reader <vpcd>` on a free port

#: The issue's bound on noticing pcscd gone.
LOST_WITHIN = 2.0


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _wait_ready(port: int, want: int, within: float) -> tuple[float, dict[str, Any]]:
    """Poll /readyz until it answers ``want``; the seconds it took and the last body."""
    began = time.monotonic()
    while True:
        status, body = _readyz(port)
        if status == want:
            return time.monotonic() - began, body
        assert time.monotonic() - began < within, f"/readyz still {status} after {within} s: {body}"
        time.sleep(0.05)


@pytest.mark.pcscd
def test_metrics_count_each_read_and_readyz_follows_pcscd(
    pcscd: pcsc_env.Pcscd, vpcd_card: pcsc_env.InsertCard, service: tuple[int, Any], tmp_path: Path
) -> None:
    port, process = service
    vpcd_card("typical", reconnect=True)
    _wait_ready(port, 200, 20)
    before = _metrics(port)
    assert _value(before, "sscard_pcscd_up") == 1 and _value(before, "sscard_reader_up") == 1
    reads = _value(before, "sscard_card_operations_total", operation="read", outcome="ok")
    for n in range(1, 4):
        status, _card = _post(port, "/v1/read")
        assert status == 200
        now = _metrics(port)
        assert _value(now, "sscard_card_operations_total", operation="read", outcome="ok") == reads + n
        assert _value(now, "sscard_card_operation_seconds_count", operation="read") == reads + n
    reconnects = _value(now, "sscard_pcscd_reconnects_total")

    killed = time.monotonic()
    pcscd.kill()
    _took, body = _wait_ready(port, 503, LOST_WITHIN - (time.monotonic() - killed))
    assert body["checks"]["pcscd"] == {"ok": False, "code": "NO_SERVICE"}
    assert body["status"] == "not_ready" and body["checks"]["serial"]["ok"]
    assert time.monotonic() - killed < LOST_WITHIN
    assert _value(_metrics(port), "sscard_pcscd_up") == 0

    pcscd.restart(tmp_path / "pcscd-restarted.log")
    _took, body = _wait_ready(port, 200, 30)
    assert all(check["ok"] for check in body["checks"].values())
    deadline = time.monotonic() + 20
    while (samples := _metrics(port))["sscard_pcscd_reconnects_total", ()] != reconnects + 1 or not _value(
        samples, "sscard_card_present"
    ):
        assert time.monotonic() < deadline, "the reconnect was not counted, or the card not seen again"
        time.sleep(0.1)
    after = _metrics(port)
    assert _value(after, "sscard_pcscd_up") == 1
    status, _card = _post(port, "/v1/read")
    assert status == 200
    last = _metrics(port)
    ok_reads = _value(last, "sscard_card_operations_total", operation="read", outcome="ok")
    assert ok_reads == _value(after, "sscard_card_operations_total", operation="read", outcome="ok") + 1
    assert process.poll() is None
