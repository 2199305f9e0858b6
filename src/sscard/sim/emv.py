"""The card's side of the bank application (docs/card-reference.md §11): PPSE, SELECT, GPO, READ RECORD.

Written from the EMV/PBOC 3.0 rules alone, never from :mod:`sscard.bank` (the simulator must not
agree with the code it tests by sharing it): its own TLV encoder, its own PAN/track-2 encoding.

A persona carries the application as a ``[bank]`` table::

    [bank]
    aid = "A000000333010101"       # UnionPay debit [default]; "…0102" credit
    label = "UnionPay Debit"       # tag 50 (ASCII, 1–16)
    preferred_name = "银联借记卡"   # tag 9F12, GB18030 when not ASCII; omitted when absent
    pan = "6217000010001234569"    # digits; the card stores them as given (a bad check digit stays)
    expiry = "2031-12-31"          # 5F24; the track-2 equivalent data carries its YYMM
    effective = "2021-12-01"       # 5F25 (optional)
    cardholder_name = "ZHANG/SAN"  # 5F20 (optional)
    pan_sequence = "01"            # 5F34
    ppse = true                    # the card answers SELECT 2PAY.SYS.DDF01 with a directory
    priority = 1                   # tag 87 in the PPSE entry and the FCI
    pdol = "9F66049F02069F03069F1A0295055F2A029A039C019F3704"   # 9F38; "" for none
    aip = "7C00"                   # tag 82
    gpo_format = 2                 # 1: 80 AIP‖AFL; 2: 77 [82][94][9F36][9F10]
    track2 = true                  # 57 in SFI 1 record 1

    [bank.raw]                     # tag (hex) -> exact value (hex) in the records, for bad data
    "5A" = "62170000100012A4565F"

    [bank.override]                # whole answers replaced (hex), for malformed FCI / GPO / AFL
    afl = "0801010010010101"       # the AFL sent in the GPO answer
    fci = "6F…"                    # SELECT AID answer
    ppse_fci = "6F…"               # SELECT PPSE answer
    gpo = "77…"                    # GPO answer

The records are SFI 1 (track 2, name), SFI 2 (PAN, dates, sequence number, CDOL1) and SFI 3 (two
records with deterministic certificate-sized filler, so lengths take the long form ``81 xx``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sscard.apdu.command import Command
from sscard.apdu.sw import SW

PPSE_NAME = b"2PAY.SYS.DDF01"
UNIONPAY_DEBIT = bytes.fromhex("A000000333010101")
DEFAULT_PDOL = "9F66049F02069F03069F1A0295055F2A029A039C019F3704"
#: What CDOL1 asks for; only stored (no GENERATE AC is ever answered).
CDOL1 = bytes.fromhex("9F02069F03069F1A0295055F2A029A039C019F3704")
OVERRIDES = ("afl", "fci", "ppse_fci", "gpo")


def tlv(tag: int, value: bytes) -> bytes:
    """Tag, shortest BER length (``81 xx``/``82 xxxx`` past 127), value."""
    tag_raw = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    n = len(value)
    if n < 0x80:
        length = bytes((n,))
    elif n <= 0xFF:
        length = b"\x81" + bytes((n,))
    else:
        length = b"\x82" + n.to_bytes(2, "big")
    return tag_raw + length + value


def _filler(seed: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def _cn(digits: str) -> bytes:
    """EMV "cn": digits left-aligned, padded with F to a whole byte (tag 5A)."""
    return bytes.fromhex(digits + "F" * (len(digits) % 2))


def _text(value: str) -> bytes:
    try:
        return value.encode("ascii")
    except UnicodeEncodeError:
        return value.encode("gb18030")


@dataclass(frozen=True)
class BankData:
    """A persona's ``[bank]`` table, validated (values, not yet bytes)."""

    aid: bytes = UNIONPAY_DEBIT
    label: str = "UnionPay Debit"
    preferred_name: str | None = None
    pan: str = field(default="6217000010001234569", repr=False)
    expiry: dt.date = dt.date(2031, 12, 31)
    effective: dt.date | None = None
    cardholder_name: str | None = None
    pan_sequence: str = "01"
    ppse: bool = True
    priority: int = 1
    pdol: bytes = bytes.fromhex(DEFAULT_PDOL)
    aip: bytes = bytes.fromhex("7C00")
    gpo_format: int = 2
    track2: bool = True
    raw: Mapping[int, bytes] = field(default_factory=lambda: MappingProxyType({}))
    override: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))


