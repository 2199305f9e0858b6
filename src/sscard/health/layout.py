"""The resident health card's records as data: the layout file and the one TLV record parser.

Why a data file and not a table in code: the reference confirms six EF05 tags and nothing of
their lengths or encodings, and nothing of EF06 at all (docs/card-reference.md, health card
section).  Every uncertain choice — the APDUs, the read mode, each element's tag, length and
encoding — is a line in ``data/layout.toml`` marked ``confirmed = false`` where it is a guess, so a
deployment corrects a file, not the parser (docs/health-card.md).

The parser is deliberately small and strict.  A record is ``tag, length, value``; anything else —
another tag, a length byte that disagrees with the data, a value outside the element's lengths,
non-BCD digits, text that is not GB18030 — is a :class:`~sscard.errors.BadRecord` naming the
element, and a record flagged invalid (its first byte, or its whole value, ``FF``: the vendor
libraries' return code 112) is the :class:`RecordFlaggedInvalid` kind of it.  Never a half-parsed
value.  construct is not used: the architecture keeps it inside the SSC's record module, and a
one-byte-tag TLV needs no parser library.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sscard import _toml as tomllib
from sscard.errors import BadRecord, ConfigError, SscardError

#: The encodings an element may declare (the comment at the top of ``data/layout.toml``).
ENCODINGS = ("an", "cn", "bcd_date", "gbk", "binary")
READ_MODES = ("sfi", "select")
#: Bundled layout, relative to the ``sscard.health`` package.
LAYOUT_RESOURCE = "data/layout.toml"


class RecordFlaggedInvalid(BadRecord):
    """A record the card itself marks invalid (flag ``FF``; vendor return code 112).

    Still ``BAD_RECORD`` to every caller that branches on the code; the subclass lets the vendor
    format (:mod:`sscard.national.health`) tell it from a malformed record (103) without reading
    the message.  It belongs in :mod:`sscard.errors` once the card-application seam lands.
    """

    message_en = "The card marks its {element} record as invalid (flag {flag})."
    message_zh_text = "卡片将{element_zh}记录标记为无效（标志{flag}）。"

    def __init__(self, element: str, element_zh: str, flag: int) -> None:
        self.element, self.reason, self.flag = element, f"record flagged invalid ({flag:02X})", flag
        # BadRecord's constructor has no place for the flag, so the base sets every field at once.
        SscardError.__init__(self, None, element=element, reason=self.reason, element_zh=element_zh, flag=f"{flag:02X}")


@dataclass(frozen=True)
class Element:
    """One data element of EF05 or EF06, as the layout file declares it."""

    file: str
    tag: int
    key: str
    name_zh: str
    name_en: str
    min_len: int
    max_len: int
    encoding: str
    pattern: re.Pattern[str] | None
    confirmed: bool
    #: Personal data (the ID number, the name, the birth date): errors never quote its bytes.
    personal: bool = False

    def error(self, reason: str) -> BadRecord:
        return BadRecord(self.key, reason, self.name_zh)

    def shown(self, text: str) -> str:
        """``text`` for an error message, or a placeholder when the element is personal data."""
        return "(withheld: personal data)" if self.personal else text


@dataclass(frozen=True)
class FileSpec:
    name: str
    fid: int
    needs_auth: bool

    @property
    def sfi(self) -> int:
        """The short file identifier: the FID's low five bits (docs/card-reference.md)."""
        return self.fid & 0x1F


@dataclass(frozen=True)
class ApduChoices:
    """The APDU choices of ``[apdu]``, every one unconfirmed for this card, hence data."""

    select_ddf1: bytes
    select_ef: bytes
    read_mode: str
    le_extra: int
    invalid_flag: int


@dataclass(frozen=True)
class Layout:
    """The whole layout file: APDU choices, files, and elements in file order."""

    apdu: ApduChoices
    files: Mapping[str, FileSpec]
    elements: tuple[Element, ...]
    source: str

    def of_file(self, file: str) -> tuple[Element, ...]:
        return tuple(e for e in self.elements if e.file == file)

    def element(self, file: str, key: str) -> Element:
        for e in self.elements:
            if e.file == file and e.key == key:
                return e
        raise KeyError(f"{file}.{key}")


