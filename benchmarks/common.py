"""Pieces every benchmark in ``benchmarks/`` shares: PC/SC checks, a raw PC/SC waiter, statistics,
machine information and the printed table.

A benchmark here is a script with ``main(argv: list[str] | None = None) -> int`` that prints a
table (:func:`format_table`) headed by :func:`header_lines`, optionally writes JSON
(:func:`write_json`), and exits 0 whatever the figures are; it exits non-zero only when it could not
run (:class:`BenchmarkError`: no pcscd, no reader, a wait that timed out, ...).

pyscard is imported inside the functions that need it, so importing this module never needs it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

#: How long any single wait of a benchmark may take before it gives up with a clear error.
STEP_TIMEOUT = 10.0
#: pcsc-lite's ``PCSCLITE_STATUS_POLL_RATE``: how often pcscd asks a reader without interrupt-driven
#: card presence (vpcd is one) whether a card is there.
PCSCD_POLL_S = 0.4
_INFINITE = 0xFFFFFFFF
_CANCEL_PATIENCE_S = 2.0


class BenchmarkError(RuntimeError):
    """The benchmark could not run (or could not finish); the message says why and what to check."""


class RawPcsc:
    """A bare pyscard connection (shared, T=0 or T=1) for the raw sides of the comparisons:
    ``scard``, ``context``, ``handle`` and ``pci`` for SCardTransmit; :meth:`close` ends it."""

    def __init__(self, reader: str) -> None:
        from smartcard import scard

        self.scard: Any = scard
        code, self.context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if code != scard.SCARD_S_SUCCESS:
            raise BenchmarkError(f"SCardEstablishContext: {scard.SCardGetErrorMessage(code)}")
        protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        code, self.handle, protocol = scard.SCardConnect(self.context, reader, scard.SCARD_SHARE_SHARED, protocols)
        if code != scard.SCARD_S_SUCCESS:
            scard.SCardReleaseContext(self.context)
            raise BenchmarkError(f"SCardConnect({reader!r}): {scard.SCardGetErrorMessage(code)}")
        self.pci = scard.SCARD_PCI_T0 if protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1

    def close(self) -> None:
        self.scard.SCardDisconnect(self.handle, self.scard.SCARD_LEAVE_CARD)
        self.scard.SCardReleaseContext(self.context)


def vpcd_reader_name(slot: int) -> str:
    """vpcd's PC/SC reader name for ``slot``: "Virtual PCD 00 00", "Virtual PCD 00 01", ..."""
    return f"Virtual PCD 00 {slot:02d}"


def default_slot() -> int:
    """The vpcd slot to use unless told otherwise: ``SSCARD_VPCD_SLOT`` (as the tests), else 0."""
    try:
        return int(os.environ.get("SSCARD_VPCD_SLOT", "0"))
    except ValueError:
        return 0


# -- PC/SC -----------------------------------------------------------------------------------


def _u32(code: int) -> int:
    return code & 0xFFFFFFFF


@contextmanager
def pcsc_context() -> Iterator[int]:
    """An established PC/SC context, released on exit; :class:`BenchmarkError` when pcscd is not there."""
    try:
        from smartcard import scard
    except ImportError as exc:
        raise BenchmarkError(f"pyscard cannot be imported ({exc}); run with the project's venv") from None
    code, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if _u32(code) != _u32(scard.SCARD_S_SUCCESS):
        raise BenchmarkError(
            f"cannot reach pcscd ({scard.SCardGetErrorMessage(code)}); start it, e.g. `pcscd -f &` as root"
        )
    try:
        yield int(context)
    finally:
        scard.SCardReleaseContext(context)


def list_readers() -> list[str]:
    from smartcard import scard

    with pcsc_context() as context:
        code, readers = scard.SCardListReaders(context, [])
    return list(readers) if _u32(code) == _u32(scard.SCARD_S_SUCCESS) else []


def require_reader(reader: str) -> None:
    """Check that pcscd answers and shows ``reader``; :class:`BenchmarkError` saying what is wrong otherwise."""
    readers = list_readers()
    if reader not in readers:
        shown = ", ".join(repr(name) for name in readers) or "none"
        raise BenchmarkError(
            f"pcscd has no reader {reader!r} (readers: {shown}); is vsmartcard-vpcd installed and "
            "configured in /etc/reader.conf.d with enough slots?"
        )


