"""Card event latency: how long after a card goes in (or out) sscard's Monitor reports it, next to
pcscd's own detection time and a raw PC/SC client, all in one process and one run.

    .venv/bin/python benchmarks/events.py [--rounds N] [--slot S] [--json PATH]

Each round inserts a simulated card into vpcd slot S (:class:`sscard.sim.VpcdLink`), waits for both
observers, removes it, and waits again.  The observers:

* sscard's :class:`sscard.events.Monitor`, filtered to the reader; the callback records
  ``time.monotonic()``;
* a raw pyscard thread blocked in ``SCardGetStatusChange(INFINITE)`` on the reader
  (:class:`common.RawStatusWaiter`): the floor for any PC/SC client.

Per round, from the link's own timestamps (``inserted_at``, ``powered_at``, ``removed_at``):

* insert: pcscd detection = powered_at - inserted_at (vpcd forwards pcscd's power-on, the first thing
  pcscd does once it has seen the card); raw client = raw wake - inserted_at; sscard event =
  callback - inserted_at; sscard addition = callback - raw wake;
* remove: raw client = raw wake - removed_at (nothing goes to vpcd on removal, so this is pcscd's
  detection as a client sees it); sscard event; sscard addition.

Before every insert and every removal the script pauses a random time below ``--spread`` (default
pcscd's 400 ms poll period), so the card arrives at a random point of pcscd's polling cycle, as a
hand would; otherwise each round would start right after a poll and always wait a full period.

It is a benchmark, not a test: it exits 0 whatever the figures (PASS/OVER only says whether the
median addition meets the goal), and non-zero only when it could not run.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import math
import queue
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import (
    PCSCD_POLL_S,
    STEP_TIMEOUT,
    BenchmarkError,
    RawStatusWaiter,
    Row,
    Stats,
    default_slot,
    format_table,
    header_lines,
    is_empty,
    is_present,
    machine_info,
    ms,
    now_iso,
    reader_state,
    require_reader,
    vpcd_reader_name,
    wait_until,
    write_json,
)

from sscard.errors import SscardError
from sscard.events import Event, EventKind, Monitor
from sscard.sim import Persona, SimulatedCard, VpcdLink, load_persona

NAME = "events"
#: The goal from the issue: what sscard's monitor adds over a raw PC/SC client, per event.
GOAL_MS = 10.0
DEFAULT_ROUNDS = 30

#: (phase, JSON key, table label) in table order.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("insert", "pcscd_detection_ms", "pcscd detection"),
    ("insert", "raw_client_ms", "raw PC/SC client"),
    ("insert", "sscard_event_ms", "sscard event"),
    ("insert", "sscard_addition_ms", "sscard addition"),
    ("remove", "raw_client_ms", "raw PC/SC client (pcscd detection)"),
    ("remove", "sscard_event_ms", "sscard event"),
    ("remove", "sscard_addition_ms", "sscard addition"),
)


@dataclass(frozen=True)
class InsertSample:
    round: int
    pcscd_detection_ms: float | None  # None if vpcd never reported pcscd's power-on
    raw_client_ms: float
    sscard_event_ms: float
    sscard_addition_ms: float


@dataclass(frozen=True)
class RemoveSample:
    round: int
    raw_client_ms: float
    sscard_event_ms: float
    sscard_addition_ms: float


class MonitorRecorder:
    """sscard's Monitor on one reader, with the monotonic time at which each event reached the callback."""

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self.monitor = Monitor(reader)
        self._events: queue.SimpleQueue[tuple[float, Event]] = queue.SimpleQueue()

    def _on_event(self, event: Event) -> None:
        received = time.monotonic()  # first thing in the callback: this is when the application hears of it
        self._events.put((received, event))

    def start(self, timeout: float = STEP_TIMEOUT) -> None:
        """Start the monitor and wait for its initial report of the reader (so it is watching)."""
        self.monitor.start(self._on_event)
        self.wait_for(EventKind.READER_ATTACHED, after=0.0, timeout=timeout)

    def wait_for(self, kind: EventKind, *, after: float, timeout: float = STEP_TIMEOUT) -> float:
        """The callback time of the first ``kind`` event for our reader received at or after ``after``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                received, event = self._events.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise BenchmarkError(
                    f"sscard's Monitor reported no {kind} on {self.reader!r} within {timeout:g} s"
                ) from None
            if event.kind is EventKind.SERVICE_LOST:
                raise BenchmarkError(f"sscard's Monitor lost pcscd: {event.detail}")
            if event.kind is kind and event.reader == self.reader and received >= after:
                return received

    def stop(self) -> None:
        self.monitor.stop()
        self.monitor.join(timeout=5.0)


def run_round(
    number: int,
    slot: int,
    persona: Persona,
    raw: RawStatusWaiter,
    ours: MonitorRecorder,
    rng: random.Random,
    spread: float,
    timeout: float,
) -> tuple[InsertSample, RemoveSample]:
    """One insert and one removal, each timed by both observers."""
    link = VpcdLink(SimulatedCard(persona), port=VpcdLink.port_for_slot(slot))
    try:
        time.sleep(rng.uniform(0.0, spread))
        started = time.monotonic()
        try:
            link.insert(timeout=timeout)
        except SscardError as exc:
            raise BenchmarkError(f"cannot insert the simulated card into vpcd slot {slot}: {exc}") from exc
        raw_in = raw.wait_for(is_present, after=started, timeout=timeout).time
        ours_in = ours.wait_for(EventKind.CARD_INSERTED, after=started, timeout=timeout)
        inserted_at, powered_at = link.inserted_at, link.powered_at
        assert inserted_at is not None
        detection = ms(powered_at - inserted_at) if powered_at is not None and powered_at >= inserted_at else None
        insert = InsertSample(
            number, detection, ms(raw_in - inserted_at), ms(ours_in - inserted_at), ms(ours_in - raw_in)
        )

        time.sleep(rng.uniform(0.0, spread))
        started = time.monotonic()
        link.remove()
        removed_at = link.removed_at
        assert removed_at is not None
        raw_out = raw.wait_for(is_empty, after=started, timeout=timeout).time
        ours_out = ours.wait_for(EventKind.CARD_REMOVED, after=started, timeout=timeout)
        remove = RemoveSample(number, ms(raw_out - removed_at), ms(ours_out - removed_at), ms(ours_out - raw_out))
    finally:
        link.remove()
    return insert, remove


@dataclass(frozen=True)
class Result:
    """Everything one run measured, and where: printed by :func:`render`, saved by :func:`to_json`."""

    date: str
    machine: dict[str, Any]
    parameters: dict[str, Any]
    inserts: list[InsertSample]
    removes: list[RemoveSample]

    def stats(self) -> dict[str, dict[str, Stats]]:
        samples: dict[str, list[Any]] = {"insert": self.inserts, "remove": self.removes}
        out: dict[str, dict[str, Stats]] = {"insert": {}, "remove": {}}
        for phase, key, _ in METRICS:
            out[phase][key] = Stats.of([getattr(sample, key) for sample in samples[phase]])
        return out

    def verdicts(self) -> dict[str, str]:
        """PASS when the median addition is under the goal, OVER otherwise (n/a when nothing was measured)."""
        out = {}
        for phase, by_key in self.stats().items():
            median = by_key["sscard_addition_ms"].median
            out[phase] = "n/a" if math.isnan(median) else ("PASS" if median < GOAL_MS else "OVER")
        return out

    def render(self) -> str:
        stats, verdicts = self.stats(), self.verdicts()
        rows = []
        for phase, key, label in METRICS:
            note = f"{verdicts[phase]} (goal: median < {GOAL_MS:g} ms)" if key == "sscard_addition_ms" else ""
            rows.append(Row(phase, label, stats[phase][key], note))
        title = "sscard event latency (benchmarks/events.py): time from card in/out to each observer"
        lines = [*header_lines(title, self.machine, self.date, self.parameters), "", format_table(rows), ""]
        lines.append("pcscd polls vpcd for card presence every ~400 ms, so its detection dominates the totals;")
        lines.append("sscard's own cost is the addition: its event's time minus the raw PC/SC client's wake.")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        stats = self.stats()
        return {
            "benchmark": NAME,
            "date": self.date,
            "machine": self.machine,
            "parameters": self.parameters,
            "goal": {"metric": "sscard_addition_ms", "statistic": "median", "below_ms": GOAL_MS},
            "verdict": self.verdicts(),
            "summary": {
                phase: {key: value.to_json() for key, value in by_key.items()} for phase, by_key in stats.items()
            },
            "samples": {
                "insert": [asdict(sample) for sample in self.inserts],
                "remove": [asdict(sample) for sample in self.removes],
            },
        }


def measure(rounds: int, slot: int, *, spread: float, timeout: float, seed: int | None) -> Result:
    """Run the benchmark; :class:`BenchmarkError` when it cannot (no pcscd, no reader, a wait timed out)."""
    reader = vpcd_reader_name(slot)
    require_reader(reader)
    if is_present(reader_state(reader)):
        print(f"{reader} holds a card (another program's?); waiting for it to go ...", file=sys.stderr)
        wait_until(reader, is_empty, "empty", timeout)
    persona = load_persona("typical")
    rng = random.Random(seed)
    parameters: dict[str, Any] = {"rounds": rounds, "reader": reader, "spread_s": spread, "timeout_s": timeout}
    if seed is not None:
        parameters["seed"] = seed
    date, machine = now_iso(), machine_info()

    raw = RawStatusWaiter(reader)
    ours = MonitorRecorder(reader)
    inserts: list[InsertSample] = []
    removes: list[RemoveSample] = []
    try:
        raw.start()
        ours.start(timeout)
        for number in range(1, rounds + 1):
            insert, remove = run_round(number, slot, persona, raw, ours, rng, spread, timeout)
            inserts.append(insert)
            removes.append(remove)
    finally:
        ours.stop()
        raw.stop()
    return Result(date, machine, parameters, inserts, removes)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/events.py",
        description="Card insert/remove event latency: sscard's Monitor next to pcscd's detection and a raw "
        "PC/SC client.",
    )
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="insert/remove cycles (default %(default)s)")
    parser.add_argument(
        "--slot",
        type=int,
        default=default_slot(),
        help="vpcd slot to use (default: $SSCARD_VPCD_SLOT, else 0 -> 'Virtual PCD 00 00')",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every sample and the summary here")
    parser.add_argument(
        "--spread",
        type=float,
        default=PCSCD_POLL_S,
        metavar="SECONDS",
        help="random pause below this before each insert/removal, to sample pcscd's poll phase (default %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=STEP_TIMEOUT, metavar="SECONDS", help="give up on any one wait after this"
    )
    parser.add_argument("--seed", type=int, help="seed for the random pauses (default: unseeded)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.slot < 0:
        parser.error("--slot must be 0 or more")
    if args.spread < 0 or args.timeout <= 0:
        parser.error("--spread must be >= 0 and --timeout > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = measure(args.rounds, args.slot, spread=args.spread, timeout=args.timeout, seed=args.seed)
    except BenchmarkError as exc:
        print(f"benchmarks/events.py: cannot run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmarks/events.py: interrupted", file=sys.stderr)
        return 130
    print(result.render())
    if args.json is not None:
        write_json(args.json, result.to_json())
        print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
