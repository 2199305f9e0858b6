"""Several readers: four cards read at the same time on four readers, next to one reader alone.

    .venv/bin/python benchmarks/readers.py [--quick] [--json PATH]        (as root)

vpcd gives a pcscd at most two working readers: its driver keeps one connection per *slot number*
in a global array, so a second vpcd device in the same pcscd takes over the first one's slots.  The
benchmark therefore starts a **private pcscd** of its own, leaving the shared one (and the test
runs on it) alone, with a reader configuration of two vpcd devices of two slots each -- four
readers -- each device loading its own copy of the driver library so each has its own globals:

* pcsc-lite 1.9.9's daemon always listens on ``/run/pcscd/pcscd.comm`` (only the client library
  honours ``PCSCLITE_CSOCK_NAME``), so the private pcscd runs in a mount namespace of its own
  (``unshare --mount``) with a temporary directory bind-mounted on ``/run/pcscd``; the clients
  reach its socket through ``PCSCLITE_CSOCK_NAME``.  That needs root, as pcscd itself does.
* ``-c DIR`` points it at the temporary reader configuration; ``-x`` makes it exit by itself after
  60 s without clients, should this script be killed.  The vpcd ports are free ones found at start.

Four simulated cards are served by four processes of their own (:class:`common.CardServer`).  The
measuring client runs as a child process with ``PCSCLITE_CSOCK_NAME`` set (libpcsclite reads it
once per process).  Alternating per round, it times ``Terminal.read()``:

* **one reader**: K reads on one terminal, the other readers idle;
* **4 threads**: one ``Terminal`` per reader, one thread each, K reads each, started together --
  the issue's measurement (one kiosk process, several readers);
* **4 processes**: the same with one process per reader (no shared GIL), as a diagnosis.

The ratio is the median time of one read with four running against one read alone (goal ≤ 1.3).
Every mode also counts the CPU time per read of the client(s), pcscd and the simulated cards
(``/proc/PID/stat``), which shows when the machine's cores, not sscard, set the limit.  A
benchmark: exits 0 whatever the figures.  See benchmarks/README.md and docs/performance.md.
"""

from __future__ import annotations

import glob
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import (
    BenchmarkError,
    BenchmarkSkip,
    CardServer,
    Figure,
    Options,
    Row,
    Section,
    Stats,
    alternating,
    clean_env,
    fmt,
    format_columns,
    format_table,
    in_ci,
    is_present,
    median,
    ms,
    process_cpu_seconds,
    ratio,
    section_main,
    stop_process,
    wait_line,
    wait_until,
)

NAME = "readers"
TITLE = "4 readers read concurrently vs one reader alone (private pcscd)"
GOAL_RATIO = 1.3
READERS = 4
DEVICES = ("A", "B")  # two vpcd devices of two slots each
FRIENDLY = "sscard bench"
PORT_RANGE = range(35970, 36400, 4)
VPCD_DRIVER_GLOBS = (
    "/usr/lib/pcsc/drivers/serial/libifdvpcd.so*",
    "/usr/lib/*/pcsc/drivers/serial/libifdvpcd.so*",
    "/usr/lib64/pcsc/drivers/serial/libifdvpcd.so*",
    "/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so*",
)
#: Run by ``unshare --mount`` as ``sh -c SCRIPT sh RUNDIR PCSCD CONFDIR``.
PRIVATE_PCSCD = 'mkdir -p /run/pcscd && mount --bind "$1" /run/pcscd && exec "$2" -f -x -c "$3"'
MODES = ("one", "threads", "processes")
MODE_LABELS = {"one": "one reader alone", "threads": "4 readers, 4 threads", "processes": "4 readers, 4 processes"}


def reader_names() -> list[str]:
    return [f"{FRIENDLY} {device} 00 {slot:02d}" for device in DEVICES for slot in range(2)]


# -- the private pcscd ------------------------------------------------------------------------


