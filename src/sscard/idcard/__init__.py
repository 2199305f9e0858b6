"""Resident ID-card readers (第二代居民身份证阅读器) over a serial port (docs/card-reference.md §9).

The reader's security module speaks one frame format in both directions::

    AA AA AA 96 69 | length (2, big-endian) | command (2) or status (3) + data | XOR checksum (1)

``length`` counts everything after itself (command or status, data, checksum); the checksum is the
XOR of the length bytes through the last data byte.  A response's status is three bytes; the
third one carries the meaning (``90`` OK, ``9F`` card found, ``80`` find failed, ``81`` select
failed, ``41`` read failed).  :func:`build_request` reproduces every request frame of docs/card-reference.md §9
byte for byte (the tests hold them as vectors).

:class:`IdCardReader` runs the usual sequence — find, select, read — over any
:class:`~sscard.transports.stream.ByteStream` (a :class:`~sscard.transports.serial.SerialPort` in
production, a pseudo-terminal in the tests).  Before each command it drops bytes left over from
an earlier exchange; while waiting for an answer it skips stray bytes until the preamble (within
a byte budget).  Failures are typed (docs/design.md §10): a silent device is
:class:`~sscard.errors.DeviceTimeout`, a damaged or unsyncable answer
:class:`~sscard.errors.FrameError`, a vanished port :class:`~sscard.errors.DeviceRemoved` (from the
serial adapter), and the statuses map to :class:`~sscard.errors.IdCardNoCard`,
:class:`~sscard.errors.IdCardSelectFailed`, :class:`~sscard.errors.IdCardReadFailed` or
:class:`~sscard.errors.IdCardError`.

The text block (256 bytes, UCS-2 little-endian, fixed widths — docs/card-reference.md §9) becomes a frozen
:class:`IdCardRecord`; the 1024-byte photo stays in its proprietary WLT form (a vendor decoder
turns it into an image) and is passed through as bytes.  Foreigners' permanent residence cards and
Hong Kong/Macau/Taiwan residence permits use other layouts: they are recognised by their type flag
and refused with :class:`~sscard.errors.IdCardError` rather than mis-decoded.

The frames are :mod:`sscard.idcard.frames`, the text block :mod:`sscard.idcard.record`; this
module holds the reader and re-exports both.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import TYPE_CHECKING

from sscard.idcard.frames import (
    CMD_FIND,
    CMD_READ,
    CMD_SAM_STATUS,
    CMD_SELECT,
    COMMAND_NAMES,
    DRAIN_LIMIT,
    PREAMBLE,
    RESYNC_BUDGET,
    Response,
    build_request,
    checksum,
    parse_response,
    read_frame,
)
from sscard.idcard.record import (
    LONG_TERM,
    IdCardRecord,
    decode_text,
    parse_read_data,
)
from sscard.privacy import personal_data_shown

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
