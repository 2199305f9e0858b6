"""What the service's metrics cost (issue 15 item 2): a scrape, and what they add to a read.

    .venv/bin/python benchmarks/metrics.py [--rounds 300] [--slot S] [--quick] [--json PATH]

Four figures, each a median over ``--rounds`` with its p95:

1. **render** — ``Metrics.render()`` (prometheus_client's ``generate_latest``) on a registry
   populated as a busy kiosk's would be: every operation with several outcomes, every refusal
   reason, PIN outcomes, native calls, gauges.  What a scrape costs the service's event loop.
2. **scrape over HTTP** — ``GET /metrics`` against ``GET /healthz`` (the cheapest request the
   service answers) on one keep-alive connection to a real uvicorn server running the service's
   app, alternating; their difference is a scrape's own cost, the rest is HTTP.
3. **metrics per read** — the calls a read makes into the metrics (the observer's ``started`` and
   ``finished``, the queue wait), timed in a tight loop: their cost per read, next to the median
   ``POST /v1/read`` through the same server, as a percentage (goal < 2 %).
4. **read A/B** — ``POST /v1/read`` through that server with the terminal's observer attached
   and detached, alternating every round: the same question measured end to end (noisier than 3,
   which it bounds from the other side).

The server runs in this process (uvicorn on a thread, a free loopback port) on ``sim:typical``;
with ``--slot S`` on vpcd slot S through pcscd, the simulated card served from a process of its
own (``common.CardServer``), so the read is a PC/SC read as on a kiosk.  A benchmark, not a test:
it exits 0 whatever the figures, non-zero only when it could not run.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from common import BenchmarkError, format_columns, header_lines, machine_info, now_iso, percentile, write_json

#: The goals of issue 15.
SCRAPE_GOAL_MS = 2.0
READ_GOAL_PERCENT = 2.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _populate(metrics: Any, *, worst: bool = False) -> None:
    """Series as a busy kiosk's day creates them (``worst``: every operation with every outcome)."""
    from sscard.errors import AuthRequired, CardRemoved, NoCard, NotSsc, PinFormat, PinIncorrect
    from sscard.ssc.application import PinOutcome, PinState

    day: dict[str, list[BaseException | None]] = {
        "read": [None, NoCard("bench"), CardRemoved("bench"), NotSsc("bench")],
        "verify": [None, PinIncorrect(2), PinFormat()],
        "sign_in": [None, PinIncorrect(2), NoCard("bench")],
        "sign_out": [None],
        "pin_status": [None],
        "read_photo": [None, AuthRequired("photo")],
    }
    if worst:
        every: list[BaseException | None] = [None, CardRemoved("bench"), NoCard("bench"), PinIncorrect(2)]
        day = dict.fromkeys((*day, "change_pin", "hsm_step1", "hsm_step2", "auth_check"), every)
    for operation, outcomes in day.items():
        for error in outcomes:
            for seconds in (0.02, 0.08, 0.3, 1.2):
                metrics.started(operation, False)
                metrics.finished(operation, False, seconds, None, error)
    for state in (PinState.VERIFIED, PinState.INCORRECT, PinState.BLOCKED):
        metrics.finished("verify", True, 0.01, PinOutcome(state, 2), None)
    for reason in ("origin", "host", "token", "busy", "size", "sec-fetch-site", "header timeout", "connections"):
        metrics.refused(reason)
    for function, code in (("iReadCardBas", 0), ("iReadCardBas", -11), ("iVerifyPIN", -51), ("other", -13)):
        metrics.native_call(function, code)
    for wait in (0.0001, 0.002, 0.4):
        metrics.queued(wait)


def _samples(text: bytes) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))


