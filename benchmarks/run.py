"""sscard's benchmark suite: one command, one table per section, a summary with the goals.

    .venv/bin/python benchmarks/run.py [--quick] [--json PATH] [--only NAME,...] [--service] [--slot S]

Sections, in order (each is also a script of its own, ``benchmarks/NAME.py``):

========== =================================================================================
apdus      APDUs per operation: sscard vs the card's minimum vs the vendor-typical sequence
overhead   ``Terminal.read()`` vs a raw pyscard ``SCardTransmit`` loop, same APDUs (goal ≤ 1.10)
process    ``sscard read --json`` as a process vs ``opensc-tool`` (goal ≤ 2.5); start-up; imports
parsers    records parsed per second; memory
readers    4 readers read concurrently vs one alone, on a private pcscd (root; goal ≤ 1.3)
events     card in/out to sscard's event vs pcscd's own detection (``events.py``; goal < 10 ms)
service    ``sscard serve`` under load (``service.py``): only with ``--service`` or ``--only``
native     ``iReadCardBas`` via libSSCardDriver.so vs ``Terminal.read()`` vs a process (goal +≤ 3 ms)
flood      ``sscard serve`` under 2,000 stalled connections (``flood.py``): with ``--service``/``--only``
========== =================================================================================

Everything goes through the real pcscd, vpcd and the simulated card, on vpcd slot S (default
``$SSCARD_VPCD_SLOT``, else 1, so a test run on slot 0 can share the pcscd); ``readers`` starts a
pcscd of its own.  ``--quick`` uses the smoke test's small round counts: its figures are not
worth quoting.  Exit status 0 when every section ran (or was skipped, which it says why), 1 when
one could not run.  See benchmarks/README.md and docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import apdus
import flood
import overhead
import parsers
import process
import readers
from common import (
    BenchmarkError,
    Figure,
    Options,
    Section,
    format_columns,
    header_lines,
    machine_info,
    now_iso,
    render_section,
    run_section,
    suite_default_slot,
    write_json,
)


def _run_script(main: Callable[[list[str]], int], argv: list[str], name: str, title: str) -> tuple[Section, Any]:
    """Run another benchmark's ``main`` with ``--json``, keeping what it prints as the section's lines."""
    with tempfile.TemporaryDirectory(prefix="sscard-bench-") as workdir:
        path = Path(workdir) / f"{name}.json"
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([*argv, "--json", str(path)])
        if status != 0 or not path.exists():
            raise BenchmarkError(err.getvalue().strip() or f"benchmarks/{name}.py exited with status {status}")
        data = json.loads(path.read_text(encoding="utf-8"))
    lines = [line for line in out.getvalue().splitlines() if not line.startswith("JSON: ")]
    while lines and not lines[-1].strip():
        lines.pop()
    return Section(name, title, lines, data), data


def _ms(value: float | None, *, unit: bool = True) -> str:
    text = "n/a" if value is None else f"{value:.2f}"
    return f"{text} ms" if unit and value is not None else text


EVENTS_TITLE = "card in/out to sscard's event vs pcscd's own detection"
SERVICE_TITLE = "`sscard serve` under load (WebSocket fan-out, reads, memory)"


def measure_events(options: Options) -> Section:
    import events

    rounds = options.pick(events.DEFAULT_ROUNDS, 3)
    argv = ["--rounds", str(rounds), "--slot", str(options.slot), "--timeout", str(options.timeout)]
    section, data = _run_script(events.main, argv, "events", EVENTS_TITLE)
    summary, verdicts = data["summary"], data["verdict"]
    added = [summary[phase]["sscard_addition_ms"]["median_ms"] for phase in ("insert", "remove")]
    result = "PASS" if all(verdicts[phase] == "PASS" for phase in ("insert", "remove")) else "OVER"
    section.figures = [
        Figure(
            "sscard's addition over a raw PC/SC client, insert / remove (medians)",
            " / ".join(_ms(value, unit=False) for value in added) + " ms",
            f"< {events.GOAL_MS:g} ms",
            result,
        ),
        Figure(
            "pcscd's own detection of an insertion (median)", _ms(summary["insert"]["pcscd_detection_ms"]["median_ms"])
        ),
    ]
    return section


def measure_service(options: Options) -> Section:
    import service

    sizes = ["--subscribers", "10", "--rounds", "1", "--reads", "5"] if options.quick else []
    argv = [*sizes, "--slot", str(options.slot)]
    section, data = _run_script(service.main, argv, "service", SERVICE_TITLE)
    event, read, memory = data["events"], data["read"], data["memory"]
    section.figures = [
        Figure("subscribers that got every event", f"{event['delivered']} of {event['expected']}"),
        Figure("POST /v1/read / Terminal.read() (medians)", f"{read['ratio_median']}x"),
        Figure(
            "`sscard serve` memory idle / loaded",
            f"{memory['idle_rss_kb'] / 1024:.1f} / {memory['loaded_rss_kb'] / 1024:.1f} MiB",
        ),
    ]
    return section


NATIVE_TITLE = "iReadCardBas through libSSCardDriver.so vs in process vs as a process"


def measure_native(options: Options) -> Section:
    import native

    argv = ["--slot", str(options.slot), "--rounds", str(options.pick(200, 20))]
    section, data = _run_script(native.main, argv, "native", NATIVE_TITLE)
    section.figures = [
        Figure(
            "libSSCardDriver.so's addition over an in-process read (medians)",
            _ms(data["added_ms"]),
            f"<= {data['goal_ms']:g} ms",
            "PASS" if data["verdict"] == "met" else "OVER",
        )
    ]
    return section


#: (name, title, measure) in the order they run.
SECTIONS: tuple[tuple[str, str, Callable[[Options], Section]], ...] = (
    (apdus.NAME, apdus.TITLE, apdus.measure),
    (overhead.NAME, overhead.TITLE, overhead.measure),
    (process.NAME, process.TITLE, process.measure),
    (parsers.NAME, parsers.TITLE, parsers.measure),
    (readers.NAME, readers.TITLE, readers.measure),
    ("events", EVENTS_TITLE, measure_events),
    ("native", NATIVE_TITLE, measure_native),
    ("service", SERVICE_TITLE, measure_service),
    (flood.NAME, flood.TITLE, flood.measure),
)
#: Sections that start ``sscard serve``: only with ``--service`` (or ``--only``).
SERVICE_SECTIONS = ("service", flood.NAME)
DEFAULT = tuple(name for name, _title, _measure in SECTIONS if name not in SERVICE_SECTIONS)


def summary_rows(sections: Sequence[Section]) -> list[list[str]]:
    rows = []
    for section in sections:
        if section.status != "ok":
            rows.append([section.name, section.status.upper(), section.reason[:70], "", ""])
            continue
        for figure in section.figures:
            rows.append([section.name, figure.label, figure.value, figure.goal, figure.verdict])
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    names = [name for name, _title, _measure in SECTIONS]
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py", description="sscard's benchmark suite: every section, one table each, a summary."
    )
    parser.add_argument(
        "--quick", action="store_true", help="small round counts (the smoke test's; figures not worth quoting)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every section's figures here")
    parser.add_argument("--only", metavar="NAME,...", help=f"run only these sections, of: {', '.join(names)}")
    parser.add_argument(
        "--service", action="store_true", help="add the service sections (benchmarks/service.py, benchmarks/flood.py)"
    )
    parser.add_argument(
        "--slot", type=int, default=suite_default_slot(), help="vpcd slot (default: $SSCARD_VPCD_SLOT, else 1)"
    )
    parser.add_argument("--persona", default="typical", help="simulated card persona (default %(default)s)")
    args = parser.parse_args(argv)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in names]
        if unknown:
            parser.error(f"unknown section(s) {', '.join(unknown)}; sections: {', '.join(names)}")
        args.sections = [name for name in names if name in wanted]
    else:
        args.sections = [name for name in names if name in DEFAULT or (name in SERVICE_SECTIONS and args.service)]
    if args.slot < 0:
        parser.error("--slot must be 0 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(quick=args.quick, slot=args.slot, persona=args.persona)
    date, machine = now_iso(), machine_info()
    parameters = {"quick": args.quick, "slot": args.slot, "persona": args.persona, "sections": ",".join(args.sections)}
    print("\n".join(header_lines("sscard benchmark suite (benchmarks/run.py)", machine, date, parameters)), flush=True)
    sections = []
    for name, title, measure in SECTIONS:
        if name not in args.sections:
            continue
        section = run_section(name, title, measure, options)
        sections.append(section)
        print("\n" + "\n".join(render_section(section)), flush=True)
    rows = summary_rows(sections)
    print("\n== summary ==")
    print(format_columns(["section", "figure", "value", "goal", "verdict"], rows, left=2))
    if args.json is not None:
        write_json(
            args.json,
            {
                "benchmark": "suite",
                "date": date,
                "machine": machine,
                "parameters": parameters,
                "sections": {section.name: section.to_json() for section in sections},
                "summary": [
                    dict(zip(("section", "figure", "value", "goal", "verdict"), row, strict=True)) for row in rows
                ],
            },
        )
        print(f"\nJSON: {args.json}")
    failed = [section.name for section in sections if section.status == "failed"]
    if failed:
        print(f"benchmarks/run.py: could not run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
