"""Simulated cards in a process of their own, for the benchmarks (:class:`common.CardServer`).

    .venv/bin/python benchmarks/cardserver.py --persona typical --port 35964 [--port 35970 ...]

Puts one :class:`sscard.sim.SimulatedCard` per ``--port`` into vpcd (the socket of one vpcd slot),
prints ``ready`` once all are in, and serves them until its standard input closes (or says
``quit``); then it takes them out and exits.  A card that could not go in (no vpcd listening
there) is an error on standard error and exit status 1, before ``ready``.

A real card computes on its own chip: serving the simulated card from here keeps its work off the
measured process's CPU time and GIL.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sscard.errors import SscardError
from sscard.sim import SimulatedCard, VpcdLink, load_persona


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/cardserver.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--persona", default="typical", help="simulated card persona (default %(default)s)")
    parser.add_argument("--port", type=int, action="append", required=True, help="vpcd port; repeat for more cards")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for vpcd to accept a card")
    args = parser.parse_args(argv)
    persona = load_persona(args.persona)
    links = [VpcdLink(SimulatedCard(persona), port=port) for port in args.port]
    try:
        for link in links:
            link.insert(timeout=args.timeout)
    except SscardError as exc:
        print(f"benchmarks/cardserver.py: {exc}", file=sys.stderr)
        for link in links:
            link.remove()
        return 1
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "quit":
                break
    except KeyboardInterrupt:
        pass
    finally:
        for link in links:
            link.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
