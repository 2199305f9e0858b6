"""The service under a connection flood: does the kiosk page's read still answer?

    .venv/bin/python benchmarks/flood.py [--quick] [--json PATH]

A local program that opens thousands of connections to ``sscard serve`` and never finishes a
request (slowloris) must not starve the kiosk page (issue 11, item 6; docs/service.md,
"Connection limits").  For each connection cap (``[service] max_connections``: the default 256,
and 4096, above the flood, so that every stalled connection is really held) this:

1. starts ``sscard serve --reader sim:PERSONA`` on a free 127.0.0.1 port (``python -m
   sscard.cli``, its own configuration file: the cap, ``header_timeout = 10``), so the reads are
   answered by the simulated card inside the service: what is measured is the HTTP side, not
   pcscd (benchmarks/service.py measures reads through pcscd);
2. times ``--reads`` legitimate ``POST /v1/read`` requests, each on a new connection (the worst
   case for the page: it must get a connection first), with nothing else going on;
3. opens ``--connections`` (2,000) connections from this one process: a third send nothing, a
   third half a request line, a third trickle header bytes (one byte per second per connection);
4. while they are held (less than the header timeout), times the same reads again, and samples
   the service's RSS (``VmRSS``/``VmHWM``), its task count (``Threads``, what systemd's
   ``TasksMax`` counts) and its open files;
5. counts how many of the flood's connections the service had closed by then (evicted at the
   cap) and again after the header timeout (all of them, if the timeout works), then closes
   the rest and stops the service.

Everything is bounded: the connection count, every socket and read timeout, the hold time (the
header timeout plus 3 s); the script stops by itself.  Only 127.0.0.1 is ever contacted.  Exit
status 0 whatever the figures, 1 when it could not run (the service did not start, a read failed
outright, no file descriptors).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    BenchmarkError,
    Figure,
    Options,
    Row,
    Section,
    Stats,
    clean_env,
    format_columns,
    format_table,
    ms,
    process_memory,
    section_main,
    stop_process,
)

NAME = "flood"
TITLE = "`sscard serve` under 2,000 stalled connections (reads, memory, tasks)"
CONNECTIONS, QUICK_CONNECTIONS = 2000, 300
READS, QUICK_READS = 30, 5
CAPS = (256, 4096)
HEADER_TIMEOUT = 10.0
READ_TIMEOUT = 15.0
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def raise_own_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise BenchmarkError(f"this process may open {hard} files, the flood needs {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@contextlib.contextmanager
def service(cap: int, persona: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``sscard serve`` with this connection cap on a free port; stopped on exit."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="sscard-flood-") as workdir:
        config = Path(workdir) / "config.toml"
        config.write_text(
            f"[service]\nmax_connections = {cap}\nheader_timeout = {HEADER_TIMEOUT}\nbody_timeout = 10\n",
            encoding="utf-8",
        )
        command = [sys.executable, "-m", "sscard.cli", "serve", "--reader", f"sim:{persona}", "--port", str(port)]
        env = clean_env(SSCARD_CONFIG=str(config), PYTHONPATH=str(ROOT / "src"))
        process = subprocess.Popen(command, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                    raise BenchmarkError(f"sscard serve exited with status {process.returncode}: {err.strip()[-300:]}")
                try:
                    read_once(port, timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise BenchmarkError("sscard serve did not answer within 30 s") from None
                    time.sleep(0.2)
            yield port, process
        finally:
            stop_process(process, timeout=10)


def read_once(port: int, timeout: float = READ_TIMEOUT) -> float:
    """One ``POST /v1/read`` on a new connection, as the kiosk page sends it; seconds to the parsed body."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        origin = f"http://127.0.0.1:{port}"
        connection.request(
            "POST", "/v1/read", body=b"{}", headers={"Origin": origin, "Content-Type": "application/json"}
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise BenchmarkError(f"POST /v1/read answered {response.status}: {body[:200]!r}")
    json.loads(body)
    return time.perf_counter() - start


@dataclass
class Sample:
    rss_kb: int
    hwm_kb: int
    threads: int
    fds: int


def sample(pid: int) -> Sample:
    memory = process_memory(pid)
    status = Path(f"/proc/{pid}/status").read_text()
    threads = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Threads:"))
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = -1
    return Sample(memory["rss_kb"], memory["hwm_kb"], threads, fds)


def open_flood(port: int, count: int) -> tuple[list[socket.socket], int]:
    """``count`` stalled connections (thirds: silent, half a request line, trickling headers); and failures."""
    held: list[socket.socket] = []
    failed = 0
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", port))
            if i % 3 == 1:
                sock.sendall(b"GET /v1/sta")
            elif i % 3 == 2:
                sock.sendall(b"POST /v1/read HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        except OSError:
            failed += 1
            sock.close()
            continue
        sock.setblocking(False)
        held.append(sock)
    return held, failed


def trickle(held: Sequence[socket.socket]) -> None:
    """One more header byte on every third connection (the slowloris ones)."""
    for sock in held[2::3]:
        with contextlib.suppress(OSError):
            sock.send(b"a")


def closed_count(held: Sequence[socket.socket]) -> int:
    """How many of ``held`` the service has closed (EOF or reset seen), without blocking."""
    closed = 0
    for start in range(0, len(held), 500):
        chunk = held[start : start + 500]
        poller = select.poll()
        for sock in chunk:
            poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
        ready = {fd for fd, _ in poller.poll(0)}
        for sock in chunk:
            if sock.fileno() not in ready:
                continue
            try:
                if sock.recv(4096, socket.MSG_PEEK) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
    return closed


@dataclass
class CapResult:
    cap: int
    connections: int
    failed: int
    open_s: float
    quiet: list[float]
    flooded: list[float]
    idle: Sample
    peak: Sample
    closed_while_held: int
    closed_after_timeout: int
    waited_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "cap": self.cap,
            "connections": self.connections,
            "connect_failures": self.failed,
            "open_seconds": round(self.open_s, 3),
            "read_quiet": Stats.of([ms(v) for v in self.quiet]).to_json(),
            "read_flooded": Stats.of([ms(v) for v in self.flooded]).to_json(),
            "read_quiet_ms": [round(ms(v), 3) for v in self.quiet],
            "read_flooded_ms": [round(ms(v), 3) for v in self.flooded],
            "idle": vars(self.idle),
            "peak": vars(self.peak),
            "closed_while_held": self.closed_while_held,
            "closed_after_header_timeout": self.closed_after_timeout,
            "waited_seconds": round(self.waited_s, 1),
        }


def measure_cap(cap: int, connections: int, reads: int, persona: str) -> CapResult:
    with service(cap, persona) as (port, process):
        read_once(port)  # warm-up
        quiet: list[float] = []
        for _ in range(reads):
            quiet.append(read_once(port))
            time.sleep(0.02)
        idle = sample(process.pid)
        start = time.monotonic()
        held, failed = open_flood(port, connections)
        opened = time.monotonic() - start
        try:
            flooded: list[float] = []
            peak = sample(process.pid)
            hold_until = start + HEADER_TIMEOUT * 0.7
            while len(flooded) < reads and time.monotonic() < hold_until:
                trickle(held)
                flooded.append(read_once(port))
                now = sample(process.pid)
                peak = Sample(
                    max(peak.rss_kb, now.rss_kb), now.hwm_kb, max(peak.threads, now.threads), max(peak.fds, now.fds)
                )
                time.sleep(0.05)
            if not flooded:
                raise BenchmarkError("no read fitted in the hold time")
            while_held = closed_count(held)
            deadline = start + HEADER_TIMEOUT + 3.0
            after = while_held
            while time.monotonic() < deadline:
                time.sleep(0.5)
                after = closed_count(held)
                if after == len(held):
                    break
            waited = time.monotonic() - start
        finally:
            for sock in held:
                sock.close()
        return CapResult(cap, len(held), failed, opened, quiet, flooded, idle, peak, while_held, after, waited)


def _mib(kb: int) -> str:
    return f"{kb / 1024:.1f} MiB"


def measure(options: Options) -> Section:
    connections = options.pick(CONNECTIONS, QUICK_CONNECTIONS)
    reads = options.pick(READS, QUICK_READS)
    raise_own_nofile(connections + 256)
    results = [measure_cap(cap, connections, reads, options.persona) for cap in CAPS]
    lines = [f"connections {connections} stalled from one process; reads {reads}; header_timeout {HEADER_TIMEOUT:g} s"]
    rows = []
    for result in results:
        group = f"cap {result.cap}"
        rows.append(Row(group, "POST /v1/read, quiet", Stats.of([ms(v) for v in result.quiet])))
        note = f"{len(result.flooded)} reads, all answered"
        rows.append(Row(group, "POST /v1/read, flooded", Stats.of([ms(v) for v in result.flooded]), note))
    lines += ["", format_table(rows)]
    table = []
    for result in results:
        table.append(
            [
                f"cap {result.cap}",
                f"{result.connections} ({result.failed} failed) in {result.open_s:.1f} s",
                f"{result.closed_while_held}",
                f"{result.closed_after_timeout} by {result.waited_s:.0f} s",
                f"{_mib(result.idle.rss_kb)} / {_mib(result.peak.rss_kb)}",
                f"{result.idle.threads} / {result.peak.threads}",
                f"{result.idle.fds} / {result.peak.fds}",
            ]
        )
    headers = ["", "flood opened", "closed while held", "closed after timeout", "RSS idle / flood", "tasks", "files"]
    lines += ["", format_columns(headers, table)]
    data = {
        "parameters": {"connections": connections, "reads": reads, "header_timeout": HEADER_TIMEOUT},
        "caps": [result.to_json() for result in results],
    }
    figures = []
    for result in results:
        quiet, flooded = Stats.of([ms(v) for v in result.quiet]), Stats.of([ms(v) for v in result.flooded])
        figures.append(
            Figure(
                f"read quiet / under {result.connections} stalled, cap {result.cap} (medians)",
                f"{quiet.median:.2f} / {flooded.median:.2f} ms",
            )
        )
    worst = max(results, key=lambda r: r.peak.rss_kb)
    figures.append(
        Figure("service RSS / tasks at most, under the flood", f"{_mib(worst.peak.rss_kb)} / {worst.peak.threads}")
    )
    return Section(NAME, TITLE, lines, data, figures)


def main(argv: Sequence[str] | None = None) -> int:
    return section_main(argv, NAME, TITLE, measure, "sscard serve under a flood of stalled connections")


if __name__ == "__main__":
    sys.exit(main())
