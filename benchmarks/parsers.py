"""Parsers: data-element records parsed per second, and the memory parsing takes.

    .venv/bin/python benchmarks/parsers.py [--quick] [--json PATH]

No card and no pcscd: the records are those the simulated cards hold (every SSC persona's EF05 and
EF06 records, :func:`sscard.sim.encoding.record_files`), split into well-formed ones and the
deliberately broken ones some personas carry.  Alternating, each sample times

* ``sscard.ssc.records.parse_element`` on every well-formed record (what a read does);
* the element's construct format alone (``spec.fmt.parse``): the full construct path, which
  ``parse_element`` takes only for records that are not plain well-formed TLVs;
* ``parse_element`` on the broken records (each a ``BadRecord``: the error path);
* whole cards: every element parsed, the two dataclasses built and the checks run (``validate``).

Before timing, every well-formed record is parsed both ways and the values compared: the suite
reports any difference.  Memory: ``tracemalloc``'s peak while parsing records one after another,
and with whole cards kept; and the peak resident size (VmHWM) of a fresh process that imports the
parser and parses 100,000 records.  A benchmark: exits 0 whatever the figures.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from common import (
    BENCH_DIR,
    BenchmarkError,
    Figure,
    Options,
    Row,
    Section,
    Stats,
    alternating,
    format_table,
    median,
    section_main,
)

from sscard.errors import BadRecord
from sscard.sim import list_personas, load_persona
from sscard.sim.encoding import record_files
from sscard.ssc.records import ELEMENTS, cardholder_from_elements, issuer_from_elements, parse_element, validate

NAME = "parsers"
TITLE = "record parsers: records parsed per second, peak memory"
TODAY = dt.date(2026, 1, 1)

#: Run in a fresh interpreter: VmHWM after importing the parser and after parsing 100,000 records.
MEMORY_PROBE = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from common import process_memory
start = process_memory(os.getpid())
from sscard.ssc.records import parse_element
imported = process_memory(os.getpid())
from sscard.sim import list_personas, load_persona
from sscard.sim.encoding import record_files
records = []
for name in list_personas():
    persona = load_persona(name)
    if persona.ssc:
        records += [r for rs in record_files(persona).values() for r in rs]
good = []
for record in records:
    try:
        parse_element(record[0], record)
        good.append(record)
    except Exception:
        pass
done = 0
while done < int(sys.argv[2]):
    for record in good:
        parse_element(record[0], record)
    done += len(good)
print(json.dumps({"start": start, "imported": imported, "parsed": process_memory(os.getpid()), "records": done}))
"""


def persona_records() -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]], list[list[tuple[int, bytes]]]]:
    """(well-formed records, broken records, the well-formed cards as lists of records).

    The broken ones are those personas carry on purpose, plus every well-formed record cut short
    by one byte (its length byte then promises more than there is).
    """
    good: list[tuple[int, bytes]] = []
    bad: list[tuple[int, bytes]] = []
    cards: list[list[tuple[int, bytes]]] = []
    for name in list_personas():
        persona = load_persona(name)
        if not persona.ssc:
            continue
        card: list[tuple[int, bytes]] = []
        whole = True
        for records in record_files(persona).values():
            for record in records:
                if not record or record[0] not in ELEMENTS:
                    continue
                try:
                    parse_element(record[0], record)
                except BadRecord:
                    bad.append((record[0], record))
                    whole = False
                    continue
                good.append((record[0], record))
                card.append((record[0], record))
        if whole:
            cards.append(card)
    bad += [(tag, data[:-1]) for tag, data in good]
    return good, bad, cards


def differences(records: Sequence[tuple[int, bytes]]) -> list[str]:
    """Records whose value from ``parse_element`` differs from the construct format's."""
    out = []
    for tag, data in records:
        if parse_element(tag, data) != ELEMENTS[tag].fmt.parse(data).value:
            out.append(f"{tag:02X}:{data.hex().upper()}")
    return out


def _parse_all(records: Sequence[tuple[int, bytes]]) -> None:
    for tag, data in records:
        parse_element(tag, data)


def _construct_all(records: Sequence[tuple[int, bytes]]) -> None:
    for tag, data in records:
        ELEMENTS[tag].fmt.parse(data)


def _broken_all(records: Sequence[tuple[int, bytes]]) -> None:
    for tag, data in records:
        with contextlib.suppress(BadRecord):
            parse_element(tag, data)


def parse_card(records: Sequence[tuple[int, bytes]]) -> Any:
    values = {tag: parse_element(tag, data) for tag, data in records}
    issuer, holder = issuer_from_elements(values), cardholder_from_elements(values)
    return issuer, holder, validate(issuer, holder, TODAY)


def _cards_all(cards: Sequence[Sequence[tuple[int, bytes]]]) -> None:
    for card in cards:
        parse_card(card)