def _free_port_block() -> int:
    """The first base port of :data:`PORT_RANGE` whose four ports nobody listens on (vpcd binds 0.0.0.0)."""
    for base in PORT_RANGE:
        probes = []
        try:
            for port in range(base, base + READERS):
                probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                probes.append(probe)
                probe.bind(("0.0.0.0", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise BenchmarkError(f"no four free TCP ports for vpcd in {PORT_RANGE.start}-{PORT_RANGE.stop}")


def _prerequisites() -> tuple[str, str]:
    """(pcscd, vpcd driver) paths; :class:`BenchmarkSkip` saying what is missing otherwise."""
    pcscd = shutil.which("pcscd") or ("/usr/sbin/pcscd" if Path("/usr/sbin/pcscd").exists() else None)
    drivers = [path for pattern in VPCD_DRIVER_GLOBS for path in glob.glob(pattern)]
    missing = []
    if pcscd is None:
        missing.append("pcscd (Debian: pcscd)")
    if not drivers:
        missing.append("the vpcd driver (Debian: vsmartcard-vpcd)")
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (Debian: util-linux / mount)")
    if os.geteuid() != 0:
        missing.append("root: the private pcscd needs its own /run/pcscd (a mount namespace)")
    if missing:
        raise BenchmarkSkip("cannot start a private pcscd: needs " + "; ".join(missing))
    assert pcscd is not None
    return pcscd, sorted(drivers)[0]


class PrivatePcscd:
    """A pcscd of our own with four vpcd readers, in a mount namespace, on a socket in ``workdir``."""

    def __init__(self, workdir: Path, timeout: float) -> None:
        self.workdir = workdir
        self.timeout = timeout
        self.pcscd, self.driver = _prerequisites()
        self.base_port = _free_port_block()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "pcscd.log"

    @property
    def socket(self) -> Path:
        return self.workdir / "run" / "pcscd.comm"

    @property
    def ports(self) -> list[int]:
        return list(range(self.base_port, self.base_port + READERS))

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> PrivatePcscd:
        conf, run, lib = (self.workdir / name for name in ("conf", "run", "lib"))
        for directory in (conf, run, lib):
            directory.mkdir()
        entries = []
        for index, device in enumerate(DEVICES):
            library = lib / f"libifdvpcd-{device}.so"  # its own copy: the driver's globals are per library
            shutil.copy(self.driver, library)
            channel = self.base_port + 2 * index  # slot s of the device listens on channel + s
            entries.append(
                f'FRIENDLYNAME "{FRIENDLY} {device}"\nDEVICENAME   /dev/null:0x{channel:X}\n'
                f"LIBPATH      {library}\nCHANNELID    0x{channel:X}\n"
            )
        (conf / "vpcd-bench").write_text("\n".join(entries), encoding="utf-8")
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", PRIVATE_PCSCD]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, "sh", str(run), self.pcscd, str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.timeout
        while not self.socket.exists():
            if self.process.poll() is not None:
                raise BenchmarkError(f"the private pcscd exited ({self.process.returncode}): {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise BenchmarkError(f"the private pcscd did not come up in {self.timeout:g} s: {self.log_tail()}")
            time.sleep(0.05)
        return self

    def log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:]) or "(empty log)"
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)


# -- the measuring client (a child process with PCSCLITE_CSOCK_NAME set) ----------------------


def _terminal(reader: str) -> Any:
    from sscard.config import Config
    from sscard.terminal import Terminal
    from sscard.transports.pcsc import PcscReader

    return Terminal(PcscReader(reader), config=Config())


def _timed_reads(terminal: Any, count: int, out: list[float]) -> None:
    for _ in range(count):
        started = time.perf_counter()
        terminal.read()
        out.append(time.perf_counter() - started)