def _timed(call: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return samples


def _stats(samples: Sequence[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(samples) * 1000, "p95_ms": percentile(samples, 0.95) * 1000}


@contextlib.contextmanager
def _server(reader: str) -> Iterator[tuple[int, Any]]:
    """The service's app on a real uvicorn server on a thread; yields (port, Service)."""
    import uvicorn

    from sscard.config import Config
    from sscard.service.app import create_app

    port = _free_port()
    config = Config(reader=reader)
    app = create_app(config, port=port)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="bench-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise BenchmarkError("the service did not start")
        time.sleep(0.05)
    try:
        yield port, app.state.service
    finally:
        server.should_exit = True
        thread.join(10)


class _Client:
    """One keep-alive HTTP connection, as a kiosk page or a scraper keeps one."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str) -> bytes:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise BenchmarkError(f"GET {path}: HTTP {response.status} {body[:200]!r}")
        return body

    def read(self) -> None:
        self.connection.request("POST", "/v1/read", body=b"{}", headers={"Content-Type": "application/json"})
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise BenchmarkError(f"POST /v1/read: HTTP {response.status} {body[:200]!r}")
        json.loads(body)


def measure(reader: str, rounds: int) -> dict[str, Any]:
    from sscard.service.metrics import Metrics

    metrics, worst = Metrics(), Metrics()
    _populate(metrics)
    _populate(worst, worst=True)
    for registry in (metrics, worst):
        _timed(registry.render, 20)  # warm-up
    text, worst_text = metrics.render(), worst.render()
    results: dict[str, Any] = {
        "reader": reader,
        "rounds": rounds,
        "exposition_bytes": len(text),
        "exposition_samples": _samples(text),
        "render": _stats(_timed(metrics.render, rounds)),
        "worst_exposition_samples": _samples(worst_text),
        "worst_render": _stats(_timed(worst.render, rounds)),
    }
    with _server(reader) as (port, service):
        client = _Client(port)
        for _ in range(3):  # warm-up: connections, first read's imports
            client.read()
        _populate(service.metrics)
        scrape: list[float] = []
        health: list[float] = []
        for i in range(rounds):
            pair = [("metrics", "/metrics"), ("health", "/healthz")]
            for name, path in pair if i % 2 == 0 else reversed(pair):
                began = time.perf_counter()
                client.get(path)
                (scrape if name == "metrics" else health).append(time.perf_counter() - began)
        results["scrape_http"] = _stats(scrape)
        results["healthz_http"] = _stats(health)
        results["scrape_own_ms"] = results["scrape_http"]["median_ms"] - results["healthz_http"]["median_ms"]

        reads = max(rounds // 3, 20)
        with_metrics: list[float] = []
        without: list[float] = []
        observer = service.terminal.observer
        for i in range(reads):
            for attached in (True, False) if i % 2 == 0 else (False, True):
                service.terminal.observer = observer if attached else None
                began = time.perf_counter()
                client.read()
                (with_metrics if attached else without).append(time.perf_counter() - began)
        service.terminal.observer = observer
        results["read_with_metrics"] = _stats(with_metrics)
        results["read_without_metrics"] = _stats(without)
        median_with = results["read_with_metrics"]["median_ms"]
        median_without = results["read_without_metrics"]["median_ms"]
        results["read_ab_percent"] = (median_with - median_without) / median_without * 100

    probe = Metrics()
    loops = max(rounds * 20, 2000)

    def hundred_reads() -> None:
        for _ in range(100):
            probe.queued(0.0001)
            probe.started("read", False)
            probe.finished("read", False, 0.05, None, None)

    per_read = statistics.median(_timed(hundred_reads, loops // 100)) / 100
    results["metrics_per_read_us"] = per_read * 1e6
    results["metrics_per_read_percent"] = per_read * 1000 / median_without * 100
    return results


def report(results: dict[str, Any]) -> list[str]:
    render, scrape, health = results["render"], results["scrape_http"], results["healthz_http"]
    worst = results["worst_render"]
    rows = [
        ["render (generate_latest)", f"{render['median_ms']:.3f} ms", f"{render['p95_ms']:.3f} ms", ""],
        [
            f"render, every label ({results['worst_exposition_samples']} samples)",
            f"{worst['median_ms']:.3f} ms",
            f"{worst['p95_ms']:.3f} ms",
            "",
        ],
        ["GET /metrics over HTTP", f"{scrape['median_ms']:.3f} ms", f"{scrape['p95_ms']:.3f} ms", ""],
        ["GET /healthz over HTTP", f"{health['median_ms']:.3f} ms", f"{health['p95_ms']:.3f} ms", ""],
        [
            "a scrape's own cost",
            f"{results['scrape_own_ms']:.3f} ms",
            "",
            "PASS" if results["scrape_own_ms"] < SCRAPE_GOAL_MS and render["median_ms"] < SCRAPE_GOAL_MS else "OVER",
        ],
        [
            "POST /v1/read, metrics on",
            f"{results['read_with_metrics']['median_ms']:.3f} ms",
            f"{results['read_with_metrics']['p95_ms']:.3f} ms",
            "",
        ],
        [
            "POST /v1/read, observer off",
            f"{results['read_without_metrics']['median_ms']:.3f} ms",
            f"{results['read_without_metrics']['p95_ms']:.3f} ms",
            "",
        ],
        ["read A/B difference", f"{results['read_ab_percent']:+.2f} %", "", ""],
        [
            "metrics' calls per read",
            f"{results['metrics_per_read_us']:.1f} µs = {results['metrics_per_read_percent']:.3f} % of a read",
            "",
            "PASS" if results["metrics_per_read_percent"] < READ_GOAL_PERCENT else "OVER",
        ],
    ]
    lines = [
        f"metrics cost on {results['reader']}: a kiosk's day is {results['exposition_samples']} samples, "
        f"{results['exposition_bytes']} bytes per scrape, {results['rounds']} rounds",
        "",
    ]
    lines += format_columns(
        ["", "median", "p95", f"goal (< {SCRAPE_GOAL_MS:g} ms, < {READ_GOAL_PERCENT:g} %)"], rows
    ).splitlines()
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--slot", type=int, help="read through pcscd on vpcd slot S (default: sim:typical)")
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke test, figures not worth quoting")
    parser.add_argument("--json", metavar="PATH")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = 30 if args.quick else args.rounds
    try:
        if args.slot is None:
            results = measure("sim:typical", rounds)
        else:
            from common import CardServer, is_present, require_reader, vpcd_reader_name, wait_until

            from sscard.sim import VpcdLink

            reader = vpcd_reader_name(args.slot)
            require_reader(reader)
            with CardServer("typical", [VpcdLink.port_for_slot(args.slot)]):
                wait_until(reader, is_present, "present")
                results = measure(reader, rounds)
    except BenchmarkError as exc:
        print(f"metrics benchmark: {exc}", file=sys.stderr)
        return 1
    machine, date = machine_info(), now_iso()
    title = "the service's metrics: a scrape, and what they add to a read"
    for line in header_lines(title, machine, date, {"reader": results["reader"], "rounds": rounds}):
        print(line)
    for line in report(results):
        print(line)
    if args.json:
        write_json(Path(args.json), {"time": date, "machine": machine, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
