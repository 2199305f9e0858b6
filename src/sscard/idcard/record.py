"""The ID card's text block (docs/card-reference.md §9) decoded into :class:`IdCardRecord`, with its checks.

Part of :mod:`sscard.idcard`, which re-exports every public name; no I/O here, so the decoding is
tested (and fuzzed) on bytes alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import TYPE_CHECKING, Any, Final, Literal

from sscard.errors import (
    BadRecord,
    FrameError,
    IdCardError,
)
from sscard.idcard.frames import STATUS_OK
from sscard.ssc import checks, codes
from sscard.ssc.records import RecordWarning

if TYPE_CHECKING:
    pass


# --- the text block (docs/card-reference.md §9) --------------------------------------------------------------

TEXT_SIZE: Final = 256
#: (field, width in bytes) in order; UCS-2 little-endian, padded with spaces.
TEXT_FIELDS: Final = (
    ("name", 30),
    ("gender", 2),
    ("nation", 4),
    ("birth_date", 16),
    ("address", 70),
    ("id_number", 36),
    ("issuer", 30),
    ("valid_from", 16),
    ("valid_to", 16),
    ("reserved", 36),
)
#: Byte offset of the document-type flag inside the text block: one UCS-2 letter after the
#: other layouts' 248 bytes of fields (foreigner's permanent residence card: 120 + 2 + 30 + 6 + 30
#: + 16 + 16 + 16 + 4 + 8).  A resident ID card has a space (or nothing) there.
TYPE_FLAG_OFFSET: Final = 248
OTHER_LAYOUTS: Final = {
    "I": "foreigner's permanent residence card (2017 layout)",
    "Y": "foreigner's permanent residence card (2023 layout)",
    "J": "Hong Kong/Macau/Taiwan residence permit",
}
LONG_TERM: Final = "long-term"
_LONG_TERM_ZH: Final = "长期"
_ID_NUMBER = re.compile(r"^[0-9]{17}[0-9X]$")
_PADDING = " \x00"


def _field_offsets() -> dict[str, tuple[int, int]]:
    out, offset = {}, 0
    for name, width in TEXT_FIELDS:
        out[name] = (offset, offset + width)
        offset += width
    return out


_OFFSETS: Final = _field_offsets()

_LABELS_ZH: Final = {
    "birth_date": "出生日期",
    "valid_from": "有效期起始日期",
    "valid_to": "有效期截止日期",
    "text": "身份证文字信息",
}


@dataclasses.dataclass(frozen=True)
class IdCardRecord:
    """The readable content of a resident ID card (docs/card-reference.md §9), padding trimmed.

    ``gender``/``nation`` are the GB/T 2261.1 and GB/T 3304 labels (``None`` for a code the tables
    do not know, with a warning); the codes are kept beside them.  ``valid_to`` is a date or
    :data:`LONG_TERM` (the card says 长期).  ``photo_wlt`` is the undecoded WLT photo.
    """

    #: Personal data is out of ``repr`` (PIPL: a record in a log line or traceback shows no name,
    #: ID number, address or birth date).
    name: str = dataclasses.field(repr=False)
    gender_code: str
    nation_code: str = dataclasses.field(repr=False)
    birth_date: dt.date = dataclasses.field(repr=False)
    address: str = dataclasses.field(repr=False)
    id_number: str = dataclasses.field(repr=False)
    issuer: str
    valid_from: dt.date
    valid_to: dt.date | Literal["long-term"]
    photo_wlt: bytes = dataclasses.field(default=b"", repr=False)
    warnings: tuple[RecordWarning, ...] = ()

    @property
    def gender(self) -> str | None:
        return codes.gender_label(self.gender_code)

    @property
    def nation(self) -> str | None:
        return codes.nation_label(self.nation_code)

    def expired(self, today: dt.date | None = None) -> bool:
        """Past its validity end (never for a long-term card)."""
        return isinstance(self.valid_to, dt.date) and self.valid_to < (today or dt.date.today())

    def to_json(self) -> dict[str, Any]:
        """The CLI contract of ``sscard idcard read --json`` (docs/cli.md); the photo is left out."""
        return {
            "name": self.name,
            "gender": self.gender,
            "nation": self.nation,
            "birth_date": self.birth_date.isoformat(),
            "address": self.address,
            "id_number": self.id_number,
            "issuer": self.issuer,
            "valid_from": self.valid_from.isoformat(),
            "valid_to": self.valid_to if isinstance(self.valid_to, str) else self.valid_to.isoformat(),
            "warnings": [w.to_dict() for w in self.warnings],
        }


def _text(block: bytes, name: str) -> str:
    start, end = _OFFSETS[name]
    return block[start:end].decode("utf-16-le", errors="replace").strip(_PADDING)


def _date(value: str, name: str) -> dt.date:
    try:
        if not re.fullmatch(r"[0-9]{8}", value):
            raise ValueError
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise BadRecord(name, f"not a date YYYYMMDD: {value!r}", _LABELS_ZH[name]) from None


def decode_text(block: bytes, photo_wlt: bytes = b"", *, today: dt.date | None = None) -> IdCardRecord:
    """The 256-byte UCS-2 text block as a record, with its cross-checks as warnings.

    Raises IdCardError for another document's layout (type flag 'I', 'Y' or 'J'), BadRecord for a
    date that is not one.
    """
    if len(block) != TEXT_SIZE:
        raise FrameError(f"text block of {len(block)} bytes, expected {TEXT_SIZE}")
    flag = block[TYPE_FLAG_OFFSET : TYPE_FLAG_OFFSET + 2].decode("utf-16-le", errors="replace")
    if flag in OTHER_LAYOUTS:
        raise IdCardError(STATUS_OK, f"{OTHER_LAYOUTS[flag]} (type flag {flag!r}): layout not supported")
    valid_to_text = _text(block, "valid_to")
    record = IdCardRecord(
        name=_text(block, "name"),
        gender_code=_text(block, "gender"),
        nation_code=_text(block, "nation"),
        birth_date=_date(_text(block, "birth_date"), "birth_date"),
        address=_text(block, "address"),
        id_number=_text(block, "id_number"),
        issuer=_text(block, "issuer"),
        valid_from=_date(_text(block, "valid_from"), "valid_from"),
        valid_to=LONG_TERM if valid_to_text == _LONG_TERM_ZH else _date(valid_to_text, "valid_to"),
        photo_wlt=photo_wlt,
    )
    return _with_warnings(record, today or dt.date.today())


def _with_warnings(record: IdCardRecord, today: dt.date) -> IdCardRecord:
    out: list[RecordWarning] = []
    number = record.id_number
    if not _ID_NUMBER.match(number):
        out.append(
            RecordWarning(
                "ID_NUMBER_FORMAT",
                f"The ID number {number!r} is not 17 digits and a check character.",
                "公民身份号码格式不正确（应为17位数字加1位校验码）。",
            )
        )
    else:
        if checks.ssn_check_char(number[:17]) != number[17]:
            out.append(
                RecordWarning(
                    "ID_NUMBER_CHECK",
                    "The ID number fails its check character (GB 11643).",
                    "公民身份号码校验码不正确。",
                )
            )
        if number[6:14] != record.birth_date.strftime("%Y%m%d"):
            out.append(
                RecordWarning(
                    "BIRTH_DATE_MISMATCH",
                    "The birth date differs from the one inside the ID number.",
                    "出生日期与公民身份号码中的出生日期不一致。",
                )
            )
        if record.gender_code in ("1", "2") and int(number[16]) % 2 != int(record.gender_code) % 2:
            out.append(
                RecordWarning(
                    "GENDER_MISMATCH",
                    "The gender differs from the one encoded in the ID number.",
                    "性别与公民身份号码中的性别不一致。",
                )
            )
    if record.gender is None:
        out.append(
            RecordWarning(
                "UNKNOWN_GENDER_CODE",
                f"Unknown gender code {record.gender_code!r}.",
                f"未知性别代码{record.gender_code}。",
            )
        )
    if record.nation is None:
        out.append(
            RecordWarning(
                "UNKNOWN_NATION_CODE",
                f"Unknown nation code {record.nation_code!r}.",
                f"未知民族代码{record.nation_code}。",
            )
        )
    if isinstance(record.valid_to, dt.date) and record.valid_to < today:
        out.append(
            RecordWarning(
                "ID_CARD_EXPIRED",
                f"The ID card expired on {record.valid_to.isoformat()}.",
                f"此身份证已于{record.valid_to.isoformat()}过期。",
            )
        )
    if not out:
        return record
    return dataclasses.replace(record, warnings=tuple(out))


def parse_read_data(data: bytes, *, today: dt.date | None = None) -> IdCardRecord:
    """The data of a successful read response: text length (2), photo length (2), text, photo.

    Both lengths are big-endian like the frame length (256 and 1024 in the 1295-byte answer).
    """
    if len(data) < 4:
        raise FrameError(f"read answer of {len(data)} data bytes has no text and photo lengths")
    text_len, photo_len = int.from_bytes(data[0:2], "big"), int.from_bytes(data[2:4], "big")
    if 4 + text_len + photo_len != len(data):
        raise FrameError(f"text ({text_len}) and photo ({photo_len}) lengths do not add up to {len(data) - 4} bytes")
    return decode_text(data[4 : 4 + text_len], data[4 + text_len :], today=today)
