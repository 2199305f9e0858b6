"""The bank application's typed result and the decoding of its data elements (docs/card-reference.md §11.5).

:class:`BankCard` is frozen and keeps the PAN out of its ``repr`` and out of :meth:`BankCard.to_json`:
the masked form (first 6, last 4) is what logs, traces of results and kiosk screens get; the clear
PAN is there only for a caller who asks for it by name (:meth:`BankCard.clear_pan`), such as the
national ``iReadBankNumber`` line.

Every decoder here is strict: a value of the wrong length, a non-BCD digit, a track-2 equivalent
that disagrees with the PAN or expiry, is a :class:`~sscard.errors.BadRecord` naming the element.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sscard.bank.tlv import bad

#: PAN digits allowed (docs/card-reference.md §11.5; UnionPay issues 16–19).
PAN_MIN, PAN_MAX = 12, 19
MASK_HEAD, MASK_TAIL = 6, 4


def mask_pan(pan: str) -> str:
    """``6212341234567890123`` → ``621234*********0123``: first 6 and last 4 digits (PCI DSS style)."""
    if len(pan) <= MASK_HEAD + MASK_TAIL:
        return pan[:2] + "*" * max(len(pan) - 2, 0)
    return pan[:MASK_HEAD] + "*" * (len(pan) - MASK_HEAD - MASK_TAIL) + pan[-MASK_TAIL:]


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _digits(raw: bytes, element: str, *, pad: bool) -> str:
    """Packed BCD; with ``pad`` one trailing ``F`` nibble is padding (EMV "cn" format)."""
    text = raw.hex().upper()
    if pad and text.endswith("F"):
        text = text[:-1]
    if not text.isdigit():
        raise bad(element, f"non-BCD digits in {len(raw)} bytes")
    return text


def decode_pan(raw: bytes) -> str:
    """Tag 5A (cn, up to 10 bytes): 12–19 digits passing the Luhn check."""
    if not 1 <= len(raw) <= 10:
        raise bad("pan", f"length {len(raw)}, expected 1-10 bytes")
    pan = _digits(raw, "pan", pad=True)
    if not PAN_MIN <= len(pan) <= PAN_MAX:
        raise bad("pan", f"{len(pan)} digits, expected {PAN_MIN}-{PAN_MAX}")
    if not luhn_ok(pan):
        raise bad("pan", "the check digit is wrong")
    return pan


def _yymmdd(text: str, element: str) -> dt.date:
    """EMV n6 date; years 00–49 are 20xx, 50–99 19xx (docs/card-reference.md §11.5)."""
    year = int(text[:2])
    try:
        return dt.date(2000 + year if year < 50 else 1900 + year, int(text[2:4]), int(text[4:6]))
    except ValueError:
        raise bad(element, f"not a date YYMMDD: {text}") from None


def decode_expiry(raw: bytes) -> dt.date:
    """Tag 5F24 (n6 YYMMDD)."""
    if len(raw) != 3:
        raise bad("expiry", f"length {len(raw)}, expected 3")
    return _yymmdd(_digits(raw, "expiry", pad=False), "expiry")


@dataclass(frozen=True)
class Track2:
    """Tag 57 (track 2 equivalent data): PAN, ``D``, expiry YYMM, service code, discretionary data."""

    pan: str = field(repr=False)
    expiry_yymm: str
    service_code: str


def decode_track2(raw: bytes) -> Track2:
    if not 1 <= len(raw) <= 19:
        raise bad("track2", f"length {len(raw)}, expected 1-19 bytes")
    text = raw.hex().upper()
    if text.endswith("F"):
        text = text[:-1]
    pan, separator, rest = text.partition("D")
    if not separator:
        raise bad("track2", "no field separator D")
    if not pan.isdigit() or not PAN_MIN <= len(pan) <= PAN_MAX or not luhn_ok(pan):
        raise bad("track2", "its PAN is not 12-19 digits with a good check digit")
    if len(rest) < 7 or not rest.isdigit():
        raise bad("track2", "expiry and service code are not 7 digits after D")
    if not 1 <= int(rest[2:4]) <= 12:
        raise bad("track2", f"expiry month {rest[2:4]}")
    return Track2(pan, rest[:4], rest[4:7])


def decode_text(raw: bytes, element: str, min_len: int, max_len: int, charset: str | None = None) -> str:
    """ans text (50, 5F20; 9F12 in the code table ``charset`` of 9F11).  Trailing spaces dropped.

    Chinese cards are seen to put GBK in 9F12 and 5F20 without a code-table index; bytes that are
    not ASCII are then read as GB18030 (a GBK superset) **(unconfirmed)**.
    """
    if not min_len <= len(raw) <= max_len:
        raise bad(element, f"length {len(raw)}, expected {min_len}-{max_len}")
    encodings = [charset] if charset else ["ascii", "gb18030"]
    for encoding in encodings:
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
        if text.isprintable():
            return text.rstrip(" ")
    raise bad(element, f"not printable text in {'/'.join(encodings)}")


@dataclass(frozen=True)
class BankCard:
    """What the bank application gave: selection, labels, PAN (masked unless asked), expiry, name.

    The PAN is stored once, in a field that ``repr`` leaves out; :attr:`pan` is the masked form.
    """

    aid: bytes
    #: ``"ppse"`` when the application was found in the PPSE directory, ``"aid"`` when by trying AIDs.
    selected_by: str
    _pan: str = field(repr=False)
    expiry: dt.date | None
    label: str | None = None
    preferred_name: str | None = None
    #: Personal data: out of ``repr`` like the PAN (it is in :meth:`to_json`, as the SSC's name is).
    cardholder_name: str | None = field(default=None, repr=False)
    pan_sequence: str | None = None
    #: Application interchange profile from GPO, hex (what the card supports; no decision made on it).
    aip: str = ""
    #: The reader and the card's ATR, set by the facade (not part of the JSON).
    reader: str = ""
    atr: bytes = b""

    kind: ClassVar[str] = "bank"

    @property
    def pan(self) -> str:
        """The masked PAN, first 6 and last 4 digits: safe for logs and screens."""
        return mask_pan(self._pan)

    def clear_pan(self) -> str:
        """The full PAN.  Personal data: never log it; only hand it to whoever must have it."""
        return self._pan

    def to_json(self) -> dict[str, Any]:
        """The JSON form (``"kind": "bank"``); the PAN in it is masked."""
        return {
            "kind": self.kind,
            "aid": self.aid.hex().upper(),
            "selected_by": self.selected_by,
            "label": self.label,
            "preferred_name": self.preferred_name,
            "pan": self.pan,
            "pan_sequence": self.pan_sequence,
            "expiry": self.expiry.isoformat() if self.expiry else None,
            "cardholder_name": self.cardholder_name,
            "aip": self.aip,
        }


def card_from_elements(
    aid: bytes, selected_by: str, fci: Mapping[int, bytes], data: Mapping[int, bytes], aip: bytes
) -> BankCard:
    """Build the result from the FCI's objects and the GPO/record objects; whole or BAD_RECORD."""
    track2 = decode_track2(data[0x57]) if 0x57 in data else None
    pan = decode_pan(data[0x5A]) if 0x5A in data else None
    expiry = decode_expiry(data[0x5F24]) if 0x5F24 in data else None
    if track2 is not None:
        if pan is not None and track2.pan != pan:
            raise bad("track2", "its PAN differs from tag 5A")
        if expiry is not None and track2.expiry_yymm != expiry.strftime("%y%m"):
            raise bad("track2", "its expiry differs from tag 5F24")
        pan = pan or track2.pan
    if pan is None:
        raise bad("pan", "neither tag 5A nor track 2 equivalent data (57) was found")
    charset = None
    if 0x9F11 in fci:
        index = fci[0x9F11]
        if len(index) != 1 or not 1 <= index[0] <= 10:  # ISO 8859 parts 1..10
            raise bad("fci", "issuer code table index (9F11) is not 01-10")
        charset = f"iso8859-{index[0]}"
    sequence = data.get(0x5F34)
    if sequence is not None and len(sequence) != 1:
        raise bad("record", "PAN sequence number (5F34) is not 1 byte")
    return BankCard(
        aid=aid,
        selected_by=selected_by,
        _pan=pan,
        expiry=expiry,
        label=decode_text(fci[0x50], "label", 1, 16, "ascii") if 0x50 in fci else None,
        preferred_name=decode_text(fci[0x9F12], "preferred_name", 1, 16, charset) if 0x9F12 in fci else None,
        cardholder_name=decode_text(data[0x5F20], "cardholder_name", 2, 26) if 0x5F20 in data else None,
        pan_sequence=_digits(sequence, "record", pad=False) if sequence is not None else None,
        aip=aip.hex().upper(),
    )