def reader_state(reader: str) -> int:
    """The reader's current ``SCARD_STATE_*`` flags (without ``SCARD_STATE_CHANGED``)."""
    from smartcard import scard

    with pcsc_context() as context:
        code, states = scard.SCardGetStatusChange(context, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
    if _u32(code) != _u32(scard.SCARD_S_SUCCESS):
        raise BenchmarkError(f"SCardGetStatusChange({reader!r}): {scard.SCardGetErrorMessage(code)}")
    return int(states[0][1]) & ~int(scard.SCARD_STATE_CHANGED)


def is_present(state: int) -> bool:
    from smartcard import scard

    return bool(state & scard.SCARD_STATE_PRESENT)


def is_empty(state: int) -> bool:
    from smartcard import scard

    return bool(state & scard.SCARD_STATE_EMPTY)


@dataclass(frozen=True)
class StateChange:
    """One wake of :class:`RawStatusWaiter`: ``time.monotonic()`` right after the call returned, and the new state."""

    time: float
    state: int


class RawStatusWaiter:
    """A plain PC/SC client: a thread blocked in ``SCardGetStatusChange(INFINITE)`` on one reader.

    It does nothing but record when pcscd woke it, so it is the floor any PC/SC client can reach:
    comparing a component's event time with this one's wake shows what the component adds.
    :meth:`stop` ends it with ``SCardCancel``.
    """

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self._changes: queue.SimpleQueue[StateChange | BaseException] = queue.SimpleQueue()
        self._context: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._in_call = threading.Event()
        self.initial_state: int | None = None

    def start(self) -> None:
        """Open a context, read the reader's state, and start waiting for changes to it."""
        from smartcard import scard

        code, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if _u32(code) != _u32(scard.SCARD_S_SUCCESS):
            raise BenchmarkError(f"cannot reach pcscd ({scard.SCardGetErrorMessage(code)})")
        self._context = int(context)
        code, states = scard.SCardGetStatusChange(self._context, 0, [(self.reader, scard.SCARD_STATE_UNAWARE)])
        if _u32(code) != _u32(scard.SCARD_S_SUCCESS):
            scard.SCardReleaseContext(self._context)
            self._context = None
            raise BenchmarkError(f"SCardGetStatusChange({self.reader!r}): {scard.SCardGetErrorMessage(code)}")
        self.initial_state = int(states[0][1]) & ~scard.SCARD_STATE_CHANGED
        self._thread = threading.Thread(
            target=self._run, args=(self._context, self.initial_state), name="raw-pcsc-waiter", daemon=True
        )
        self._thread.start()

    def _run(self, context: int, known: int) -> None:
        from smartcard import scard

        try:
            while not self._stopping.is_set():
                self._in_call.set()
                try:
                    code, states = scard.SCardGetStatusChange(context, _INFINITE, [(self.reader, known)])
                finally:
                    self._in_call.clear()
                woke = time.monotonic()  # first thing after the call: this is the client's wake
                if _u32(code) == _u32(scard.SCARD_E_CANCELLED) or self._stopping.is_set():
                    return
                if _u32(code) != _u32(scard.SCARD_S_SUCCESS):
                    raise BenchmarkError(f"SCardGetStatusChange({self.reader!r}): {scard.SCardGetErrorMessage(code)}")
                known = int(states[0][1]) & ~scard.SCARD_STATE_CHANGED
                self._changes.put(StateChange(woke, known))
        except BaseException as exc:
            self._changes.put(exc)

    def wait_for(self, wanted: Callable[[int], bool], *, after: float, timeout: float = STEP_TIMEOUT) -> StateChange:
        """The first change at or after monotonic time ``after`` whose state satisfies ``wanted``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                item = self._changes.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise BenchmarkError(
                    f"the raw PC/SC client saw no expected change on {self.reader!r} within {timeout:g} s"
                ) from None
            if isinstance(item, BaseException):
                raise BenchmarkError(f"the raw PC/SC client failed: {item}") from item
            if item.time >= after and wanted(item.state):
                return item

    def stop(self) -> None:
        """Wake the blocked call with ``SCardCancel`` (repeatedly, in case it was just entering it) and end."""
        from smartcard import scard

        self._stopping.set()
        thread, context = self._thread, self._context
        if context is None:
            return
        if thread is not None:
            deadline = time.monotonic() + _CANCEL_PATIENCE_S
            while thread.is_alive() and time.monotonic() < deadline:
                scard.SCardCancel(context)
                thread.join(0.05)
            if thread.is_alive():
                return  # a daemon thread still inside the call: leave its context alone rather than crash it
        scard.SCardReleaseContext(context)
        self._context = None


def wait_until(reader: str, wanted: Callable[[int], bool], description: str, timeout: float = STEP_TIMEOUT) -> None:
    """Block until ``reader``'s state satisfies ``wanted`` (e.g. :func:`is_empty`).

    :class:`BenchmarkError` after ``timeout`` seconds, naming the state (``description``) awaited.
    """
    from smartcard import scard

    deadline = time.monotonic() + timeout
    with pcsc_context() as context:
        known = scard.SCARD_STATE_UNAWARE
        while True:
            wait_ms = 0 if known == scard.SCARD_STATE_UNAWARE else 100
            code, states = scard.SCardGetStatusChange(context, wait_ms, [(reader, known)])
            if _u32(code) == _u32(scard.SCARD_S_SUCCESS):
                known = int(states[0][1]) & ~scard.SCARD_STATE_CHANGED
                if wanted(known):
                    return
            elif _u32(code) != _u32(scard.SCARD_E_TIMEOUT):
                raise BenchmarkError(f"SCardGetStatusChange({reader!r}): {scard.SCardGetErrorMessage(code)}")
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{reader!r} did not become {description} within {timeout:g} s")


# -- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0..1) quantile with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Stats:
    """Median, 90th percentile and maximum of some samples, in milliseconds."""

    n: int
    median: float
    p90: float
    max: float

    @classmethod
    def of(cls, values_ms: Sequence[float | None]) -> Stats:
        """Statistics of the samples that exist; ``None`` ones (a measurement that was unavailable) are left out."""
        present = [value for value in values_ms if value is not None]
        if not present:
            return cls(0, math.nan, math.nan, math.nan)
        return cls(len(present), percentile(present, 0.5), percentile(present, 0.9), max(present))

    def to_json(self) -> dict[str, Any]:
        def number(value: float) -> float | None:
            return round(value, 3) if math.isfinite(value) else None

        return {"n": self.n, "median_ms": number(self.median), "p90_ms": number(self.p90), "max_ms": number(self.max)}


def ms(seconds: float) -> float:
    return seconds * 1000.0


# -- machine and output ----------------------------------------------------------------------


def _pcsc_lite_version() -> str | None:
    executable = shutil.which("pcscd") or ("/usr/sbin/pcscd" if Path("/usr/sbin/pcscd").exists() else None)
    if executable is None:
        return None
    try:
        result = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"pcsc-lite version ([0-9][0-9.]*[0-9])", result.stdout + result.stderr)
    return match.group(1) if match else None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """What ran the benchmark: figures mean little without it."""
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "pcsc_lite": _pcsc_lite_version(),
        "pyscard": _package_version("pyscard"),
        "sscard": _package_version("sscard"),
    }


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def header_lines(title: str, machine: dict[str, Any], date: str, parameters: dict[str, Any]) -> list[str]:
    """The lines above a benchmark's table: what was measured, on what, when, with which settings."""
    cpu = f"{machine['cpu_count']} CPUs" + (f" ({machine['cpu']})" if machine.get("cpu") else "")
    versions = ", ".join(
        f"{name} {machine[key]}"
        for key, name in (("pcsc_lite", "pcsc-lite"), ("pyscard", "pyscard"))
        if machine.get(key)
    )
    return [
        title,
        f"machine: {machine['platform']}; {cpu}; {machine['python']}" + (f"; {versions}" if versions else ""),
        f"date: {date}; " + ", ".join(f"{key} {value}" for key, value in parameters.items()),
    ]


@dataclass(frozen=True)
class Row:
    """One line of the table: a group (printed once), a label, its statistics and an optional note."""

    group: str
    label: str
    stats: Stats
    note: str = ""


def _cell(value: float) -> str:
    return f"{value:9.2f}" if math.isfinite(value) else f"{'n/a':>9}"


def format_table(rows: Sequence[Row], unit: str = "ms") -> str:
    """Rows under a ``median  p90  max`` header; a group name is printed on its first row only."""
    group_width = max([len(row.group) for row in rows] + [5])
    label_width = max([len(row.label) for row in rows] + [6])
    lines = [f"{'':{group_width}}  {'':{label_width}}  {'median':>9}  {'p90':>9}  {'max':>9}  ({unit})"]
    previous = None
    for row in rows:
        group = row.group if row.group != previous else ""
        previous = row.group
        cells = "  ".join(_cell(value) for value in (row.stats.median, row.stats.p90, row.stats.max))
        line = f"{group:{group_width}}  {row.label:{label_width}}  {cells}"
        lines.append(f"{line}  {row.note}".rstrip())
    return "\n".join(lines)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON (NaN written as null, so any JSON reader takes it)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [clean(item) for item in value]
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# -- added for benchmarks/service.py: spreads (with a minimum) and process memory --------------


@dataclass(frozen=True)
class Spread:
    """Minimum, median, 90th percentile and maximum of some samples, in milliseconds.

    For distributions whose low end says something too, e.g. how far apart many receivers hear
    of one event (:class:`Stats` has no minimum).
    """

    n: int
    min: float
    median: float
    p90: float
    max: float

    @classmethod
    def of(cls, values_ms: Sequence[float | None]) -> Spread:
        """Statistics of the samples that exist; ``None`` ones are left out."""
        present = [value for value in values_ms if value is not None]
        if not present:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        return cls(len(present), min(present), percentile(present, 0.5), percentile(present, 0.9), max(present))

    def to_json(self) -> dict[str, Any]:
        def number(value: float) -> float | None:
            return round(value, 3) if math.isfinite(value) else None

        return {
            "n": self.n,
            "min_ms": number(self.min),
            "median_ms": number(self.median),
            "p90_ms": number(self.p90),
            "max_ms": number(self.max),
        }


@dataclass(frozen=True)
class SpreadRow:
    """One line of :func:`format_spread_table`: like :class:`Row`, with a :class:`Spread`."""

    group: str
    label: str
    spread: Spread
    note: str = ""


def format_spread_table(rows: Sequence[SpreadRow], unit: str = "ms") -> str:
    """Rows under a ``min  median  p90  max`` header (plus the sample count); a group is printed once."""
    group_width = max([len(row.group) for row in rows] + [5])
    label_width = max([len(row.label) for row in rows] + [6])
    heads = "  ".join(f"{head:>9}" for head in ("min", "median", "p90", "max"))
    lines = [f"{'':{group_width}}  {'':{label_width}}  {'n':>5}  {heads}  ({unit})"]
    previous = None
    for row in rows:
        group = row.group if row.group != previous else ""
        previous = row.group
        spread = row.spread
        cells = "  ".join(_cell(value) for value in (spread.min, spread.median, spread.p90, spread.max))
        line = f"{group:{group_width}}  {row.label:{label_width}}  {spread.n:>5}  {cells}"
        lines.append(f"{line}  {row.note}".rstrip())
    return "\n".join(lines)


def process_memory(pid: int) -> dict[str, int]:
    """A process's memory from ``/proc/PID/status`` in kB: ``rss_kb`` (VmRSS, now) and ``hwm_kb``
    (VmHWM, the peak RSS since it started); :class:`BenchmarkError` if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise BenchmarkError(f"cannot read the memory of process {pid}: {exc}") from None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        return {key: int(fields[name].split()[0]) for key, name in (("rss_kb", "VmRSS"), ("hwm_kb", "VmHWM"))}
    except (KeyError, IndexError, ValueError):
        raise BenchmarkError(f"process {pid} reports no VmRSS/VmHWM (a zombie?)") from None


# -- added for the suite (benchmarks/run.py): options, sections, goals, tables, helpers ----------

#: Where the scripts live: each section also runs as ``python benchmarks/NAME.py``.
BENCH_DIR = Path(__file__).resolve().parent
#: The vpcd slot of ad-hoc suite runs when ``SSCARD_VPCD_SLOT`` is not set: slot 1, so that a test
#: run on slot 0 can share the pcscd.
SUITE_FALLBACK_SLOT = 1


def suite_default_slot() -> int:
    """``SSCARD_VPCD_SLOT`` (as the tests), else :data:`SUITE_FALLBACK_SLOT`."""
    try:
        return int(os.environ.get("SSCARD_VPCD_SLOT", str(SUITE_FALLBACK_SLOT)))
    except ValueError:
        return SUITE_FALLBACK_SLOT


class BenchmarkSkip(BenchmarkError):
    """A section cannot run on this machine for a reason that is not a failure (say, not root).

    The suite reports it as skipped; under CI (``CI`` set) a skip of something ``run.sh`` installs
    is turned into a failure by the section itself.
    """


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Options:
    """What every section is told: quick (smoke-test sizes) or full, the vpcd slot, the persona."""

    quick: bool = False
    slot: int = SUITE_FALLBACK_SLOT
    persona: str = "typical"
    timeout: float = STEP_TIMEOUT

    def pick(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass(frozen=True)
class Figure:
    """One line of the suite's summary: a figure, optionally checked against a goal."""

    label: str
    value: str
    goal: str = ""
    verdict: str = ""  # "PASS", "OVER" or "" (no goal)

    def to_json(self) -> dict[str, str]:
        return {"label": self.label, "value": self.value, "goal": self.goal, "verdict": self.verdict}


def verdict(value: float, goal: float, *, at_most: bool = True) -> str:
    """PASS when ``value`` meets ``goal`` (at most, or strictly below with ``at_most=False``), else OVER."""
    if not math.isfinite(value):
        return "n/a"
    return "PASS" if (value <= goal if at_most else value < goal) else "OVER"


@dataclass
class Section:
    """What one section of the suite measured: its printed lines, its JSON and its summary figures."""

    name: str
    title: str
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    status: str = "ok"  # "ok", "skipped" or "failed"
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"title": self.title, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        out["figures"] = [figure.to_json() for figure in self.figures]
        out["data"] = self.data
        return out


def format_columns(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> str:
    """A plain aligned table: the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [max([len(headers[i])] + [len(row[i]) for row in rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [cell.ljust(widths[i]) if i < left else cell.rjust(widths[i]) for i, cell in enumerate(cells)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def median(values: Sequence[float]) -> float:
    return percentile(values, 0.5)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator and math.isfinite(denominator) else math.nan


def alternating(rounds: int, sides: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
    """``(round, sides in this round's order)``: the order rotates every round, so neither side
    always runs first (first after a pause, or right after the other one) and drift hits both."""
    for number in range(rounds):
        shift = number % len(sides)
        yield number, [*sides[shift:], *sides[:shift]]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) from ``/proc/PID/stat``; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``SSCARD_*`` setting (no caller's reader, key service
    or configuration leaks into a measured process), plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SSCARD_")}
    env.update(extra)
    return env


def wait_line(stream: Any, timeout: float, what: str) -> str:
    """The next line of a child's pipe, or :class:`BenchmarkError` after ``timeout`` seconds."""
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    threading.Thread(target=lambda: lines.put(stream.readline()), name="bench-readline", daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise BenchmarkError(f"{what}: nothing within {timeout:g} s") from None
    return line.decode(errors="replace") if isinstance(line, bytes) else str(line)


def stop_process(process: subprocess.Popen[Any] | None, timeout: float = 5.0) -> None:
    """SIGTERM a child we started, SIGKILL if it does not go in time; reaps it either way."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


class CardServer:
    """Simulated cards served from a process of their own (``benchmarks/cardserver.py``).

    A real card computes on its own chip; a simulated card in the benchmark's process would share
    its GIL and CPU time with the code being measured.  ``start()`` returns once every card is in
    vpcd (the socket connected); whether pcscd has seen it yet is the caller's wait.
    """

    def __init__(self, persona: str, ports: Sequence[int], timeout: float = STEP_TIMEOUT) -> None:
        self.persona = persona
        self.ports = list(ports)
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._errors: Any = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> CardServer:
        command = [sys.executable, str(BENCH_DIR / "cardserver.py"), "--persona", self.persona]
        command += ["--timeout", str(self.timeout)]
        for port in self.ports:
            command += ["--port", str(port)]
        # A file, not a pipe, so nobody has to keep draining it; closed by stop().
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors, env=clean_env()
        )
        assert self.process.stdout is not None
        try:
            line = wait_line(self.process.stdout, self.timeout + 5, f"card server on port(s) {self.ports}")
        except BenchmarkError:
            line = ""
        if line.strip() != "ready":
            stop_process(self.process)
            self._errors.seek(0)
            error = self._errors.read().decode(errors="replace").strip()[-500:]
            self.stop()
            raise BenchmarkError(
                f"the simulated card(s) on vpcd port(s) {self.ports} did not go in: {error or 'no answer'}"
            )
        return self

    def stop(self) -> None:
        """Close its standard input (it takes the cards out and exits); kill it if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            stop_process(process)
        if process.stdout is not None:
            process.stdout.close()
        if self._errors is not None:
            self._errors.close()
            self._errors = None

    def __enter__(self) -> CardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CapturingTransport:
    """Wraps a transport (``Terminal(transport_wrapper=...)``) and keeps every command and answer as sent.

    Benchmarks only: unlike :class:`sscard.transports.replay.RecordingTransport` nothing is
    redacted, so never use it for a PIN operation whose bytes would then sit in memory.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.exchanges: list[tuple[bytes, bytes]] = []

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def atr(self) -> bytes:
        return bytes(self.inner.atr)

    @property
    def protocol(self) -> str:
        return str(self.inner.protocol)

    def transmit(self, apdu: bytes) -> bytes:
        response = bytes(self.inner.transmit(apdu))
        self.exchanges.append((bytes(apdu), response))
        return response

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        manager: contextlib.AbstractContextManager[None] = self.inner.transaction()
        return manager

    def close(self) -> None:
        self.inner.close()


def record_read(reader: str) -> list[tuple[bytes, bytes]]:
    """The exchanges of one ``Terminal.read()`` on ``reader`` (default configuration), as sent."""
    from sscard.config import Config
    from sscard.terminal import Terminal
    from sscard.transports.pcsc import PcscReader

    captured: list[CapturingTransport] = []

    def wrap(transport: Any) -> Any:
        captured.append(CapturingTransport(transport))
        return captured[-1]

    with Terminal(PcscReader(reader), config=Config(), transport_wrapper=wrap) as terminal:
        terminal.read()
    return [exchange for transport in captured for exchange in transport.exchanges]


def ensure_empty(reader: str, timeout: float) -> None:
    """Wait for ``reader`` to be empty (another program's card, or our previous section's)."""
    if is_present(reader_state(reader)):
        wait_until(reader, is_empty, "empty", timeout)


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def render_section(section: Section) -> list[str]:
    """A section as printed by the suite: a title line, then its lines (or why it did not run)."""
    head = f"== {section.name}: {section.title} =="
    if section.status != "ok":
        return [head, f"{section.status.upper()}: {section.reason}"]
    return [head, *section.lines]


def run_section(name: str, title: str, measure: Callable[[Options], Section], options: Options) -> Section:
    """``measure(options)``, with a skip or a failure turned into a section that says why."""
    try:
        return measure(options)
    except BenchmarkSkip as exc:
        return Section(name, title, status="skipped", reason=str(exc))
    except BenchmarkError as exc:
        return Section(name, title, status="failed", reason=str(exc))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:  # say so, run the other sections
        return Section(name, title, status="failed", reason=f"{type(exc).__name__}: {exc}")


def section_main(
    argv: Sequence[str] | None, name: str, title: str, measure: Callable[[Options], Section], description: str
) -> int:
    """``main()`` of one section run on its own: ``[--quick] [--slot S] [--persona P] [--json PATH]``."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"benchmarks/{name}.py", description=description)
    parser.add_argument("--quick", action="store_true", help="small round counts (the smoke test's)")
    parser.add_argument(
        "--slot", type=int, default=suite_default_slot(), help="vpcd slot (default: $SSCARD_VPCD_SLOT, else 1)"
    )
    parser.add_argument("--persona", default="typical", help="simulated card persona (default %(default)s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    options = Options(quick=args.quick, slot=args.slot, persona=args.persona)
    date, machine = now_iso(), machine_info()
    section = run_section(name, title, measure, options)
    print(
        "\n".join(header_lines(f"sscard benchmark: {title}", machine, date, {"quick": args.quick, "slot": args.slot}))
    )
    print()
    print("\n".join(render_section(section)))
    if args.json is not None:
        write_json(args.json, {"benchmark": name, "date": date, "machine": machine, **section.to_json()})
        print(f"\nJSON: {args.json}")
    if section.status == "failed":
        print(f"benchmarks/{name}.py: cannot run: {section.reason}", file=sys.stderr)
        return 1
    return 0
