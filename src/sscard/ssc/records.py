"""Data elements of the SSSE application (docs/card-reference.md §3) as construct formats and frozen dataclasses.

Why one module of over 400 lines: the element table ties each tag to its construct format and
to its field in the typed records, so formats, table and records are read together; construct
stays inside this parser (docs/design.md §5).

Each element is declared once, in :data:`ELEMENTS`, as a TLV format (tag, length, value) whose
value codec validates and converts the wire bytes.  The codecs are plain Python, so that reading a
well-formed record needs no construct (start-up, issue 11 item 14: importing construct costs more
than the rest of the card application); construct wraps the same codecs (:attr:`ElementSpec.fmt`,
built when first used) for building records and for the full parse of a record that is not
well formed, which words every :class:`~sscard.errors.BadRecord`.  construct stays inside this module
(docs/design.md §5): callers get :class:`IssuerData` / :class:`CardholderData` or a
:class:`~sscard.errors.BadRecord` that names the element and says why — never a construct
``Container`` and never a half-parsed record.

Encodings (docs/card-reference.md §3): BCD dates ``YYYYMMDD``; BCD digit strings right-padded with ``F``
(issuer id) or ``FF`` (birthplace); names in GB18030 (a superset of GBK, so rare characters such
as 䶮 decode) padded with ``00`` or spaces, full name = tag 09 + tag 4E; ASCII for the rest.
We deliberately never "strip 00 and take low nibbles" (the vendor bug the reference warns about),
which is why card numbers with letters survive.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sscard.errors import BadRecord
from sscard.ssc import checks, codes

#: Registered application provider id of the SSC, bytes 3..7 of the card identification code.
SSC_RID = bytes.fromhex("D156000005")


# --- value codecs -----------------------------------------------------------------------------


class _Invalid(ValueError):
    """A value the element's rules refuse; the message is what :class:`BadRecord` reports."""


class _Value:
    """Base of the value codecs: enforces the element's allowed lengths before decoding."""

    def __init__(self, min_len: int, max_len: int) -> None:
        self.min_len = min_len
        self.max_len = max_len

    def parse_value(self, obj: bytes) -> Any:
        if not self.min_len <= len(obj) <= self.max_len:
            expected = str(self.max_len) if self.min_len == self.max_len else f"{self.min_len}-{self.max_len}"
            raise _Invalid(f"length {len(obj)}, expected {expected}")
        return self.decode(obj, "value")

    def build_value(self, obj: Any) -> bytes:
        raw = self.encode(obj, "value")
        if not self.min_len <= len(raw) <= self.max_len:
            raise _Invalid(f"encoded length {len(raw)} out of range")
        return raw

    def decode(self, raw: bytes, path: str) -> Any:
        raise NotImplementedError

    def encode(self, value: Any, path: str) -> bytes:
        raise NotImplementedError


def _bcd_digits(raw: bytes, path: str, pad: bool) -> str:
    """BCD nibbles to digits; with ``pad`` a trailing run of ``F`` nibbles is padding."""
    text = raw.hex().upper()
    if pad:
        text = text.rstrip("F")
    if not text.isdigit() and text:
        raise _Invalid(f"not BCD: {raw.hex().upper()}")
    return text


class BcdDate(_Value):
    """4-byte BCD ``YYYYMMDD``.  All-zero or all-``FF`` means "not set" and decodes to ``None``."""

    def __init__(self) -> None:
        super().__init__(4, 4)

    def decode(self, raw: bytes, path: str) -> dt.date | None:
        if raw in (b"\x00" * 4, b"\xff" * 4):
            return None
        digits = _bcd_digits(raw, path, pad=False)
        try:
            return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
        except ValueError as exc:
            raise _Invalid(f"not a calendar date: {digits}") from exc

    def encode(self, value: dt.date | None, path: str) -> bytes:
        return b"\x00" * 4 if value is None else bytes.fromhex(value.strftime("%Y%m%d"))


class BcdNumber(_Value):
    """BCD digit string, right-padded with ``F`` nibbles to the declared length."""

    def __init__(self, max_len: int, min_len: int = 1, pad: bool = True) -> None:
        super().__init__(min_len, max_len)
        self.pad = pad

    def decode(self, raw: bytes, path: str) -> str:
        return _bcd_digits(raw, path, pad=self.pad)

    def encode(self, value: str, path: str) -> bytes:
        if value and not value.isdigit():
            raise _Invalid(f"not digits: {value!r}")
        text = value + "F" * (2 * self.max_len - len(value)) if self.pad else value
        if len(text) % 2:
            raise _Invalid("odd number of digits without padding")
        return bytes.fromhex(text)


