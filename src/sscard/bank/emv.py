"""The EMV pieces of a read (docs/card-reference.md §11): PDOL data, the GPO answer, the AFL.

Pure functions over bytes, no APDUs, so each is unit-tested and fuzzed on its own.  The terminal
data a card may ask for in its PDOL is a table (:data:`TERMINAL_DATA`), not code: the values are
the neutral ones of a terminal that only reads — amount zero, no CVM capability, China's country
and currency codes — and the two that change per read (date, unpredictable number) come from the
``now`` and ``rng`` the caller passes.  A tag the table does not know is sent as zeros of the
requested length (docs/card-reference.md §11.3), as every terminal does.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sscard.bank.tlv import bad, is_constructed, parse, parse_dol

#: EMV format of a terminal data element, which decides how a value is fitted to the length the
#: card asks for: numeric ("n") is right-aligned (leading zeros added or dropped), everything
#: else left-aligned (trailing zeros added, or cut on the right).
NUMERIC = "n"
BINARY = "b"


@dataclass(frozen=True)
class TerminalElement:
    """One row of :data:`TERMINAL_DATA`: what the tag is, its format, and how to make its value."""

    name: str
    fmt: str
    value: Callable[[dt.datetime, Callable[[int], bytes]], bytes]


def _fixed(hex_value: str) -> Callable[[dt.datetime, Callable[[int], bytes]], bytes]:
    raw = bytes.fromhex(hex_value)
    return lambda _now, _rng: raw


#: Terminal data for the PDOL, keyed by tag (docs/card-reference.md §11.3).  Neutral values of a
#: read-only terminal; a card asking for anything else gets zeros.
TERMINAL_DATA: Mapping[int, TerminalElement] = MappingProxyType(
    {
        # TTQ: EMV contact chip and qPBOC supported, nothing else (no online PIN, no signature).
        0x9F66: TerminalElement("terminal transaction qualifiers", BINARY, _fixed("30000000")),
        0x9F02: TerminalElement("amount, authorised", NUMERIC, _fixed("000000000000")),
        0x9F03: TerminalElement("amount, other", NUMERIC, _fixed("000000000000")),
        0x9F1A: TerminalElement("terminal country code", NUMERIC, _fixed("0156")),
        0x5F2A: TerminalElement("transaction currency code", NUMERIC, _fixed("0156")),
        0x95: TerminalElement("terminal verification results", BINARY, _fixed("0000000000")),
        0x9A: TerminalElement("transaction date", NUMERIC, lambda now, _rng: bytes.fromhex(now.strftime("%y%m%d"))),
        0x9F21: TerminalElement("transaction time", NUMERIC, lambda now, _rng: bytes.fromhex(now.strftime("%H%M%S"))),
        0x9C: TerminalElement("transaction type", NUMERIC, _fixed("00")),
        0x9F37: TerminalElement("unpredictable number", BINARY, lambda _now, rng: rng(4)),
        # Terminal type 22: attended, offline with online capability, operated by a merchant.
        0x9F35: TerminalElement("terminal type", NUMERIC, _fixed("22")),
        # Terminal capabilities: IC with contacts; no CVM (so no PIN is ever asked for); no security.
        0x9F33: TerminalElement("terminal capabilities", BINARY, _fixed("200000")),
        0x9F40: TerminalElement("additional terminal capabilities", BINARY, _fixed("0000000000")),
        0x9F09: TerminalElement("application version number (terminal)", BINARY, _fixed("0030")),
        # UnionPay: electronic-cash terminal support indicator, off (docs/card-reference.md §11.3).
        0x9F7A: TerminalElement("electronic cash terminal support indicator", BINARY, _fixed("00")),
        0xDF60: TerminalElement("CAPP transaction indicator (unconfirmed)", BINARY, _fixed("00")),
    }
)


def fit(value: bytes, length: int, fmt: str) -> bytes:
    """A terminal value fitted to the length the card asked for (docs/card-reference.md §11.3)."""
    if len(value) == length:
        return value
    if fmt == NUMERIC:
        return value[-length:] if len(value) > length else bytes(length - len(value)) + value
    return value[:length] if len(value) > length else value + bytes(length - len(value))


def pdol_data(
    pdol: bytes | None,
    *,
    now: dt.datetime | None = None,
    rng: Callable[[int], bytes] = os.urandom,
    table: Mapping[int, TerminalElement] = TERMINAL_DATA,
) -> bytes:
    """The concatenated values the card's PDOL (tag 9F38) asks for, in its order; ``b""`` without one."""
    if not pdol:
        return b""
    moment = now if now is not None else dt.datetime.now()
    out = bytearray()
    for tag, length in parse_dol(pdol, "pdol"):
        element = table.get(tag)
        if element is None or is_constructed(tag):
            out += bytes(length)
        else:
            out += fit(element.value(moment, rng), length, element.fmt)
    if len(out) > 252:  # 83 L data must fit a short Lc with its two header bytes
        raise bad("pdol", f"asks for {len(out)} bytes of terminal data, more than a GPO can carry")
    return bytes(out)