def parse_bank(data: Mapping[str, Any], error: Callable[[str, str], Exception]) -> BankData:
    """Validate a ``[bank]`` table; ``error(key, problem)`` builds the persona's ConfigError."""

    def get(key: str, kind: type, default: Any) -> Any:
        value = data.get(key, default)
        if value is not default and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise error(key, f"must be a {kind.__name__}")
        return value

    def hexa(key: str, value: Any) -> bytes:
        if not isinstance(value, str) or not re.fullmatch(r"([0-9A-Fa-f]{2})*", value):
            raise error(key, "must be hex bytes")
        return bytes.fromhex(value)

    def date(key: str, default: dt.date | None) -> dt.date | None:
        value = data.get(key, default)
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                raise error(key, "must be a date YYYY-MM-DD") from None
        if value is not None and not isinstance(value, dt.date):
            raise error(key, "must be a date YYYY-MM-DD")
        return value

    known = {f for f in BankData.__dataclass_fields__}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(unknown[0], f"is not a [bank] key (known: {', '.join(sorted(known))})")
    pan: str = get("pan", str, BankData.pan)
    if not re.fullmatch(r"[0-9]{8,19}", pan):
        raise error("pan", "must be 8-19 digits")
    label: str = get("label", str, BankData.label)
    preferred: str | None = get("preferred_name", str, None)
    for key, text in (("label", label), ("preferred_name", preferred)):
        if text is not None and not 1 <= len(_text(text)) <= 16:
            raise error(key, "must be 1-16 bytes")
    priority: int = get("priority", int, 1)
    if not 0 <= priority <= 15:
        raise error("priority", "must be 0-15 (the low nibble of tag 87)")
    gpo_format: int = get("gpo_format", int, 2)
    if gpo_format not in (1, 2):
        raise error("gpo_format", "must be 1 or 2")
    raw_table = get("raw", dict, {})
    raw: dict[int, bytes] = {}
    for key, value in raw_table.items():
        if not re.fullmatch(r"[0-9A-Fa-f]{2}|[0-9A-Fa-f]{4}", key):
            raise error(f"raw.{key}", "is not a 1- or 2-byte tag in hex")
        raw[int(key, 16)] = hexa(f"raw.{key}", value)
    override_table = get("override", dict, {})
    override: dict[str, bytes] = {}
    for key, value in override_table.items():
        if key not in OVERRIDES:
            raise error(f"override.{key}", f"is not one of {', '.join(OVERRIDES)}")
        override[key] = hexa(f"override.{key}", value)
    expiry = date("expiry", BankData.expiry)
    sequence: str = get("pan_sequence", str, "01")
    if not re.fullmatch(r"[0-9]{2}", sequence):
        raise error("pan_sequence", "must be 2 digits")
    return BankData(
        aid=hexa("aid", get("aid", str, UNIONPAY_DEBIT.hex())),
        label=label,
        preferred_name=preferred,
        pan=pan,
        expiry=expiry or BankData.expiry,
        effective=date("effective", None),
        cardholder_name=get("cardholder_name", str, None),
        pan_sequence=sequence,
        ppse=get("ppse", bool, True),
        priority=priority,
        pdol=hexa("pdol", get("pdol", str, DEFAULT_PDOL)),
        aip=hexa("aip", get("aip", str, "7C00")),
        gpo_format=gpo_format,
        track2=get("track2", bool, True),
        raw=MappingProxyType(raw),
        override=MappingProxyType(override),
    )


def _dol_length(dol: bytes) -> int:
    """The total value length a DOL asks for (the card's own reading of it, for the GPO's Lc check).

    ``-1`` for a DOL the card itself cannot read (a bad-data persona): every GPO then answers 6700.
    """
    total, pos = 0, 0
    try:
        while pos < len(dol):
            if dol[pos] & 0x1F == 0x1F:
                pos += 1
                while dol[pos] & 0x80:
                    pos += 1
            pos += 1
            total += dol[pos]
            pos += 1
    except IndexError:
        return -1
    return total


