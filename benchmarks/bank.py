"""The bank application: BER-TLV parsing speed, import cost, and a whole EMV read.

    .venv/bin/python benchmarks/bank.py [--rounds N] [--pcscd]

No card needed: the records and answers are those of the simulated ``v3_bank`` persona.  Prints

* ``sscard.bank.tlv.parse`` on every record, FCI and GPO answer of the persona (µs per object);
* the import cost of ``sscard.bank`` in a fresh interpreter, over that of ``sscard.apdu`` it
  builds on (the figure behind choosing a hand-written parser, docs/card-reference.md §11.6);
* ``BankApplication.read()`` over the in-process simulated card (ms per read, APDUs per read);
* with ``--pcscd``, the same read through pcscd + vpcd (run it under the pcscd lock).

A benchmark: exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from sscard.apdu import standard_stack
from sscard.bank import BankApplication
from sscard.bank.tlv import parse
from sscard.sim import SimulatedCard, load_persona
from sscard.transports.sim import SimReader


def _best_of(run: Callable[[], object], rounds: int, inner: int) -> float:
    """Best per-call time in seconds over ``rounds`` rounds of ``inner`` calls each."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(inner):
            run()
        best = min(best, (time.perf_counter() - started) / inner)
    return best


def _import_ms(module: str, repeat: int = 7) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    samples = [float(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(repeat)]
    return statistics.median(samples) * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pcscd", action="store_true", help="also read through pcscd + vpcd (hold the lock)")
    args = parser.parse_args(argv)
    persona = load_persona("v3_bank")
    card = SimulatedCard(persona)
    assert card.emv is not None
    blobs = [*card.emv.records.values(), card.emv.fci(), card.emv.ppse_fci()]
    per_object = _best_of(lambda: [parse(b, "record") for b in blobs], args.rounds, 2000) / len(blobs)
    print(f"tlv.parse: {per_object * 1e6:.1f} µs per object ({len(blobs)} objects, {sum(map(len, blobs))} bytes)")
    base, bank = _import_ms("sscard.apdu"), _import_ms("sscard.bank")
    print(f"import sscard.bank: {bank:.1f} ms in a fresh interpreter ({bank - base:+.1f} ms over sscard.apdu)")

    def sim_read() -> int:
        target = SimulatedCard(persona)
        BankApplication(standard_stack(SimReader(target, "sim:v3_bank").connect())).read()
        return target.apdu_count

    apdus = sim_read()
    per_read = _best_of(sim_read, args.rounds, 200)
    print(f"read over the in-process simulator: {per_read * 1000:.3f} ms per read, {apdus} APDUs")
    if args.pcscd:
        from sscard.sim import VpcdLink
        from sscard.transports.pcsc import PcscReader

        link = VpcdLink(SimulatedCard(persona))
        link.insert()
        try:
            reader = PcscReader("Virtual PCD 00 00")
            reader.wait_for_card(10)
            times = []
            for _ in range(args.rounds * 4):
                started = time.perf_counter()
                transport = reader.connect()
                with transport.transaction():
                    BankApplication(standard_stack(transport)).read()
                transport.close()
                times.append(time.perf_counter() - started)
            print(f"read through pcscd + vpcd: median {statistics.median(times) * 1000:.1f} ms (connect included)")
        finally:
            link.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