class Ascii(_Value):
    """Fixed-alphabet ASCII text, validated against ``pattern`` (whole string)."""

    def __init__(self, min_len: int, max_len: int, pattern: str) -> None:
        super().__init__(min_len, max_len)
        self.pattern = re.compile(pattern)

    def decode(self, raw: bytes, path: str) -> str:
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise _Invalid(f"not ASCII: {raw.hex().upper()}") from exc
        if not self.pattern.fullmatch(text):
            raise _Invalid(f"unexpected characters: {text!r}")
        return text

    def encode(self, value: str, path: str) -> bytes:
        if not self.pattern.fullmatch(value):
            raise _Invalid(f"unexpected characters: {value!r}")
        return value.encode("ascii")


class GbText(_Value):
    """GB18030 text padded with ``00`` (sometimes spaces) to the declared length.

    Decoded strictly: bytes that are not valid GB18030 are a bad record, never replaced with
    ``?`` — a wrong character in a name is worse than an error the front desk can see.
    """

    def __init__(self, max_len: int) -> None:
        super().__init__(0, max_len)

    def decode(self, raw: bytes, path: str) -> str:
        body = raw.rstrip(b"\x00 ")
        if b"\x00" in body:
            raise _Invalid("NUL byte inside the text")
        try:
            text = body.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise _Invalid(f"not GB18030: {raw.hex().upper()}") from exc
        if not text.isprintable():
            raise _Invalid(f"control characters in the text: {raw.hex().upper()}")
        return text

    def encode(self, value: str, path: str) -> bytes:
        if not value.isprintable():
            raise _Invalid("control characters in the text")
        raw = value.encode("gb18030")
        if len(raw) > self.max_len:
            raise _Invalid(f"{len(raw)} bytes, at most {self.max_len}")
        return raw.ljust(self.max_len, b"\x00")


@dataclass(frozen=True)
class IdentificationCode:
    """卡识别码 (tag 01): region code (3 bytes BCD), RID ``D156000005``, 8 card-specific bytes."""

    raw: bytes

    @property
    def region_code(self) -> str:
        return self.raw[:3].hex().upper()

    @property
    def rid(self) -> bytes:
        return self.raw[3:8]

    @property
    def hex(self) -> str:
        return self.raw.hex().upper()


class IdentificationCodeFormat(_Value):
    def __init__(self) -> None:
        super().__init__(16, 16)

    def decode(self, raw: bytes, path: str) -> IdentificationCode:
        _bcd_digits(raw[:3], path, pad=False)
        return IdentificationCode(bytes(raw))

    def encode(self, value: IdentificationCode, path: str) -> bytes:
        return value.raw


# --- element table ----------------------------------------------------------------------------


@functools.cache
def _adapter_class() -> Any:
    """construct's view of a value codec (an Adapter over the value bytes), made on first use."""
    import construct as cs

    class ValueAdapter(cs.Adapter):  # type: ignore[misc]
        def __init__(self, codec: _Value) -> None:
            super().__init__(cs.GreedyBytes)
            self.codec = codec

        def _decode(self, obj: bytes, context: Any, path: str) -> Any:
            try:
                return self.codec.parse_value(obj)
            except _Invalid as exc:
                raise cs.ValidationError(str(exc), path=path) from exc

        def _encode(self, obj: Any, context: Any, path: str) -> bytes:
            try:
                return self.codec.build_value(obj)
            except _Invalid as exc:
                raise cs.ValidationError(str(exc), path=path) from exc

    return ValueAdapter


@dataclass(frozen=True)
class ElementSpec:
    """One data element of docs/card-reference.md §3: where it lives, its name, and its TLV format."""

    tag: int
    ef: int
    key: str
    label_zh: str
    value: _Value

    @functools.cached_property
    def fmt(self) -> Any:
        """The element's construct TLV format (tag, length, value), built on first use."""
        import construct as cs

        return cs.Struct(
            "tag" / cs.Const(bytes((self.tag,))),
            "value" / cs.Prefixed(cs.Int8ub, _adapter_class()(self.value)),
            cs.Terminated,
        )

    @property
    def max_len(self) -> int:
        return self.value.max_len


