"""Resident ID-card readers (第二代居民身份证阅读器) over a serial port (reference §7).

The reader's security module speaks one frame format in both directions::

    AA AA AA 96 69 | length (2, big-endian) | command (2) or status (3) + data | XOR checksum (1)

``length`` counts everything after itself (command or status, data, checksum); the checksum is the
XOR of the length bytes through the last data byte.  A response's status is three bytes; the
third one carries the meaning (``90`` OK, ``9F`` card found, ``80`` find failed, ``81`` select
failed, ``41`` read failed).  :func:`build_request` reproduces every request frame of reference §7
byte for byte (the tests hold them as vectors).

:class:`IdCardReader` runs the usual sequence — find, select, read — over any
:class:`~sscard.transports.stream.ByteStream` (a :class:`~sscard.transports.serial.SerialPort` in
production, a pseudo-terminal in the tests).  Before each command it drops bytes left over from
an earlier exchange; while waiting for an answer it skips stray bytes until the preamble (within
a byte budget).  Failures are typed (STYLE.md §10): a silent device is
:class:`~sscard.errors.DeviceTimeout`, a damaged or unsyncable answer
:class:`~sscard.errors.FrameError`, a vanished port :class:`~sscard.errors.DeviceRemoved` (from the
serial adapter), and the statuses map to :class:`~sscard.errors.IdCardNoCard`,
:class:`~sscard.errors.IdCardSelectFailed`, :class:`~sscard.errors.IdCardReadFailed` or
:class:`~sscard.errors.IdCardError`.

The text block (256 bytes, UCS-2 little-endian, fixed widths — reference §7) becomes a frozen
:class:`IdCardRecord`; the 1024-byte photo stays in its proprietary WLT form (a vendor decoder
turns it into an image) and is passed through as bytes.  Foreigners' permanent residence cards and
Hong Kong/Macau/Taiwan residence permits use other layouts: they are recognised by their type flag
and refused with :class:`~sscard.errors.IdCardError` rather than mis-decoded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Final, Literal

from sscard.errors import (
    BadRecord,
    DeviceTimeout,
    FrameError,
    IdCardError,
    IdCardNoCard,
    IdCardReadFailed,
    IdCardSelectFailed,
)
from sscard.privacy import personal_data_shown
from sscard.ssc import checks, codes
from sscard.ssc.records import RecordWarning

if TYPE_CHECKING:
    from sscard.transports.stream import ByteStream

log = logging.getLogger("sscard.idcard")

__all__ = [
    "CMD_FIND",
    "CMD_READ",
    "CMD_SAM_STATUS",
    "CMD_SELECT",
    "LONG_TERM",
    "PREAMBLE",
    "IdCardReader",
    "IdCardRecord",
    "Response",
    "build_request",
    "checksum",
    "decode_text",
    "parse_read_data",
    "parse_response",
    "read_frame",
]

# --- frames (reference §7) ----------------------------------------------------------------------

PREAMBLE: Final = bytes.fromhex("AAAAAA9669")
#: Preamble + the two length bytes: what must arrive before the rest of a frame can be awaited.
HEADER_SIZE: Final = len(PREAMBLE) + 2

CMD_FIND: Final = bytes.fromhex("2001")  # 寻找证/卡
CMD_SELECT: Final = bytes.fromhex("2002")  # 选取证/卡
CMD_READ: Final = bytes.fromhex("3001")  # 读文字信息和相片信息
CMD_SAM_STATUS: Final = bytes.fromhex("11FF")  # SAM 状态检测
COMMAND_NAMES: Final = {CMD_FIND: "find", CMD_SELECT: "select", CMD_READ: "read", CMD_SAM_STATUS: "SAM status"}

STATUS_OK: Final = 0x90
STATUS_FOUND: Final = 0x9F
STATUS_FIND_FAILED: Final = 0x80
STATUS_SELECT_FAILED: Final = 0x81
STATUS_READ_FAILED: Final = 0x41
#: Statuses that mean success.  Reference §7 gives ``9F`` for find and ``90`` for the rest; both are
#: accepted for every command, so a reader answering ``90`` to find is not refused.
SUCCESS: Final = frozenset({STATUS_OK, STATUS_FOUND})
_STATUS_ERRORS: Final = {
    STATUS_FIND_FAILED: IdCardNoCard,
    STATUS_SELECT_FAILED: IdCardSelectFailed,
    STATUS_READ_FAILED: IdCardReadFailed,
}
#: English log text for the other statuses security modules send, as vendors document them
#: (vendors' SAM protocol documents; not part of reference §7).  Only used as ``detail``; the code stays ID_CARD_ERROR.
STATUS_TEXT: Final = {
    0x10: "the module received a bad checksum",
    0x11: "the module received a bad length",
    0x21: "the module did not understand the command",
    0x24: "unrecognised error",
    0x31: "the card failed to authenticate the reader",
    0x32: "the reader failed to authenticate the card",
    0x33: "information verification failed",
    0x40: "wrong card",
    0x47: "getting a random number failed",
    0x60: "SAM self-test failed: it accepts no command",
    0x66: "SAM not authorised for use",
    0x91: "the card holds no such item",
}

#: Smallest response ``length``: three status bytes and the checksum.
MIN_RESPONSE_LENGTH: Final = 4
#: Largest response ``length`` accepted: the biggest known answer (text, photo and fingerprints,
#: about 2.3 KB) with room to spare.  A larger one is a damaged length field.
MAX_RESPONSE_LENGTH: Final = 4096
#: Stray bytes skipped while looking for a preamble before giving up with FrameError.
RESYNC_BUDGET: Final = 2048
#: At most this many leftover bytes are dropped before a command (a babbling device is not drained forever).
DRAIN_LIMIT: Final = 65536


def checksum(data: bytes) -> int:
    """XOR of every byte: the frame checksum over length..data (reference §7)."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def build_request(cmd: bytes) -> bytes:
    """The request frame for a two-byte command (and any parameters after it).

    ``build_request(CMD_FIND) == bytes.fromhex("AAAAAA96690003200122")`` (reference §7).
    """
    if len(cmd) < 2:
        raise ValueError("a command is at least two bytes")
    body = (len(cmd) + 1).to_bytes(2, "big") + cmd
    return PREAMBLE + body + bytes([checksum(body)])