def repeated(action: Callable[[Any], None], argument: Any, times: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(times):
            action(argument)

    return run


def traced_peak(action: Callable[[], object]) -> tuple[int, int]:
    """(peak, still allocated) bytes that ``action`` allocated, by tracemalloc."""
    tracemalloc.start()
    try:
        kept = action()
        current, peak = tracemalloc.get_traced_memory()
        del kept
    finally:
        tracemalloc.stop()
    return peak, current


def measure(options: Options) -> Section:
    good, bad, cards = persona_records()
    if not good or not cards:
        raise BenchmarkError("no well-formed records in the personas")
    diffs = differences(good)
    samples, target = options.pick(30, 5), options.pick(4000, 400)  # records per timed sample
    repeat = max(1, target // len(good))
    broken_repeat = max(1, target // (10 * len(bad)))
    sides: dict[str, tuple[Callable[[], None], int]] = {
        "sscard": (repeated(_parse_all, good, repeat), repeat * len(good)),
        "construct": (repeated(_construct_all, good, repeat), repeat * len(good)),
        "broken": (repeated(_broken_all, bad, broken_repeat), broken_repeat * len(bad)),
        "cards": (repeated(_cards_all, cards, repeat), repeat * len(cards)),
    }
    per_item: dict[str, list[float]] = {side: [] for side in sides}
    for action, _count in sides.values():  # warm-up
        action()
    for _number, order in alternating(samples, list(sides)):
        for side in order:
            action, count = sides[side]
            started = time.perf_counter()
            action()
            per_item[side].append((time.perf_counter() - started) / count * 1e6)
    streamed = options.pick(100_000, 10_000)
    stream_peak, _ = traced_peak(repeated(_parse_all, good, max(1, streamed // len(good))))
    kept_cards = options.pick(10_000, 1_000)
    kept_peak, kept_current = traced_peak(lambda: [parse_card(cards[i % len(cards)]) for i in range(kept_cards)])
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(BENCH_DIR), str(streamed)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        raise BenchmarkError(f"the memory probe failed: {probe.stderr.strip()[-400:]}")
    process = json.loads(probe.stdout)
    return _section(
        good, bad, cards, diffs, per_item, streamed, stream_peak, kept_cards, kept_peak, kept_current, process
    )


def _mib(kb: int) -> str:
    return f"{kb / 1024:.1f} MiB"


def _section(
    good: list[tuple[int, bytes]],
    bad: list[tuple[int, bytes]],
    cards: list[list[tuple[int, bytes]]],
    diffs: list[str],
    per_item: dict[str, list[float]],
    streamed: int,
    stream_peak: int,
    kept_cards: int,
    kept_peak: int,
    kept_current: int,
    process: dict[str, Any],
) -> Section:
    labels = {
        "sscard": "parse_element (what a read does)",
        "construct": "construct format alone (the full path)",
        "broken": "broken records: BadRecord (error path)",
        "cards": "whole card: 14 elements + dataclasses + checks",
    }
    rows = [
        Row("per record" if side != "cards" else "per card", labels[side], Stats.of(values))
        for side, values in per_item.items()
    ]
    rate = 1e6 / median(per_item["sscard"])
    construct_rate = 1e6 / median(per_item["construct"])
    card_rate = 1e6 / median(per_item["cards"])
    lines = [
        f"{len(good)} well-formed and {len(bad)} broken records from the simulated cards' personas; "
        f"{len(cards)} whole cards; {len(per_item['sscard'])} samples, alternating",
        "",
        format_table(rows, unit="µs"),
        "",
        f"records parsed per second: {rate:,.0f} (parse_element); {construct_rate:,.0f} (construct alone); "
        f"whole cards per second: {card_rate:,.0f}",
        "parse_element = construct format on every well-formed record: "
        + ("yes" if not diffs else f"NO, {len(diffs)} differ: {', '.join(diffs[:5])}"),
        f"memory (tracemalloc): peak {stream_peak / 1024:.1f} KiB while parsing {streamed:,} records one after "
        f"another; {kept_cards:,} parsed cards kept: {kept_current / 1024 / 1024:.2f} MiB "
        f"({kept_current / kept_cards:,.0f} bytes a card), peak {kept_peak / 1024 / 1024:.2f} MiB",
        f"process (fresh interpreter, VmHWM): {_mib(process['start']['hwm_kb'])} at start, "
        f"{_mib(process['imported']['hwm_kb'])} with the parser imported, "
        f"{_mib(process['parsed']['hwm_kb'])} after loading the personas and parsing {process['records']:,} records",
    ]
    data = {
        "records": {"well_formed": len(good), "broken": len(bad), "cards": len(cards)},
        "differences": diffs,
        "summary_us": {side: Stats.of(values).to_json() for side, values in per_item.items()},
        "records_per_second": rate,
        "construct_records_per_second": construct_rate,
        "cards_per_second": card_rate,
        "tracemalloc": {
            "stream_records": streamed,
            "stream_peak_bytes": stream_peak,
            "kept_cards": kept_cards,
            "kept_current_bytes": kept_current,
            "kept_peak_bytes": kept_peak,
        },
        "process_kb": process,
        "samples_us": per_item,
    }
    figures = [
        Figure("records parsed per second (parse_element)", f"{rate:,.0f}/s"),
        Figure(
            "parser memory: peak while streaming / VmHWM of a parsing process",
            f"{stream_peak / 1024:.1f} KiB / {_mib(process['parsed']['hwm_kb'])}",
        ),
    ]
    if diffs:
        figures.append(Figure("fast path = construct path", f"{len(diffs)} differences", "0", "OVER"))
    return Section(NAME, TITLE, lines, data, figures)


def main(argv: Sequence[str] | None = None) -> int:
    return section_main(argv, NAME, TITLE, measure, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