def reader_child(reader: str) -> int:
    """``--reader-child NAME``: one terminal; ``go K`` on stdin -> K reads -> a JSON line of their times."""
    terminal = _terminal(reader)
    for _ in range(3):
        terminal.read()
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if len(words) != 2 or words[0] != "go":
            break
        durations: list[float] = []
        _timed_reads(terminal, int(words[1]), durations)
        print(json.dumps(durations), flush=True)
    terminal.close()
    return 0


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(params: dict[str, Any]) -> dict[str, Any]:
    """Time the three modes, alternating; count every process's CPU time per mode."""
    readers: list[str] = params["readers"]
    rounds, per_round, timeout = params["rounds"], params["reads"], params["timeout"]
    for reader in readers:
        wait_until(reader, is_present, "present", timeout)
    terminals = [_terminal(reader) for reader in readers]
    for terminal in terminals:
        for _ in range(3):
            terminal.read()
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--reader-child", reader],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for reader in readers
    ]
    others = {"pcscd": [params["pcscd_pid"]], "cards": params["card_pids"], "children": [c.pid for c in children]}
    durations: dict[str, list[float]] = {mode: [] for mode in MODES}
    walls: dict[str, float] = dict.fromkeys(MODES, 0.0)
    cpu: dict[str, dict[str, float]] = {mode: {"client": 0.0, "pcscd": 0.0, "cards": 0.0} for mode in MODES}
    try:
        for child in children:
            assert child.stdout is not None
            if wait_line(child.stdout, timeout + 10, "a reader child").strip() != "ready":
                raise BenchmarkError("a reader child did not start")

        def snapshot() -> dict[str, float]:
            shot = {key: sum(process_cpu_seconds(pid) for pid in pids) for key, pids in others.items()}
            shot["self"] = _self_cpu()
            return shot

        def run(mode: str) -> None:
            before, started = snapshot(), time.perf_counter()
            if mode == "one":
                _timed_reads(terminals[0], per_round, durations[mode])
            elif mode == "threads":
                results: list[list[float]] = [[] for _ in terminals]
                barrier = threading.Barrier(len(terminals) + 1)

                def work(terminal: Any, out: list[float]) -> None:
                    barrier.wait()
                    _timed_reads(terminal, per_round, out)

                threads = [threading.Thread(target=work, args=pair) for pair in zip(terminals, results, strict=True)]
                for thread in threads:
                    thread.start()
                barrier.wait()
                started = time.perf_counter()
                for thread in threads:
                    thread.join()
                for result in results:
                    durations[mode].extend(result)
            else:
                for child in children:
                    assert child.stdin is not None
                    child.stdin.write(f"go {per_round}\n")
                    child.stdin.flush()
                for child in children:
                    assert child.stdout is not None
                    durations[mode].extend(json.loads(wait_line(child.stdout, timeout + 60, "a reader child")))
            walls[mode] += time.perf_counter() - started
            after = snapshot()
            client = after["children"] - before["children"] if mode == "processes" else after["self"] - before["self"]
            cpu[mode]["client"] += client
            cpu[mode]["pcscd"] += after["pcscd"] - before["pcscd"]
            cpu[mode]["cards"] += after["cards"] - before["cards"]

        for _number, order in alternating(rounds, list(MODES)):
            for mode in order:
                run(mode)
    finally:
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                stop_process(child)
        for terminal in terminals:
            terminal.close()
    return {"durations": durations, "walls": walls, "cpu": cpu, "cores": os.cpu_count() or 1}


# -- the parent -------------------------------------------------------------------------------


def measure(options: Options) -> Section:
    try:
        _prerequisites()
    except BenchmarkSkip as exc:
        if in_ci():
            raise BenchmarkError(f"the several-readers benchmark must run in CI: {exc}") from None
        raise
    workdir = Path(tempfile.mkdtemp(prefix="sscard-bench-readers-"))
    pcscd: PrivatePcscd | None = None
    servers: list[CardServer] = []
    try:
        pcscd = PrivatePcscd(workdir, options.timeout)
        pcscd.start()
        servers = [CardServer(options.persona, [port], options.timeout).start() for port in pcscd.ports]
        params = {
            "readers": reader_names(),
            "rounds": options.pick(30, 2),
            "reads": options.pick(10, 3),
            "timeout": options.timeout,
            "pcscd_pid": pcscd.pid,
            "card_pids": [server.pid for server in servers],
        }
        result = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(params)],
            env=clean_env(PCSCLITE_CSOCK_NAME=str(pcscd.socket)),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise BenchmarkError(f"the measuring client failed: {result.stderr.strip()[-800:]}")
        data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        for server in servers:
            server.stop()
        if pcscd is not None:
            pcscd.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return _section(options, params, data, pcscd.base_port)