@dataclasses.dataclass(frozen=True)
class Response:
    """A checked response frame: the three status bytes and the data (reference §7)."""

    sw: bytes
    data: bytes = dataclasses.field(repr=False)

    @property
    def status(self) -> int:
        """The status byte that carries the meaning (the third one: ``90``, ``9F``, ``80``…)."""
        return self.sw[2]

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS

    def raise_for_status(self, command: bytes = b"") -> None:
        """The typed error of a failure status; nothing for ``90``/``9F``."""
        if self.ok:
            return
        name = COMMAND_NAMES.get(command, command.hex().upper() or "command")
        error = _STATUS_ERRORS.get(self.status)
        if error is not None:
            raise error(f"{name}: status {self.sw.hex().upper()}")
        text = STATUS_TEXT.get(self.status, "unknown status")
        raise IdCardError(self.status, f"{name}: {text} (status {self.sw.hex().upper()})")


def _check_length(length: int) -> None:
    if not MIN_RESPONSE_LENGTH <= length <= MAX_RESPONSE_LENGTH:
        raise FrameError(f"implausible length {length}")


def parse_response(frame: bytes) -> Response:
    """One complete response frame, checked: preamble, length, checksum."""
    if not frame.startswith(PREAMBLE):
        raise FrameError("no preamble AA AA AA 96 69")
    if len(frame) < HEADER_SIZE:
        raise FrameError(f"frame of {len(frame)} bytes is shorter than its header")
    length = int.from_bytes(frame[5:7], "big")
    _check_length(length)
    if len(frame) != HEADER_SIZE + length:
        raise FrameError(f"length field says {length} bytes follow, frame has {len(frame) - HEADER_SIZE}")
    expected = checksum(frame[5:-1])
    if frame[-1] != expected:
        raise FrameError(f"checksum {frame[-1]:02X}, computed {expected:02X}")
    return Response(sw=bytes(frame[7:10]), data=bytes(frame[10:-1]))


def _prefix_kept(buf: bytearray) -> int:
    """Length of the longest tail of ``buf`` that may be the start of a preamble."""
    for keep in range(min(len(buf), len(PREAMBLE) - 1), 0, -1):
        if buf.endswith(PREAMBLE[:keep]):
            return keep
    return 0