# --- loading --------------------------------------------------------------------------------


def load_layout(path: str | Path | None = None) -> Layout:
    """The bundled layout (parsed once), or a corrected copy by path; ConfigError naming what is wrong."""
    if path is None:
        return _bundled()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read health-card layout {path}: {exc}") from None
    return _load(text, str(path))


@functools.cache
def _bundled() -> Layout:
    text = resources.files("sscard.health").joinpath(LAYOUT_RESOURCE).read_text(encoding="utf-8")
    return _load(text, f"sscard.health/{LAYOUT_RESOURCE}")


def _load(text: str, source: str) -> Layout:
    try:
        return _parse(tomllib.loads(text), source)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"health-card layout {source}: not valid TOML ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"health-card layout {source}: {exc}") from None


def _hex(value: object, what: str, length: int | None = None) -> bytes:
    raw = bytes.fromhex(str(value))
    if length is not None and len(raw) != length:
        raise ValueError(f"{what} must be {length} bytes of hex, not {value!r}")
    return raw


def _parse(data: Mapping[str, Any], source: str) -> Layout:
    apdu = data["apdu"]
    choices = ApduChoices(
        select_ddf1=_hex(apdu["select_ddf1"], "apdu.select_ddf1", 7),
        select_ef=_hex(apdu["select_ef"], "apdu.select_ef", 4),
        read_mode=str(apdu.get("read_mode", "sfi")),
        le_extra=int(apdu.get("le_extra", 2)),
        invalid_flag=int(apdu.get("invalid_flag", 0xFF)),
    )
    if choices.read_mode not in READ_MODES:
        raise ValueError(f"apdu.read_mode must be one of {READ_MODES}, not {choices.read_mode!r}")
    if not 0 <= choices.invalid_flag <= 0xFF:
        raise ValueError("apdu.invalid_flag must be a byte")
    files = {
        name: FileSpec(name, int(table["fid"]), bool(table.get("needs_auth", False)))
        for name, table in data["files"].items()
    }
    if "EF05" not in files or "EF06" not in files:
        raise ValueError("[files] needs EF05 and EF06")
    elements: list[Element] = []
    seen: set[tuple[str, int]] = set()
    for index, table in enumerate(data["elements"]):
        where = f"elements[{index}]"
        file = str(table["file"])
        if file not in files:
            raise ValueError(f"{where}.file {file!r} is not one of the [files] tables")
        tag = _hex(table["tag"], f"{where}.tag", 1)[0]
        if (file, tag) in seen:
            raise ValueError(f"{where}: tag {tag:02X} appears twice in {file}")
        seen.add((file, tag))
        encoding = str(table["encoding"])
        if encoding not in ENCODINGS:
            raise ValueError(f"{where}.encoding must be one of {ENCODINGS}, not {encoding!r}")
        min_len, max_len = int(table["min_len"]), int(table["max_len"])
        if not 0 <= min_len <= max_len <= 0xFF - choices.le_extra:
            raise ValueError(f"{where}: lengths {min_len}..{max_len} out of order or beyond a short Le")
        if encoding == "bcd_date" and (min_len, max_len) != (4, 4):
            raise ValueError(f"{where}: a bcd_date is 4 bytes")
        pattern = table.get("pattern")
        elements.append(
            Element(
                file=file,
                tag=tag,
                key=str(table["key"]),
                name_zh=str(table["name_zh"]),
                name_en=str(table["name_en"]),
                min_len=min_len,
                max_len=max_len,
                encoding=encoding,
                pattern=re.compile(str(pattern)) if pattern is not None else None,
                confirmed=bool(table["confirmed"]),
                personal=bool(table.get("personal", False)),
            )
        )
    return Layout(choices, MappingProxyType(files), tuple(elements), source)


# --- parsing one record ---------------------------------------------------------------------