def _section(options: Options, params: dict[str, Any], data: dict[str, Any], base_port: int) -> Section:
    durations = {mode: [ms(value) for value in values] for mode, values in data["durations"].items()}
    reads = {mode: len(values) for mode, values in durations.items()}
    one = median(durations["one"])
    value = ratio(median(durations["threads"]), one)
    value_processes = ratio(median(durations["processes"]), one)
    result = "PASS" if value <= GOAL_RATIO else "OVER"
    rows = [Row("per read", MODE_LABELS[mode], Stats.of(durations[mode])) for mode in MODES]
    cores = int(data["cores"])
    cpu_rows = []
    per_read_cpu: dict[str, dict[str, float]] = {}
    for mode in MODES:
        parts = {key: ms(seconds) / reads[mode] for key, seconds in data["cpu"][mode].items()}
        per_read_cpu[mode] = parts
        total = sum(parts.values())
        wall_per_read = ms(data["walls"][mode]) / reads[mode]
        cpu_rows.append(
            [
                MODE_LABELS[mode],
                fmt(parts["client"]),
                fmt(parts["pcscd"]),
                fmt(parts["cards"]),
                fmt(total),
                f"{1000 / wall_per_read:,.0f}",
                fmt(total / wall_per_read, 2),
            ]
        )
    threads_cpu = sum(per_read_cpu["threads"].values())
    bound = max(1.0, READERS * threads_cpu / cores / one)
    without_client = per_read_cpu["threads"]["pcscd"] + per_read_cpu["threads"]["cards"]
    bound_free_client = max(1.0, READERS * without_client / cores / (one - per_read_cpu["one"]["client"]))
    lines = [
        f"persona {options.persona!r}; readers {', '.join(params['readers'])} (private pcscd, vpcd ports "
        f"{base_port}-{base_port + READERS - 1}); {params['rounds']} rounds of {params['reads']} reads a reader, "
        "alternating",
        "",
        format_table(rows),
        "",
        f"ratio 4 threads / one reader (medians): {fmt(value)}  {result} (goal: ≤ {GOAL_RATIO:.1f}); "
        f"4 processes / one reader: {fmt(value_processes)}",
        "",
        f"CPU time per read (ms) and what the {cores} cores did:",
        format_columns(
            ["", "client", "pcscd", "cards", "total", "reads/s", "cores busy"],
            cpu_rows,
        ),
        f"bound on this machine: 4 reads in flight need ≥ 4 × {fmt(threads_cpu)} ms CPU / {cores} cores = "
        f"{fmt(READERS * threads_cpu / cores)} ms each, a ratio ≥ {fmt(bound)}; with a client that cost "
        f"nothing, pcscd and the simulated cards alone would still give ≥ {fmt(bound_free_client)}",
    ]
    out = {
        "readers": params["readers"],
        "rounds": params["rounds"],
        "reads_per_round": params["reads"],
        "cores": cores,
        "goal": {"metric": "median read time, 4 threads / one reader", "at_most": GOAL_RATIO},
        "ratio_median": value,
        "ratio_processes_median": value_processes,
        "verdict": result,
        "summary_ms": {mode: Stats.of(durations[mode]).to_json() for mode in MODES},
        "reads_per_second": {mode: reads[mode] / data["walls"][mode] for mode in MODES},
        "cpu_ms_per_read": per_read_cpu,
        "bound_ratio": bound,
        "bound_ratio_without_client": bound_free_client,
        "samples_ms": durations,
    }
    figures = [
        Figure("4 readers concurrently / 1 alone (threads, medians)", f"{fmt(value)}x", f"≤ {GOAL_RATIO:.1f}x", result),
        Figure(
            "the same with 4 processes; CPU-time bound on this machine", f"{fmt(value_processes)}x; ≥ {fmt(bound)}x"
        ),
    ]
    return Section(NAME, TITLE, lines, out, figures)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--worker"] and len(args) == 2:
        print(json.dumps(worker(json.loads(args[1]))), flush=True)
        return 0
    if args[:1] == ["--reader-child"] and len(args) == 2:
        return reader_child(args[1])
    return section_main(args, NAME, TITLE, measure, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