def read_frame(stream: ByteStream, timeout: float, *, budget: int = RESYNC_BUDGET, what: str = "answer") -> bytes:
    """The next complete, checked response frame from ``stream``.

    Stray bytes before the preamble are skipped, and so is a false start — a preamble whose
    length is implausible, or whose frame fails its checksum while another preamble follows
    inside it — at most ``budget`` bytes in all, else FrameError.  It reads exactly what the
    header announces, so nothing of a following frame is consumed.  Nothing at all within
    ``timeout`` seconds is DeviceTimeout; a frame that fails its checksum, or bytes that never
    became a whole frame, are FrameError (a wrong baud rate looks like that).
    """
    deadline = time.monotonic() + timeout
    buf = bytearray()
    skipped = 0
    problem = ""

    def skip(count: int) -> None:
        nonlocal skipped
        skipped += count
        del buf[:count]
        if skipped > budget:
            raise FrameError(f"no frame start within {budget} bytes")

    while True:
        start = buf.find(PREAMBLE)
        drop = start if start >= 0 else len(buf) - _prefix_kept(buf)
        if drop:
            skip(drop)
        if len(buf) >= HEADER_SIZE:
            length = int.from_bytes(buf[5:7], "big")
            if not MIN_RESPONSE_LENGTH <= length <= MAX_RESPONSE_LENGTH:
                problem = f"implausible length {length}"
                skip(1)  # a false start: look for the next preamble
                continue
            need = HEADER_SIZE + length - len(buf)
            if need <= 0:
                frame = bytes(buf)
                try:
                    parse_response(frame)
                except FrameError as exc:
                    again = buf.find(PREAMBLE, 1)
                    if again < 0:
                        again = len(buf) - _prefix_kept(buf)  # a preamble may be starting at the end
                    if again >= len(buf):
                        raise
                    problem = str(exc.fields["problem"])
                    skip(again)
                    continue
                if skipped:
                    log.warning("%s: skipped %d stray bytes before the frame", stream.name, skipped)
                return frame
        else:
            need = HEADER_SIZE - len(buf)
        remaining = deadline - time.monotonic()
        chunk = stream.read(need, remaining) if remaining > 0 else b""
        if chunk:
            buf += chunk
            continue
        if time.monotonic() < deadline:
            continue
        if not buf and not skipped:
            raise DeviceTimeout(stream.name, f"no {what} within {timeout:g} s")
        if len(buf) >= HEADER_SIZE:
            total = HEADER_SIZE + int.from_bytes(buf[5:7], "big")
            raise FrameError(f"truncated frame: {len(buf)} of {total} bytes within {timeout:g} s")
        if buf.startswith(PREAMBLE):
            raise FrameError(f"truncated frame: {len(buf)} bytes, no length within {timeout:g} s")
        raise FrameError(problem or f"{skipped + len(buf)} bytes without a frame start within {timeout:g} s")


# --- the text block (reference §7) --------------------------------------------------------------

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
    """The readable content of a resident ID card (reference §7), padding trimmed.

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


# --- the reader ---------------------------------------------------------------------------------


class IdCardReader:
    """An ID-card reader on a byte stream: one command, one answer, ``timeout`` seconds each.

    Thread-safe: one exchange (and one :meth:`read_card` sequence) at a time.  The stream is not
    closed here; reopening a port that came back (``SerialPort.reopen``) is its owner's job.
    """

    def __init__(self, stream: ByteStream, timeout: float = 3.0, *, resync_budget: int = RESYNC_BUDGET) -> None:
        self.stream = stream
        self.timeout = timeout
        self.resync_budget = resync_budget
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"IdCardReader({self.stream.name!r}, timeout={self.timeout})"

    def exchange(self, cmd: bytes) -> Response:
        """Send one command and return its checked answer, whatever its status."""
        name = COMMAND_NAMES.get(cmd, cmd.hex().upper())
        with self._lock:
            self._drain()
            request = build_request(cmd)
            log.debug("%s > %s", self.stream.name, request.hex().upper())
            self.stream.write(request)
            frame = read_frame(self.stream, self.timeout, budget=self.resync_budget, what=f"answer to {name}")
            response = parse_response(frame)
            # Only the header: a read answer holds a resident's personal data (the text block: name,
            # ID number, address...; the photo), unless the process opted in (sscard.privacy).
            shown = frame if personal_data_shown() else frame[:10]
            log.debug("%s < %s (%d data bytes)", self.stream.name, shown.hex().upper(), len(response.data))
            return response

    def _command(self, cmd: bytes) -> Response:
        response = self.exchange(cmd)
        response.raise_for_status(cmd)
        return response

    def _drain(self) -> None:
        dropped = 0
        while dropped < DRAIN_LIMIT:
            chunk = self.stream.read(4096, 0)
            if not chunk:
                break
            dropped += len(chunk)
        if dropped:
            log.warning("%s: dropped %d leftover bytes before the command", self.stream.name, dropped)

    def find(self) -> None:
        """寻找证/卡: IdCardNoCard when no card is on the reader (status 80)."""
        self._command(CMD_FIND)

    def select(self) -> None:
        """选取证/卡: IdCardSelectFailed (status 81) when the card cannot be selected."""
        self._command(CMD_SELECT)

    def read(self, *, today: dt.date | None = None) -> IdCardRecord:
        """读文字和相片信息 of the selected card: IdCardReadFailed on status 41."""
        return parse_read_data(self._command(CMD_READ).data, today=today)

    def sam_status(self) -> None:
        """SAM 状态检测: returns when the security module is ready, IdCardError with its status if not."""
        self._command(CMD_SAM_STATUS)

    def read_card(self, *, today: dt.date | None = None) -> IdCardRecord:
        """The usual sequence: find, select, read."""
        with self._lock:
            self.find()
            self.select()
            return self.read(today=today)