@dataclass(frozen=True)
class AflEntry:
    """One 4-byte AFL entry: records ``first``..``last`` of ``sfi``; ``offline`` of them signed for ODA."""

    sfi: int
    first: int
    last: int
    offline: int

    @property
    def records(self) -> range:
        return range(self.first, self.last + 1)


def parse_afl(raw: bytes) -> tuple[AflEntry, ...]:
    """The AFL (tag 94, or format-1 bytes 3…; docs/card-reference.md §11.4): whole or BAD_RECORD."""
    if not raw or len(raw) % 4:
        raise bad("afl", f"length {len(raw)} is not a positive multiple of 4")
    out: list[AflEntry] = []
    for index in range(0, len(raw), 4):
        b1, first, last, offline = raw[index : index + 4]
        sfi = b1 >> 3
        where = f"entry {index // 4 + 1}"
        if b1 & 0x07 or not 1 <= sfi <= 30:
            raise bad("afl", f"{where}: {b1:02X} is not an SFI 1..30 shifted left by 3")
        if first == 0 or last < first:
            raise bad("afl", f"{where}: record range {first}..{last} is empty or starts at 0")
        if offline > last - first + 1:
            raise bad("afl", f"{where}: {offline} records for offline authentication out of {last - first + 1}")
        out.append(AflEntry(sfi, first, last, offline))
    return tuple(out)


@dataclass(frozen=True)
class ProcessingOptions:
    """The GPO answer: application interchange profile, AFL, and any other objects (format 2)."""

    aip: bytes
    afl: tuple[AflEntry, ...]
    #: Other primitive objects of a format-2 answer (qPBOC cards put 57, 5F34 … here), by tag.
    #: Out of ``repr``: track 2 carries the PAN.
    extra: Mapping[int, bytes] = field(repr=False)


def parse_gpo(data: bytes) -> ProcessingOptions:
    """Format 1 (``80``: AIP ‖ AFL) or format 2 (``77``: 82, 94 and others) (docs/card-reference.md §11.3)."""
    objects = parse(data, "gpo")
    if len(objects) != 1 or objects[0].tag not in (0x80, 0x77):
        found = " ".join(f"{o.tag:X}" for o in objects) or "nothing"
        raise bad("gpo", f"expected one 80 or 77 template, found {found}")
    template = objects[0]
    if template.tag == 0x80:
        if len(template.value) < 2:
            raise bad("gpo", "format 1 shorter than its 2-byte AIP")
        aip, afl_raw = template.value[:2], template.value[2:]
        return ProcessingOptions(aip, parse_afl(afl_raw) if afl_raw else (), MappingProxyType({}))
    values: dict[int, bytes] = {}
    for child in template.children or ():
        if child.tag in values:
            raise bad("gpo", f"object {child.tag:X} appears twice")
        if not child.constructed:
            values[child.tag] = child.value
    aip = values.pop(0x82, b"")
    if len(aip) != 2:
        raise bad("gpo", "format 2 without a 2-byte AIP (82)")
    afl = parse_afl(values.pop(0x94)) if 0x94 in values else ()
    return ProcessingOptions(aip, afl, MappingProxyType(values))