class SimulatedEmv:
    """The bank application of one simulated card: its files and its answers (no state kept but a GPO flag)."""

    def __init__(self, bank: BankData) -> None:
        self.bank = bank
        self.records = self._records()
        #: Set by a GPO; a second GPO in the same selection is refused (6985), as EMV cards do.
        self.gpo_done = False

    # -- personalisation --------------------------------------------------------------------

    def _element(self, tag: int, value: bytes | None) -> bytes:
        value = self.bank.raw.get(tag, value)
        return b"" if value is None else tlv(tag, value)

    def _records(self) -> dict[tuple[int, int], bytes]:
        bank = self.bank
        # PAN ‖ D ‖ YYMM ‖ service code 220 (international, IC) ‖ discretionary data, F-padded.
        digits = bank.pan + "D" + bank.expiry.strftime("%y%m") + "220" + "00000000000"
        track2 = bytes.fromhex(digits + "F" * (len(digits) % 2))
        name = bank.cardholder_name
        sfi1 = self._element(0x57, track2 if bank.track2 else None) + self._element(
            0x5F20, name.encode("ascii") if name else None
        )
        sfi2 = (
            self._element(0x5A, _cn(bank.pan))
            + self._element(0x5F24, bytes.fromhex(bank.expiry.strftime("%y%m%d")))
            + self._element(0x5F25, bytes.fromhex(bank.effective.strftime("%y%m%d")) if bank.effective else None)
            + self._element(0x5F34, bytes.fromhex(bank.pan_sequence))
            + self._element(0x5F28, bytes.fromhex("0156"))
            + self._element(0x8C, CDOL1)
        )
        seed = bank.pan
        sfi3_1 = self._element(0x8F, b"\x08") + self._element(0x90, _filler(f"{seed}/90", 0xB0))
        sfi3_2 = self._element(0x9F32, b"\x03") + self._element(0x92, _filler(f"{seed}/92", 0x24))
        records = {(1, 1): sfi1, (2, 1): sfi2, (3, 1): sfi3_1, (3, 2): sfi3_2}
        # raw tags not placed above go into SFI 2 record 1
        placed = {0x57, 0x5F20, 0x5A, 0x5F24, 0x5F25, 0x5F34, 0x5F28, 0x8C, 0x8F, 0x90, 0x9F32, 0x92}
        extra = b"".join(tlv(tag, value) for tag, value in bank.raw.items() if tag not in placed)
        records[(2, 1)] += extra
        return {key: tlv(0x70, body) for key, body in records.items()}

    @property
    def afl(self) -> bytes:
        if "afl" in self.bank.override:
            return self.bank.override["afl"]
        return bytes.fromhex("080101001001010118010200")

    def ppse_fci(self) -> bytes:
        if "ppse_fci" in self.bank.override:
            return self.bank.override["ppse_fci"]
        entry = tlv(0x4F, self.bank.aid) + tlv(0x50, _text(self.bank.label)) + tlv(0x87, bytes((self.bank.priority,)))
        return tlv(0x6F, tlv(0x84, PPSE_NAME) + tlv(0xA5, tlv(0xBF0C, tlv(0x61, entry))))

    def fci(self) -> bytes:
        if "fci" in self.bank.override:
            return self.bank.override["fci"]
        bank = self.bank
        body = tlv(0x50, _text(bank.label)) + tlv(0x87, bytes((bank.priority,)))
        if bank.pdol:
            body += tlv(0x9F38, bank.pdol)
        body += tlv(0x5F2D, b"zhen")
        if bank.preferred_name is not None:
            raw = _text(bank.preferred_name)
            if raw.isascii():
                body += tlv(0x9F11, b"\x01")
            body += tlv(0x9F12, raw)
        body += tlv(0xBF0C, tlv(0x9F4D, b"\x0b\x0a"))
        return tlv(0x6F, tlv(0x84, bank.aid) + tlv(0xA5, body))

    # -- commands ---------------------------------------------------------------------------

    def selects(self, name: bytes) -> bytes | None:
        """The FCI when ``name`` is this application or (``ppse``) the PPSE; else None."""
        if name == self.bank.aid:
            self.gpo_done = False
            return self.fci()
        if name == PPSE_NAME and self.bank.ppse:
            return self.ppse_fci()
        return None

    def gpo(self, command: Command) -> tuple[bytes, int]:
        """GET PROCESSING OPTIONS: ``83 L data`` whose L is what the PDOL asks for, else 6700."""
        if command.p1 or command.p2:
            return b"", SW.INCORRECT_P1P2
        if self.gpo_done:
            return b"", SW.CONDITIONS_NOT_SATISFIED
        data = command.data
        wanted = _dol_length(self.bank.pdol)
        if len(data) < 2 or data[0] != 0x83 or data[1] != len(data) - 2 or data[1] != wanted:
            return b"", SW.WRONG_LENGTH
        self.gpo_done = True
        if "gpo" in self.bank.override:
            return self.bank.override["gpo"], SW.OK
        if self.bank.gpo_format == 1:
            return tlv(0x80, self.bank.aip + self.afl), SW.OK
        atc = b"\x00\x2a"
        iad = bytes.fromhex("07010103A00000010A010000000000")
        body = tlv(0x82, self.bank.aip) + tlv(0x94, self.afl) + tlv(0x9F36, atc) + tlv(0x9F10, iad)
        return tlv(0x77, body), SW.OK

    def read_record(self, command: Command) -> tuple[bytes, int]:
        """READ RECORD ``P2 = SFI << 3 | 100``; a record the card lacks is 6A83, an SFI it lacks 6A82."""
        if command.data:
            return b"", SW.WRONG_LENGTH
        if command.p2 & 0x07 != 0b100 or command.p1 == 0:
            return b"", SW.INCORRECT_P1P2
        sfi = command.p2 >> 3
        if not any(key[0] == sfi for key in self.records):
            return b"", SW.FILE_NOT_FOUND
        record = self.records.get((sfi, command.p1))
        if record is None:
            return b"", SW.RECORD_NOT_FOUND
        return record, SW.OK