_ELEMENT_LIST = (
    ElementSpec(0x01, 0x05, "identification_code", "卡识别码", IdentificationCodeFormat()),
    ElementSpec(0x02, 0x05, "card_type", "卡类别", Ascii(1, 1, r"[0-9A-Za-z]")),
    ElementSpec(0x03, 0x05, "spec_version", "规范版本", Ascii(4, 4, r"[0-9]\.[0-9]{2}")),
    ElementSpec(0x04, 0x05, "issuer_id", "初始化机构编号", BcdNumber(12)),
    ElementSpec(0x05, 0x05, "issue_date", "发卡日期", BcdDate()),
    ElementSpec(0x06, 0x05, "expiry_date", "卡有效期", BcdDate()),
    ElementSpec(0x07, 0x05, "card_number", "卡号", Ascii(9, 9, r"[0-9A-Z]{9}")),
    ElementSpec(0x08, 0x06, "ssn", "社会保障号码", Ascii(18, 18, r"[0-9]{17}[0-9X]")),
    ElementSpec(0x09, 0x06, "name", "姓名", GbText(30)),
    ElementSpec(0x4E, 0x06, "name_extension", "姓名扩展", GbText(20)),
    ElementSpec(0x0A, 0x06, "gender_code", "性别", Ascii(1, 1, r"[0-9]")),
    ElementSpec(0x0B, 0x06, "nation_code", "民族", BcdNumber(1, pad=False)),
    ElementSpec(0x0C, 0x06, "birthplace_code", "出生地", BcdNumber(3)),
    ElementSpec(0x0D, 0x06, "birth_date", "出生日期", BcdDate()),
)

#: Every element by tag.
ELEMENTS: Mapping[int, ElementSpec] = {spec.tag: spec for spec in _ELEMENT_LIST}
EF05_TAGS: tuple[int, ...] = tuple(s.tag for s in _ELEMENT_LIST if s.ef == 0x05)
EF06_TAGS: tuple[int, ...] = tuple(s.tag for s in _ELEMENT_LIST if s.ef == 0x06)


def parse_element(tag: int, data: bytes) -> Any:
    """Parse one READ RECORD response body (``tag len value``) into the element's Python value.

    Raises :class:`BadRecord` naming the element for anything malformed: wrong tag, a length
    that disagrees with the data, a value of the wrong size, non-BCD digits, invalid GB18030.
    """
    spec = ELEMENTS[tag]
    # Fast path (issue 7, docs/performance.md "Stack overhead"): a well-formed TLV -- our tag, then
    # a one-byte length that covers exactly the rest -- goes straight to the element's value
    # adapter, which is what construct's Struct/Const/Prefixed/Terminated would call with the very
    # same bytes; construct's generic machinery around it costs ~17 µs a record, ~15x the adapter.
    # Anything else, and any value the adapter refuses, takes the full construct parse below, so
    # every result and every BadRecord message is exactly what it was.
    if len(data) >= 2 and data[0] == tag and data[1] == len(data) - 2:
        try:
            return spec.value.parse_value(bytes(data[2:]))
        except _Invalid:
            pass
    import construct as cs

    try:
        return spec.fmt.parse(data).value
    except cs.ConstError:
        got = f"{data[0]:02X}" if data else "nothing"
        raise BadRecord(
            spec.key,
            f"expected tag {tag:02X}, got {got}",
            spec.label_zh,
            reason_zh=f"标签应为{tag:02X}，实为{got if data else '空'}",
        ) from None
    except cs.StreamError:
        raise BadRecord(
            spec.key, f"truncated record ({len(data)} bytes)", spec.label_zh, reason_zh=f"记录不完整（{len(data)}字节）"
        ) from None
    except cs.TerminatedError:
        raise BadRecord(spec.key, "trailing bytes after the value", spec.label_zh, reason_zh="值后有多余字节") from None
    except cs.ConstructError as exc:
        reason = str(exc).split("\n")[-1].split(") ", 1)[-1].strip() or type(exc).__name__
        raise BadRecord(spec.key, reason, spec.label_zh) from None


def build_element(tag: int, value: Any) -> bytes:
    """The exact bytes ``parse_element`` reads back as ``value`` (used by tests and tooling)."""
    return bytes(ELEMENTS[tag].fmt.build({"value": value}))


# --- records and warnings ---------------------------------------------------------------------


@dataclass(frozen=True)
class RecordWarning:
    """Something the card says that is readable but wrong or noteworthy; shown, never fatal."""

    code: str
    message: str
    message_zh: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "message_zh": self.message_zh}