def parse_record(element: Element, data: bytes, invalid_flag: int = 0xFF) -> Any:
    """One READ RECORD answer (``tag len value``) as the element's Python value.

    ``str`` for an/cn/gbk, :class:`datetime.date` (or ``None`` when all ``00``) for bcd_date, and
    upper-case hex for binary.  Raises BadRecord (RecordFlaggedInvalid for the ``FF`` flag).
    """
    if data[:1] == bytes((invalid_flag,)) and element.tag != invalid_flag:
        raise RecordFlaggedInvalid(element.key, element.name_zh, invalid_flag)
    if len(data) < 2:
        raise element.error(f"truncated record ({len(data)} bytes)")
    if data[0] != element.tag:
        raise element.error(f"expected tag {element.tag:02X}, got {data[0]:02X}")
    if data[1] != len(data) - 2:
        raise element.error(f"length byte says {data[1]}, the record holds {len(data) - 2}")
    value = bytes(data[2:])
    if not element.min_len <= len(value) <= element.max_len:
        lo, hi = element.min_len, element.max_len
        expected = str(hi) if lo == hi else f"{lo}-{hi}"
        raise element.error(f"length {len(value)}, expected {expected}")
    if value and value == bytes((invalid_flag,)) * len(value):
        raise RecordFlaggedInvalid(element.key, element.name_zh, invalid_flag)
    decoded = _DECODERS[element.encoding](element, value)
    if element.pattern is not None and isinstance(decoded, str) and not element.pattern.fullmatch(decoded):
        raise element.error(f"unexpected characters: {element.shown(repr(decoded))}")
    return decoded


def _an(element: Element, value: bytes) -> str:
    body = value.rstrip(b"\x00 ")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise element.error(f"not ASCII: {element.shown(value.hex().upper())}") from None
    if not text.isprintable():
        raise element.error(f"control characters: {element.shown(value.hex().upper())}")
    return text


def _cn(element: Element, value: bytes) -> str:
    digits = value.hex().upper().rstrip("F")
    if not digits.isdigit() and digits:
        raise element.error(f"not BCD: {element.shown(value.hex().upper())}")
    return digits


def _bcd_date(element: Element, value: bytes) -> dt.date | None:
    if value == bytes(4):
        return None
    digits = value.hex().upper()
    if not digits.isdigit():
        raise element.error(f"not BCD: {element.shown(digits)}")
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise element.error(f"not a calendar date: {element.shown(digits)}") from None


def _gbk(element: Element, value: bytes) -> str:
    body = value.rstrip(b"\x00 ")
    if b"\x00" in body:
        raise element.error("NUL byte inside the text")
    try:
        text = body.decode("gb18030")
    except UnicodeDecodeError:
        raise element.error(f"not GB18030: {element.shown(value.hex().upper())}") from None
    if not text.isprintable():
        raise element.error(f"control characters: {element.shown(value.hex().upper())}")
    return text


def _binary(element: Element, value: bytes) -> str:
    return value.hex().upper()


_DECODERS = {"an": _an, "cn": _cn, "bcd_date": _bcd_date, "gbk": _gbk, "binary": _binary}


# --- building one record (tests, tooling) ---------------------------------------------------


def build_record(element: Element, value: Any) -> bytes:
    """The exact bytes :func:`parse_record` reads back as ``value``: the round trip of the tests.

    Fixed-length text is padded with ``00`` to ``min_len``; BCD digit strings with ``F`` to
    ``max_len`` (an odd count of digits gets one ``F``).
    """
    if element.encoding == "an":
        raw = str(value).encode("ascii").ljust(element.min_len, b"\x00")
    elif element.encoding == "gbk":
        raw = str(value).encode("gb18030").ljust(element.min_len, b"\x00")
    elif element.encoding == "cn":
        text = str(value)
        raw = bytes.fromhex(text + "F" * (2 * element.max_len - len(text)))
    elif element.encoding == "bcd_date":
        raw = bytes(4) if value is None else bytes.fromhex(value.strftime("%Y%m%d"))
    else:
        raw = bytes.fromhex(str(value))
    if not element.min_len <= len(raw) <= element.max_len:
        raise ValueError(f"{element.key}: {len(raw)} bytes do not fit {element.min_len}..{element.max_len}")
    return bytes((element.tag, len(raw))) + raw
