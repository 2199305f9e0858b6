"""APDUs per operation: what sscard sends for a read, a read with photo, a PIN check and a sign-in,
next to the fewest the card's access rules allow and to the sequence vendor software typically sends.

    .venv/bin/python benchmarks/apdus.py [--slot S] [--persona typical] [--json PATH]

A simulated card goes into vpcd slot S (in this process: only counts are taken here, no times) and
every figure is counted **at the card** (:attr:`sscard.sim.SimulatedCard.command_log`), through
pcscd:

* **sscard**: each operation on a fresh :class:`sscard.terminal.Terminal`, as one ``sscard``
  command would run it (``read``; ``read --photo``; ``verify``; ``sign-in``, then sign-out).
* **minimum**: one SELECT SSSE, then one READ RECORD per element with SFI addressing (docs/card-reference.md §2:
  no SELECT EF); the photo by READ BINARY with SFI addressing (P1 = 80|SFI) and then by offset;
  a PIN check is the VERIFY itself.  Sent raw with pyscard, in one transaction.
* **vendor-typical**: SELECT SSSE, then for each file a SELECT EF by FID and one READ RECORD per
  element in the current EF (what vendor DLLs do, and what sscard falls back to on a card that
  refuses SFI addressing); SELECT EF08 before the photo.  Sent raw as well.

The raw sequences must be accepted by the card (9000, or 6A83 for an element the card does not
have, 6B00 past the end of the photo), else the section fails: a count of refused commands would
mean nothing.  It is a benchmark: it exits 0 whatever the counts.  See benchmarks/README.md.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial

from common import (
    BenchmarkError,
    Figure,
    Options,
    RawPcsc,
    Section,
    ensure_empty,
    format_columns,
    is_present,
    require_reader,
    section_main,
    vpcd_reader_name,
    wait_until,
)

from sscard.config import Config
from sscard.errors import SscardError
from sscard.sim import SimulatedCard, VpcdLink, load_persona
from sscard.ssc.application import EF_FID, SSSE_AID, encode_pin
from sscard.ssc.records import EF05_TAGS, EF06_TAGS, ELEMENTS
from sscard.terminal import Terminal
from sscard.transports.pcsc import PcscReader

NAME = "apdus"
TITLE = "APDUs per operation (sscard vs the card's minimum vs vendor-typical)"
INS_NAMES = {
    0xA4: "SELECT",
    0xB2: "READ RECORD",
    0xB0: "READ BINARY",
    0x20: "VERIFY",
    0xC0: "GET RESPONSE",
    0x84: "GET CHALLENGE",
    0x82: "EXTERNAL AUTH",
    0x88: "INTERNAL AUTH",
    0x5E: "CHANGE PIN",
}
#: Answers a raw sequence may get: done, no such element (6A83), past the end of a binary file.
ACCEPTED_SW = frozenset({0x9000, 0x6A83, 0x6B00, 0x6282})
OPERATIONS: tuple[tuple[str, str], ...] = (
    ("read", "basic read (EF05 + EF06)"),
    ("read_photo", "read with photo (EF08)"),
    ("verify", "verify PIN"),
    ("sign_in", "sign-in (read + PIN)"),
)
#: Why sscard's count differs from the minimum, where it does (by design).
WHY = {
    "read": "",
    "read_photo": "the photo is its own operation: SELECT SSSE again, then SELECT EF08",
    "verify": "asks the tries left first (VERIFY without data): never spends a try on a blocked PIN",
    "sign_in": "the PIN check is its own operation: SELECT SSSE again + the tries-left query",
}


def describe(headers: Sequence[bytes]) -> str:
    """``SELECT×1, READ RECORD×14``: the commands of a sequence by instruction, in first-seen order."""
    counts = Counter(INS_NAMES.get(header[1], f"INS {header[1]:02X}") for header in headers)
    return ", ".join(f"{name}×{count}" for name, count in counts.items())


# -- the raw sequences ------------------------------------------------------------------------


class RawCard(RawPcsc):
    """A bare pyscard connection that sends APDUs as given (answering 61xx/6Cxx as any client must)."""

    def send(self, apdu: bytes) -> tuple[bytes, int]:
        data, sw = self._transmit(apdu)
        if sw >> 8 == 0x6C:
            data, sw = self._transmit(apdu[:-1] + bytes((sw & 0xFF,)))
        collected = bytearray(data)
        while sw >> 8 == 0x61:
            data, sw = self._transmit(bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF)))
            collected += data
        if sw not in ACCEPTED_SW:
            raise BenchmarkError(f"the card refused {apdu[:4].hex().upper()} with {sw:04X} in a raw sequence")
        return bytes(collected), sw

    def _transmit(self, apdu: bytes) -> tuple[bytes, int]:
        code, response = self.scard.SCardTransmit(self.handle, self.pci, list(apdu))
        if code != self.scard.SCARD_S_SUCCESS or len(response) < 2:
            raise BenchmarkError(f"SCardTransmit: {self.scard.SCardGetErrorMessage(code)}")
        return bytes(response[:-2]), (response[-2] << 8) | response[-1]

    def run(self, sequence: Callable[[RawCard], None]) -> None:
        scard = self.scard
        scard.SCardBeginTransaction(self.handle)
        try:
            sequence(self)
        finally:
            scard.SCardEndTransaction(self.handle, scard.SCARD_LEAVE_CARD)


def _select_ssse(card: RawCard) -> None:
    card.send(bytes((0x00, 0xA4, 0x04, 0x00, len(SSSE_AID))) + SSSE_AID + b"\x00")


def _select_ef(card: RawCard, ef: int) -> None:
    card.send(bytes((0x00, 0xA4, 0x02, 0x00, 0x02)) + EF_FID[ef].to_bytes(2, "big"))


def _read_element(card: RawCard, tag: int, *, sfi: bool) -> None:
    spec = ELEMENTS[tag]
    p2 = (spec.ef << 3) if sfi else 0x00
    card.send(bytes((0x00, 0xB2, tag, p2, spec.max_len + 2)))


def _read_photo(card: RawCard, *, sfi: bool) -> None:
    """EF08 to its end: 256-byte steps until a short answer or 6B00/6282 (its size is not known)."""
    offset = 0
    while True:
        p1, p2 = (0x80 | 0x08, 0x00) if sfi and offset == 0 else (offset >> 8, offset & 0xFF)
        data, sw = card.send(bytes((0x00, 0xB0, p1, p2, 0x00)))
        if sw != 0x9000 or len(data) < 256:
            return
        offset += len(data)


def _verify(card: RawCard, pin: str) -> None:
    packed = bytes(encode_pin(pin))
    card.send(bytes((0x00, 0x20, 0x00, 0x00, len(packed))) + packed)


def raw_sequences(
    tags05: Sequence[int], tags06: Sequence[int], pin: str
) -> dict[str, dict[str, Callable[[RawCard], None]]]:
    """For each operation, the minimum and the vendor-typical sequence as functions of a RawCard."""

    def minimum_read(card: RawCard) -> None:
        _select_ssse(card)
        for tag in (*tags05, *tags06):
            _read_element(card, tag, sfi=True)

    def vendor_read(card: RawCard) -> None:
        _select_ssse(card)
        for ef, tags in ((0x05, tags05), (0x06, tags06)):
            _select_ef(card, ef)
            for tag in tags:
                _read_element(card, tag, sfi=False)

    def minimum_photo(card: RawCard) -> None:
        minimum_read(card)
        _read_photo(card, sfi=True)

    def vendor_photo(card: RawCard) -> None:
        vendor_read(card)
        _select_ef(card, 0x08)
        _read_photo(card, sfi=False)

    def verify(card: RawCard) -> None:
        _select_ssse(card)
        _verify(card, pin)

    def minimum_sign_in(card: RawCard) -> None:
        minimum_read(card)
        _verify(card, pin)

    def vendor_sign_in(card: RawCard) -> None:
        vendor_read(card)
        _verify(card, pin)

    return {
        "read": {"minimum": minimum_read, "vendor": vendor_read},
        "read_photo": {"minimum": minimum_photo, "vendor": vendor_photo},
        "verify": {"minimum": verify, "vendor": verify},
        "sign_in": {"minimum": minimum_sign_in, "vendor": vendor_sign_in},
    }


# -- sscard's operations ----------------------------------------------------------------------


def sscard_operations(reader: str, pin: str) -> dict[str, Callable[[], None]]:
    """Each operation on a fresh terminal (default configuration), as one ``sscard`` command runs it."""

    def terminal() -> Terminal:
        return Terminal(PcscReader(reader), config=Config())

    def read() -> None:
        with terminal() as t:
            t.read()

    def read_photo() -> None:
        with terminal() as t:
            t.read()
            t.read_photo()

    def verify() -> None:
        with terminal() as t:
            t.verify(pin).raise_for_error()

    def sign_in() -> None:
        with terminal() as t:
            t.sign_in(pin)
            t.sign_out()

    return {"read": read, "read_photo": read_photo, "verify": verify, "sign_in": sign_in}


class Counted:
    """The commands the card received while ``action`` ran (headers, from its command log)."""

    def __init__(self, card: SimulatedCard) -> None:
        self.card = card

    def headers(self, action: Callable[[], None]) -> list[bytes]:
        before = self.card.apdu_count
        action()
        count = self.card.apdu_count - before
        return list(self.card.command_log)[-count:] if count else []


def measure(options: Options) -> Section:
    reader = vpcd_reader_name(options.slot)
    require_reader(reader)
    ensure_empty(reader, options.timeout)
    persona = load_persona(options.persona)
    if not persona.ssc:
        raise BenchmarkError(f"persona {options.persona!r} is not a social security card")
    card = SimulatedCard(persona)
    # As sscard (and the card's files): tag 4E exists only from specification 2.00 on.
    tags06 = [t for t in EF06_TAGS if not (t == 0x4E and (persona.spec_version or "").startswith("1."))]
    sequences = raw_sequences(EF05_TAGS, tags06, persona.pin.value)
    operations = sscard_operations(reader, persona.pin.value)
    counted = Counted(card)
    results: dict[str, dict[str, list[bytes]]] = {}
    link = VpcdLink(card, port=VpcdLink.port_for_slot(options.slot))
    try:
        try:
            link.insert(timeout=options.timeout)
        except SscardError as exc:
            raise BenchmarkError(f"cannot insert the simulated card into vpcd slot {options.slot}: {exc}") from exc
        wait_until(reader, is_present, "present", options.timeout)
        for key, _label in OPERATIONS:
            try:
                ours = counted.headers(operations[key])
            except SscardError as exc:
                raise BenchmarkError(f"sscard's {key} failed on persona {options.persona!r}: {exc}") from exc
            raw = RawCard(reader)
            try:
                minimum = counted.headers(partial(raw.run, sequences[key]["minimum"]))
                vendor = counted.headers(partial(raw.run, sequences[key]["vendor"]))
            finally:
                raw.close()
            results[key] = {"sscard": ours, "minimum": minimum, "vendor": vendor}
    finally:
        link.remove()
    return _section(options, reader, results)


def _section(options: Options, reader: str, results: dict[str, dict[str, list[bytes]]]) -> Section:
    rows = []
    for key, label in OPERATIONS:
        counts = {side: len(headers) for side, headers in results[key].items()}
        rows.append([label, str(counts["sscard"]), str(counts["minimum"]), str(counts["vendor"])])
    table = format_columns(["operation", "sscard", "minimum", "vendor-typical"], rows)
    lines = [f"persona {options.persona!r} in {reader}; counted at the card, through pcscd", "", table, ""]
    for key, label in OPERATIONS:
        result = results[key]
        lines.append(f"{label}:")
        for side in ("sscard", "minimum", "vendor"):
            lines.append(f"  {side:<8} {describe(result[side])}")
        extra = len(result["sscard"]) - len(result["minimum"])
        if extra and WHY[key]:
            lines.append(f"  sscard +{extra}: {WHY[key]}")
    read = {side: len(headers) for side, headers in results["read"].items()}
    figures = [
        Figure(
            "basic read: APDUs, sscard / minimum / vendor-typical",
            f"{read['sscard']} / {read['minimum']} / {read['vendor']}",
            "= minimum",
            "PASS" if read["sscard"] <= read["minimum"] else "OVER",
        )
    ]
    for key, label in OPERATIONS[1:]:
        counts = {side: len(headers) for side, headers in results[key].items()}
        figures.append(
            Figure(
                f"{label}: sscard / minimum / vendor", f"{counts['sscard']} / {counts['minimum']} / {counts['vendor']}"
            )
        )
    data = {
        "persona": options.persona,
        "reader": reader,
        "operations": {
            key: {
                side: {"count": len(headers), "commands": [header.hex().upper() for header in headers]}
                for side, headers in results[key].items()
            }
            for key, _ in OPERATIONS
        },
    }
    return Section(NAME, TITLE, lines, data, figures)


def main(argv: Sequence[str] | None = None) -> int:
    return section_main(argv, NAME, TITLE, measure, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
