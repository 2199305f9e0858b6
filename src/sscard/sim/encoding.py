"""The card's side of docs/card-reference.md §3: a persona's values encoded as a personalisation system would.

Deliberately independent of :mod:`sscard.ssc.records`: if the simulator borrowed the parsers'
encoders, a misreading of the reference would be built into both sides and every test would still
pass.  Everything here is written straight from the table in docs/card-reference.md §3.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sscard.sim.model import Persona

#: DDF SSSE's AID (docs/card-reference.md §1): ASCII "sx1.sh." + GBK "社会保障".
SSSE_AID = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")
#: UnionPay debit application (docs/card-reference.md §1), so a bank-card persona has something to select.
PBOC_DEBIT_AID = bytes.fromhex("A000000333010101")

EF05_TAGS = (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07)
#: EF06 record order: record numbers differ from tags here (docs/card-reference.md §2), 4E comes last.
EF06_TAGS = (0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x4E)
NAME_LEN = 30
NAME_EXTENSION_LEN = 20


def bcd(digits: str, length: int, pad: str = "F") -> bytes:
    """Packed BCD, right-padded with ``pad`` nibbles to ``length`` bytes (docs/card-reference.md §3, CN format)."""
    if not digits.isascii() or not (digits.isdigit() or not digits):
        raise ValueError(f"not a digit string: {digits!r}")
    if len(digits) > 2 * length:
        raise ValueError(f"{len(digits)} digits do not fit {length} bytes")
    return bytes.fromhex(digits.ljust(2 * length, pad))


def bcd_date(value: dt.date | None) -> bytes:
    """4-byte BCD ``YYYYMMDD``; a card with no date carries zeros."""
    return b"\x00" * 4 if value is None else bytes.fromhex(value.strftime("%Y%m%d"))


def ascii_field(text: str, length: int) -> bytes:
    """Fixed-length ASCII (AN): the persona must give exactly ``length`` characters."""
    raw = text.encode("ascii")
    if len(raw) != length:
        raise ValueError(f"{text!r} is not {length} ASCII characters")
    return raw


def gb_field(text: str, length: int, padding: bytes) -> bytes:
    """GB18030 text padded to the declared length with ``00`` or spaces (docs/card-reference.md §3, tag 09/4E)."""
    raw = text.encode("gb18030")
    if len(raw) > length:
        raise ValueError(f"{len(raw)} bytes of GB18030 do not fit {length}")
    return raw + padding * (length - len(raw))


def split_name(name: str, spec_version: str) -> tuple[str, str]:
    """Split a full name over 姓名 (09) and 姓名扩展 (4E) on a character boundary.

    Only 2.00 and 3.00 cards have 4E (docs/card-reference.md §3); the cut never falls inside a multi-byte
    GB18030 character, so each record decodes on its own.
    """
    used = 0
    for index, char in enumerate(name):
        size = len(char.encode("gb18030"))
        if used + size > NAME_LEN:
            head, tail = name[:index], name[index:]
            break
        used += size
    else:
        return name, ""
    if spec_version.startswith("1."):
        raise ValueError(f"a {spec_version} card holds {NAME_LEN} bytes of name and has no extension record")
    if len(tail.encode("gb18030")) > NAME_EXTENSION_LEN:
        raise ValueError("the name does not fit 姓名 and 姓名扩展 together")
    return head, tail


def tlv(tag: int, value: bytes) -> bytes:
    """One record as the card stores and returns it: tag, one-byte length, value (docs/card-reference.md §2)."""
    if len(value) > 0xFF:
        raise ValueError("value longer than a one-byte length")
    return bytes((tag, len(value))) + value


def ef05_values(persona: Persona) -> list[tuple[int, bytes]]:
    """EF05 values in record order (record number = tag, docs/card-reference.md §2)."""
    info = persona.ef05
    if info is None:
        return []
    return [
        (0x01, info.identification_code),
        (0x02, ascii_field(info.card_type, 1)),
        (0x03, ascii_field(info.spec_version, 4)),
        (0x04, bcd(info.issuer_id, 12)),
        (0x05, bcd_date(info.issue_date)),
        (0x06, bcd_date(info.expiry_date)),
        (0x07, ascii_field(info.card_number, 9)),
    ]


def ef06_values(persona: Persona) -> list[tuple[int, bytes]]:
    """EF06 values in record order; 4E only when the name needs it (a 2.00 card without it: 6A83)."""
    info = persona.ef06
    if info is None:
        return []
    name, extension = split_name(info.name, persona.spec_version or "2.00")
    values = [
        (0x08, ascii_field(info.ssn, 18)),
        (0x09, gb_field(name, NAME_LEN, info.name_padding)),
        (0x0A, ascii_field(info.gender, 1)),
        (0x0B, bcd(info.nation, 1)),
        (0x0C, bcd(info.birthplace, 3, pad="F")),
        (0x0D, bcd_date(info.birth_date)),
    ]
    if extension:
        values.append((0x4E, gb_field(extension, NAME_EXTENSION_LEN, info.name_padding)))
    return values


def record_files(persona: Persona) -> dict[int, list[bytes]]:
    """EF05 and EF06 as lists of TLV records, ``[raw]`` overrides applied, keyed by FID."""
    files = {0xEF05: ef05_values(persona), 0xEF06: ef06_values(persona)}
    for tag, value in persona.raw.items():
        fid = 0xEF05 if tag in EF05_TAGS else 0xEF06
        entries = files[fid]
        for index, (existing, _) in enumerate(entries):
            if existing == tag:
                entries[index] = (tag, value)
                break
        else:
            entries.append((tag, value))
    return {fid: [tlv(tag, value) for tag, value in entries] for fid, entries in files.items()}


def ssse_fci(algorithm: int | None) -> bytes:
    """The FCI answered to SELECT SSSE: ``6F [84 AID] [A5 [9F0C 03 86 01 alg]]`` (docs/card-reference.md §1)."""
    proprietary = b"" if algorithm is None else tlv(0xA5, bytes((0x9F, 0x0C, 0x03, 0x86, 0x01, algorithm)))
    return tlv(0x6F, tlv(0x84, SSSE_AID) + proprietary)


def pboc_fci() -> bytes:
    """A minimal UnionPay debit FCI: DF name and application label."""
    return tlv(0x6F, tlv(0x84, PBOC_DEBIT_AID) + tlv(0xA5, tlv(0x50, b"UnionPay Debit")))


def synthetic_bytes(seed: str, size: int, jpeg: bool = False) -> bytes:
    """Deterministic filler for EF07/EF08 (same persona, same bytes, so tests can assert them).

    With ``jpeg`` the bytes are framed by SOI/EOI markers like a photo would be; they are not a
    decodable image (the real photo format is unconfirmed, docs/card-reference.md §1).
    """
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    data = bytes(out[:size])
    if jpeg and size >= 4:
        data = b"\xff\xd8" + data[2:-2] + b"\xff\xd9"
    return data
