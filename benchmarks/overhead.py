"""Stack overhead: the same APDU sequence through sscard's facade and through a bare pyscard loop.

    .venv/bin/python benchmarks/overhead.py [--quick] [--slot S] [--json PATH]

A simulated card is served from a process of its own (:class:`common.CardServer`) in vpcd slot S.
One ``Terminal.read()`` is recorded byte for byte (:func:`common.record_read`); then, alternating
which goes first, each round times

* **raw**: that byte sequence replayed with ``smartcard.scard.SCardTransmit`` in a loop inside one
  ``SCardBeginTransaction``/``SCardEndTransaction`` on a connection opened once: the floor for any
  PC/SC client, doing nothing with the answers;
* **sscard**: ``Terminal.read()`` on a terminal opened once (its connection kept, as a kiosk
  keeps it): the same APDUs plus everything sscard does with them (processors, parsing, checks).

Both run on the same reader and card, each on its own PC/SC connection.  Printed: medians, the
ratio sscard / raw against the goal (≤ 1.10), the client's CPU time per read on each side, and a
cProfile of the facade's reads grouped by where the time goes.  A benchmark: exits 0 whatever the
ratio.  See benchmarks/README.md and docs/performance.md.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from common import (
    BenchmarkError,
    CardServer,
    Figure,
    Options,
    RawPcsc,
    Row,
    Section,
    Stats,
    alternating,
    ensure_empty,
    fmt,
    format_columns,
    format_table,
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

from sscard.config import Config
from sscard.sim import VpcdLink
from sscard.terminal import Terminal
from sscard.transports.pcsc import PcscReader

NAME = "overhead"
TITLE = "stack overhead: Terminal.read() vs a raw pyscard SCardTransmit loop, same APDUs"
GOAL_RATIO = 1.10


class RawLoop(RawPcsc):
    """The recorded commands sent with bare ``SCardTransmit`` calls, one transaction per round."""

    def __init__(self, reader: str, commands: Sequence[bytes]) -> None:
        super().__init__(reader)
        self.commands = [list(command) for command in commands]  # pyscard's form, made once
        #: Seconds of busy waiting after each answer in :meth:`with_gap`.
        self.gap = 0.0

    def answers(self) -> list[bytes]:
        """One round that keeps the answers (to check they are the recorded ones)."""
        scard = self.scard
        scard.SCardBeginTransaction(self.handle)
        try:
            return [bytes(scard.SCardTransmit(self.handle, self.pci, command)[1]) for command in self.commands]
        finally:
            scard.SCardEndTransaction(self.handle, scard.SCARD_LEAVE_CARD)

    def __call__(self) -> None:
        scard, handle, pci = self.scard, self.handle, self.pci
        transmit, success = scard.SCardTransmit, scard.SCARD_S_SUCCESS
        scard.SCardBeginTransaction(handle)
        for command in self.commands:
            if transmit(handle, pci, command)[0] != success:
                raise BenchmarkError("SCardTransmit failed in the raw loop (card gone?)")
        scard.SCardEndTransaction(handle, scard.SCARD_LEAVE_CARD)

    def with_gap(self) -> None:
        """One round that stays busy for :attr:`gap` seconds after every answer (the control)."""
        scard, handle, pci, gap = self.scard, self.handle, self.pci, self.gap
        transmit, success, clock = scard.SCardTransmit, scard.SCARD_S_SUCCESS, time.perf_counter
        scard.SCardBeginTransaction(handle)
        for command in self.commands:
            if transmit(handle, pci, command)[0] != success:
                raise BenchmarkError("SCardTransmit failed in the raw loop (card gone?)")
            until = clock() + gap
            while clock() < until:
                pass
        scard.SCardEndTransaction(handle, scard.SCARD_LEAVE_CARD)


def _cpu_per_read(read: Callable[[], object], reads: int = 20) -> float:
    """Median thread CPU seconds of ``reads`` calls."""
    samples = []
    for _ in range(reads):
        started = time.thread_time()
        read()
        samples.append(time.thread_time() - started)
    return median(samples)


def _where(filename: str, function: str) -> str:
    """A profile entry's group: a module of sscard, construct, PC/SC calls, or the rest."""
    if "SCard" in function and filename == "~":
        return "PC/SC calls (pcscd + vpcd + card)"
    if "/sscard/" in filename:
        module = filename.split("/sscard/", 1)[1].removesuffix(".py").replace("/", ".")
        return f"sscard.{module}"
    if "/construct/" in filename:
        return "construct"
    return "Python (builtins, stdlib)"