@dataclass(frozen=True)
class IssuerData:
    """EF05, 发卡机构数据 (docs/card-reference.md §3, tags 01–07).  ``None`` where the card has no such record."""

    identification_code: IdentificationCode | None = None
    card_type: str | None = None
    spec_version: str | None = None
    issuer_id: str | None = None
    issue_date: dt.date | None = None
    expiry_date: dt.date | None = None
    #: Personal data (the holder's account number): out of ``repr``, so a log line or a traceback
    #: that shows the object does not show it (PIPL, docs/cli.md "Personal data in logs").
    card_number: str | None = field(default=None, repr=False)

    @property
    def region_code(self) -> str | None:
        return self.identification_code.region_code if self.identification_code else None


@dataclass(frozen=True)
class CardholderData:
    """EF06, 持卡人基本信息 (docs/card-reference.md §3, tags 08, 09, 4E, 0A–0D).

    Personal data: every element but the gender code is out of ``repr`` (PIPL; they are in the
    fields and in ``to_json`` output, which is what a caller asked for)."""

    ssn: str | None = field(default=None, repr=False)
    name: str | None = field(default=None, repr=False)
    name_extension: str | None = field(default=None, repr=False)
    gender_code: str | None = None
    nation_code: str | None = field(default=None, repr=False)
    birthplace_code: str | None = field(default=None, repr=False)
    birth_date: dt.date | None = field(default=None, repr=False)

    @property
    def full_name(self) -> str | None:
        """姓名 + 姓名扩展 (docs/card-reference.md §3: full name = 09 + 4E)."""
        if self.name is None and self.name_extension is None:
            return None
        return ((self.name or "") + (self.name_extension or "")).strip()

    @property
    def gender(self) -> str | None:
        return codes.gender_label(self.gender_code)

    @property
    def nation(self) -> str | None:
        return codes.nation_label(self.nation_code)


def issuer_from_elements(values: Mapping[int, Any]) -> IssuerData:
    return IssuerData(**{ELEMENTS[tag].key: value for tag, value in values.items() if tag in EF05_TAGS})


def cardholder_from_elements(values: Mapping[int, Any]) -> CardholderData:
    return CardholderData(**{ELEMENTS[tag].key: value for tag, value in values.items() if tag in EF06_TAGS})


def validate(issuer: IssuerData, holder: CardholderData | None, today: dt.date) -> list[RecordWarning]:
    """Cross-checks that make a warning, not an error (docs/card-reference.md §3 check characters)."""
    out: list[RecordWarning] = []
    if issuer.card_number and not checks.card_number_valid(issuer.card_number):
        out.append(
            RecordWarning(
                "CARD_NUMBER_CHECK",
                f"Card number {issuer.card_number} fails its check character.",
                f"卡号{issuer.card_number}校验位不正确。",
            )
        )
    if issuer.identification_code and issuer.identification_code.rid != SSC_RID:
        out.append(
            RecordWarning(
                "IDENTIFICATION_CODE_RID",
                "The card identification code does not carry the SSC RID D156000005.",
                "卡识别码中的RID不是D156000005。",
            )
        )
    if issuer.expiry_date and issuer.expiry_date < today:
        out.append(
            RecordWarning(
                "CARD_EXPIRED",
                f"The card expired on {issuer.expiry_date.isoformat()}.",
                f"此卡已于{issuer.expiry_date.isoformat()}过期。",
            )
        )
    if holder is None:
        return out
    if holder.ssn and not checks.ssn_valid(holder.ssn):
        out.append(
            RecordWarning(
                "SSN_CHECK",
                "The social security number fails its check character.",
                "社会保障号码校验位不正确。",
            )
        )
    if holder.ssn and holder.birth_date and holder.ssn[6:14] != holder.birth_date.strftime("%Y%m%d"):
        out.append(
            RecordWarning(
                "BIRTH_DATE_MISMATCH",
                "The birth date differs from the one inside the social security number.",
                "出生日期与社会保障号码中的出生日期不一致。",
            )
        )
    if holder.gender_code and holder.gender is None:
        out.append(
            RecordWarning(
                "UNKNOWN_GENDER_CODE",
                f"Unknown gender code {holder.gender_code}.",
                f"未知性别代码{holder.gender_code}。",
            )
        )
    if holder.nation_code and holder.nation is None:
        out.append(
            RecordWarning(
                "UNKNOWN_NATION_CODE",
                f"Unknown nation code {holder.nation_code}.",
                f"未知民族代码{holder.nation_code}。",
            )
        )
    return out
