"""The whole command: ``sscard read`` as a process next to OpenSC's ``opensc-tool`` (C) sending the
same APDUs to the same virtual card, and sscard's start-up: time to its first APDU and its imports.

    .venv/bin/python benchmarks/process.py [--quick] [--slot S] [--json PATH]

A simulated card goes into vpcd slot S, served from a thread of this process that notes the
``time.monotonic()`` (one clock for every process on the machine) of every APDU it answers.  One
``Terminal.read()`` is recorded byte for byte; then, alternating, each round runs

* ``sscard read --reader "Virtual PCD 00 0S" --json`` (the venv's console script, a configuration
  file with nothing set);
* ``opensc-tool -r N -c default -s APDU -s APDU ...`` with exactly the recorded APDUs (``-c
  default`` keeps OpenSC from probing the card with its drivers' own commands first);
* ``python -c pass``: the interpreter's own start and exit, for scale.

Per process: wall time from just before ``Popen`` to its exit, split at the card into start-up
(to the first APDU), the APDUs (first to last) and the exit (last APDU to the process's end).
Then ``python -X importtime`` on ``import sscard.cli`` and on a whole ``sscard read``: the import
time and the heaviest imports.

OpenSC comes from the Debian package ``opensc`` (``run.sh`` installs it).  Without it the OpenSC
rows say so; under CI (``CI`` set) its absence is a failure.  A benchmark: exits 0 whatever the
figures.  See benchmarks/README.md and docs/performance.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
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
    alternating,
    clean_env,
    ensure_empty,
    fmt,
    format_columns,
    format_table,
    in_ci,
    is_present,
    median,
    ms,
    ratio,
    record_read,
    require_reader,
    section_main,
    verdict,
    vpcd_reader_name,
    wait_until,
)

from sscard.errors import SscardError
from sscard.sim import Persona, SimulatedCard, VpcdLink, load_persona

NAME = "process"
TITLE = "whole command: `sscard read` process vs opensc-tool (C), start-up and imports"
#: Packages whose import is worth knowing about when a plain read loads them.
WATCHED = ("asyncio", "cryptography", "construct", "smartcard", "ssl", "websockets", "starlette", "uvicorn")
PROCESS_TIMEOUT = 30.0
#: Issue 11, item 14: ``sscard read --json`` as a process at most 2.5 times ``opensc-tool``.
GOAL_RATIO = 2.5


class TimedCard(SimulatedCard):
    """A simulated card that notes when each APDU reached it (``time.monotonic()``)."""

    def __init__(self, persona: Persona) -> None:
        super().__init__(persona)
        self.times: list[float] = []

    def process(self, apdu: bytes) -> bytes:
        self.times.append(time.monotonic())
        return super().process(apdu)


@dataclass(frozen=True)
class Run:
    """One process: wall time, and where its APDUs fell (None when it sent none)."""

    wall: float
    apdus: int
    first: float | None
    last: float | None

    @property
    def startup(self) -> float | None:
        return self.first

    @property
    def apdu_phase(self) -> float | None:
        return None if self.first is None or self.last is None else self.last - self.first

    @property
    def exit(self) -> float | None:
        return None if self.last is None else self.wall - self.last


def timed_run(command: Sequence[str], card: TimedCard, env: dict[str, str], what: str) -> Run:
    card.times.clear()
    started = time.monotonic()
    try:
        result = subprocess.run(command, env=env, capture_output=True, timeout=PROCESS_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"{what} did not finish within {PROCESS_TIMEOUT:g} s") from None
    ended = time.monotonic()
    if result.returncode != 0:
        error = (result.stderr or result.stdout).decode(errors="replace").strip()[-400:]
        raise BenchmarkError(f"{what} exited with status {result.returncode}: {error}")
    times = [t - started for t in card.times if t >= started]
    return Run(ended - started, len(times), times[0] if times else None, times[-1] if times else None)


def sscard_command() -> list[str]:
    script = Path(sys.executable).parent / "sscard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sscard.cli"]


def opensc_reader_index(reader: str) -> int:
    result = subprocess.run(["opensc-tool", "-l"], capture_output=True, text=True, timeout=30, check=False)
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts and parts[0].isdigit() and line.rstrip().endswith(reader):
            return int(parts[0])
    raise BenchmarkError(f"opensc-tool -l does not list {reader!r}:\n{result.stdout}{result.stderr}")


@dataclass(frozen=True)
class ImportEntry:
    level: int
    self_us: int
    cumulative_us: int
    name: str


def parse_importtime(stderr: str) -> list[ImportEntry]:
    """``-X importtime`` lines (``import time: self | cumulative | name``, nesting by indent)."""
    entries = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit() or not parts[1].strip().isdigit():
            continue
        field = parts[2].rstrip()
        indent = len(field) - len(field.lstrip())
        entries.append(ImportEntry((indent - 1) // 2, int(parts[0]), int(parts[1]), field.strip()))
    return entries


def import_profile(command: Sequence[str], env: dict[str, str]) -> tuple[float, list[ImportEntry]]:
    """Total import time (ms: the top-level imports' cumulative times) and the entries."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise BenchmarkError(f"python -X importtime {' '.join(command)}: status {result.returncode}")
    entries = parse_importtime(result.stderr)
    return sum(entry.cumulative_us for entry in entries if entry.level == 0) / 1000, entries


def measure(options: Options) -> Section:
    reader = vpcd_reader_name(options.slot)
    require_reader(reader)
    ensure_empty(reader, options.timeout)
    opensc = shutil.which("opensc-tool")
    if opensc is None and in_ci():
        raise BenchmarkError("opensc-tool is not installed (Debian package opensc; ./run.sh setup installs it)")
    rounds, import_runs = options.pick(15, 2), options.pick(5, 1)
    card = TimedCard(load_persona(options.persona))
    link = VpcdLink(card, port=VpcdLink.port_for_slot(options.slot))
    runs: dict[str, list[Run]] = {"sscard": [], "opensc": [], "python": []}
    with tempfile.TemporaryDirectory(prefix="sscard-bench-") as workdir:
        config = Path(workdir) / "sscard.toml"
        config.write_text("# defaults only\n", encoding="utf-8")
        # Bytecode cached, as on an installed system (pip compiles it): in a directory of our own,
        # whatever PYTHONDONTWRITEBYTECODE says here.  The first run compiles and is shown apart.
        env = clean_env(SSCARD_CONFIG=str(config), PYTHONPYCACHEPREFIX=str(Path(workdir) / "pycache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        read_command = [*sscard_command(), "read", "--reader", reader, "--json"]
        try:
            try:
                link.insert(timeout=options.timeout)
            except SscardError as exc:
                raise BenchmarkError(f"cannot insert the simulated card into vpcd slot {options.slot}: {exc}") from exc
            wait_until(reader, is_present, "present", options.timeout)
            commands = [command for command, _ in record_read(reader)]
            commands_of: dict[str, list[str]] = {
                "sscard": read_command,
                "python": [sys.executable, "-c", "pass"],
            }
            if opensc is not None:
                apdus = [argument for command in commands for argument in ("-s", command.hex().upper())]
                commands_of["opensc"] = [opensc, "-r", str(opensc_reader_index(reader)), "-c", "default", *apdus]
            cold = timed_run(read_command, card, env, "sscard read (first run)")
            for side, command in commands_of.items():  # warm-up: page cache, pcscd's first client
                timed_run(command, card, env, side)
            for _number, order in alternating(rounds, list(commands_of)):
                for side in order:
                    runs[side].append(timed_run(commands_of[side], card, env, " ".join(commands_of[side][:2])))
            cli_imports = [import_profile(["-c", "import sscard.cli"], env) for _ in range(import_runs)]
            read_imports = [import_profile(read_command, env) for _ in range(import_runs)]
        finally:
            link.remove()
    return _section(options, reader, len(commands), runs, cli_imports, read_imports, opensc is not None, cold)


def _stats(values: Sequence[float | None]) -> Stats:
    return Stats.of([None if value is None else ms(value) for value in values])


def _median_run(profiles: list[tuple[float, list[ImportEntry]]]) -> tuple[float, list[ImportEntry]]:
    ordered = sorted(profiles, key=lambda item: item[0])
    return ordered[len(ordered) // 2]


def _section(
    options: Options,
    reader: str,
    apdus: int,
    runs: dict[str, list[Run]],
    cli_imports: list[tuple[float, list[ImportEntry]]],
    read_imports: list[tuple[float, list[ImportEntry]]],
    have_opensc: bool,
    cold: Run,
) -> Section:
    labels = {"sscard": "sscard read", "opensc": "opensc-tool", "python": "python -c pass"}
    rows = []
    for group, attribute in (("wall", "wall"), ("to 1st APDU", "startup"), ("APDUs", "apdu_phase"), ("exit", "exit")):
        for side in ("sscard", "opensc", "python"):
            if side == "python" and attribute != "wall":
                continue
            if side == "opensc" and not have_opensc:
                continue
            rows.append(Row(group, labels[side], _stats([getattr(run, attribute) for run in runs[side]])))
    sscard_wall = median([run.wall for run in runs["sscard"]])
    opensc_wall = median([run.wall for run in runs["opensc"]]) if have_opensc else float("nan")
    value = ratio(sscard_wall, opensc_wall)
    result = verdict(value, GOAL_RATIO) if have_opensc else "n/a"
    startup = median([run.first for run in runs["sscard"] if run.first is not None])
    cli_total = median([total for total, _ in cli_imports])
    read_total, read_entries = _median_run(read_imports)
    top = sorted((entry for entry in read_entries if entry.level == 0), key=lambda entry: -entry.cumulative_us)[:8]
    watched: dict[str, float] = {}  # a package's own modules' import time (their self times, summed)
    for entry in read_entries:
        root = entry.name.split(".")[0]
        if root in WATCHED:
            watched[root] = watched.get(root, 0.0) + entry.self_us / 1000
    counts = sorted({run.apdus for side in ("sscard", "opensc") for run in runs[side]})
    lines = [
        f"persona {options.persona!r} in {reader}; {len(runs['sscard'])} rounds, alternating; "
        f"{apdus} APDUs a read (APDUs seen per process: {', '.join(map(str, counts))})",
        "",
        format_table(rows),
        "",
        (
            f"ratio sscard read / opensc-tool (medians, measured in this run): {fmt(value, 2)}  {result} "
            f"(goal: ≤ {GOAL_RATIO:.1f})"
            if have_opensc
            else "opensc-tool: not installed (Debian package opensc; ./run.sh setup installs it)"
        ),
        f"sscard's start-up to its first APDU (median): {fmt(ms(startup), 1)} ms; Python bytecode cached, as "
        f"installed (the first run, compiling it: {fmt(ms(cold.wall), 1)} ms)",
        "",
        f"imports (python -X importtime, median of {len(read_imports)}): `import sscard.cli` {fmt(cli_total, 1)} ms; "
        f"a whole `sscard read` {fmt(read_total, 1)} ms",
        format_columns(
            ["heaviest top-level imports of `sscard read`", "ms (cumulative)"],
            [[entry.name, fmt(entry.cumulative_us / 1000, 1)] for entry in top],
        ),
        "watched packages loaded by `sscard read`: "
        + (", ".join(f"{name} {fmt(value, 1)} ms" for name, value in watched.items()) or "none")
        + "; not loaded: "
        + (", ".join(name for name in WATCHED if name not in watched) or "none"),
    ]
    data: dict[str, Any] = {
        "reader": reader,
        "persona": options.persona,
        "apdus_per_read": apdus,
        "opensc": have_opensc,
        "rounds": len(runs["sscard"]),
        "ratio_median": value,
        "goal": {"metric": "ratio sscard read --json / opensc-tool, median wall times", "at_most": GOAL_RATIO},
        "verdict": result,
        "sscard_startup_ms": ms(startup),
        "sscard_first_run_ms": ms(cold.wall),
        "summary": {
            side: {
                attribute: _stats([getattr(run, attribute) for run in runs[side]]).to_json()
                for attribute in ("wall", "startup", "apdu_phase", "exit")
            }
            for side in runs
            if runs[side]
        },
        "imports": {
            "import_sscard_cli_ms": cli_total,
            "sscard_read_ms": read_total,
            "top_level": {entry.name: entry.cumulative_us / 1000 for entry in top},
            "watched_loaded_ms": watched,
        },
        "samples": {
            side: [
                {"wall_ms": ms(r.wall), "apdus": r.apdus, "first_apdu_ms": r.first and ms(r.first)} for r in runs[side]
            ]
            for side in runs
        },
    }
    figures = [
        Figure(
            "`sscard read --json` process / opensc-tool (wall, medians)",
            f"{fmt(value, 2)}x" if have_opensc else "n/a",
            f"≤ {GOAL_RATIO:.1f}x",
            result,
        ),
        Figure("`sscard read` start-up to first APDU (median)", f"{fmt(ms(startup), 1)} ms"),
        Figure("imports of a whole `sscard read` (-X importtime)", f"{fmt(read_total, 1)} ms"),
    ]
    return Section(NAME, TITLE, lines, data, figures)


def main(argv: Sequence[str] | None = None) -> int:
    return section_main(argv, NAME, TITLE, measure, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