def profile_reads(terminal: Terminal, reads: int) -> list[tuple[str, float]]:
    """(group, seconds per read) of cProfile's own time per function, biggest first."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(reads):
        terminal.read()
    profiler.disable()
    groups: dict[str, float] = defaultdict(float)
    raw_stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in raw_stats.items():
        groups[_where(filename, function)] += tottime
    return sorted(((group, seconds / reads) for group, seconds in groups.items()), key=lambda item: -item[1])


def measure(options: Options) -> Section:
    reader = vpcd_reader_name(options.slot)
    require_reader(reader)
    ensure_empty(reader, options.timeout)
    rounds, warmup, profiled = options.pick(300, 20), options.pick(10, 2), options.pick(200, 10)
    with CardServer(options.persona, [VpcdLink.port_for_slot(options.slot)], options.timeout):
        wait_until(reader, is_present, "present", options.timeout)
        exchanges = record_read(reader)
        commands = [command for command, _answer in exchanges]
        raw = RawLoop(reader, commands)
        try:
            if raw.answers() != [answer for _command, answer in exchanges]:
                raise BenchmarkError("the raw loop's answers differ from the recorded read's")
            with Terminal(PcscReader(reader), config=Config()) as terminal:
                for _ in range(warmup):
                    raw()
                    terminal.read()
                # The control: the raw loop again, busy for sscard's extra CPU time after each
                # APDU (from the warm-up), to tell sscard's own work from what a gap between APDUs
                # costs the rest of the pipeline (pcscd's thread and the card fall asleep).
                gap = max(0.0, (_cpu_per_read(terminal.read) - _cpu_per_read(raw)) / len(commands))
                raw.gap = gap
                sides: dict[str, Callable[[], object]] = {"raw": raw, "sscard": terminal.read, "control": raw.with_gap}
                wall: dict[str, list[float]] = {side: [] for side in sides}
                cpu: dict[str, list[float]] = {side: [] for side in sides}
                for _number, order in alternating(rounds, list(sides)):
                    for side in order:
                        started_cpu, started = time.thread_time(), time.perf_counter()
                        sides[side]()
                        wall[side].append(time.perf_counter() - started)
                        cpu[side].append(time.thread_time() - started_cpu)
                profile = profile_reads(terminal, profiled)
        finally:
            raw.close()
    return _section(options, reader, commands, wall, cpu, profile, profiled, gap)


def _section(
    options: Options,
    reader: str,
    commands: list[bytes],
    wall: dict[str, list[float]],
    cpu: dict[str, list[float]],
    profile: list[tuple[str, float]],
    profiled: int,
    gap: float,
) -> Section:
    n = len(commands)
    raw_ms = [ms(value) for value in wall["raw"]]
    ours_ms = [ms(value) for value in wall["sscard"]]
    control_ms = [ms(value) for value in wall["control"]]
    value = ratio(median(ours_ms), median(raw_ms))
    added = median(ours_ms) - median(raw_ms)
    result = verdict(value, GOAL_RATIO)
    control_label = f"control: raw loop + {fmt(1e6 * gap, 0)} µs busy after each APDU"
    rows = [
        Row("wall", f"raw pyscard loop ({n} × SCardTransmit)", Stats.of(raw_ms)),
        Row("", "sscard Terminal.read()", Stats.of(ours_ms)),
        Row("", control_label, Stats.of(control_ms)),
        Row("client CPU", "raw pyscard loop", Stats.of([ms(v) for v in cpu["raw"]])),
        Row("", "sscard Terminal.read()", Stats.of([ms(v) for v in cpu["sscard"]])),
        Row("", "control", Stats.of([ms(v) for v in cpu["control"]])),
    ]
    total = sum(seconds for _group, seconds in profile)
    profile_rows = [[group, fmt(ms(seconds), 3), f"{100 * seconds / total:.0f} %"] for group, seconds in profile[:8]]
    lines = [
        f"persona {options.persona!r} in {reader} (card served by its own process); {len(raw_ms)} rounds, "
        f"alternating; {n} APDUs a read",
        "",
        format_table(rows),
        "",
        f"ratio sscard / raw (medians): {fmt(value)}  {result} (goal: ≤ {GOAL_RATIO:.2f}); "
        f"sscard adds {fmt(added)} ms a read, {fmt(1000 * added / n, 0)} µs an APDU",
        f"control / raw: {fmt(ratio(median(control_ms), median(raw_ms)))}, sscard / control: "
        f"{fmt(ratio(median(ours_ms), median(control_ms)))} (the control is the raw loop kept as busy between",
        "APDUs as sscard's extra CPU time: what any client doing that much work per APDU would take)",
        "",
        f"where a read's time goes in sscard (cProfile of {profiled} reads, own time per function, grouped; "
        "the profiler slows Python code, not the PC/SC calls):",
        format_columns(["", "ms/read", "share"], profile_rows),
    ]
    data = {
        "reader": reader,
        "persona": options.persona,
        "apdus_per_read": n,
        "commands": [command.hex().upper() for command in commands],
        "rounds": len(raw_ms),
        "goal": {"metric": "ratio sscard/raw of median wall times", "at_most": GOAL_RATIO},
        "ratio_median": value,
        "verdict": result,
        "added_ms_per_read": added,
        "summary": {
            "raw_ms": Stats.of(raw_ms).to_json(),
            "sscard_ms": Stats.of(ours_ms).to_json(),
            "raw_cpu_ms": Stats.of([ms(v) for v in cpu["raw"]]).to_json(),
            "sscard_cpu_ms": Stats.of([ms(v) for v in cpu["sscard"]]).to_json(),
            "control_ms": Stats.of(control_ms).to_json(),
            "control_cpu_ms": Stats.of([ms(v) for v in cpu["control"]]).to_json(),
        },
        "control_gap_us": 1e6 * gap,
        "control_ratio_median": ratio(median(control_ms), median(raw_ms)),
        "profile_ms_per_read": {group: ms(seconds) for group, seconds in profile},
        "samples": {"raw_ms": raw_ms, "sscard_ms": ours_ms, "control_ms": control_ms},
    }
    figures = [
        Figure(
            "Terminal.read() / raw pyscard loop, same APDUs (medians)", f"{fmt(value)}x", f"≤ {GOAL_RATIO:.2f}x", result
        )
    ]
    return Section(NAME, TITLE, lines, data, figures)


def main(argv: Sequence[str] | None = None) -> int:
    return section_main(argv, NAME, TITLE, measure, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
