"""The ID-card reader's frames (docs/card-reference.md §9): request building, checksums, answer parsing and a
resynchronising frame reader over any :class:`~sscard.transports.stream.ByteStream`.

Part of :mod:`sscard.idcard`, which re-exports every public name; the wire format alone, so it is
tested byte for byte without the record's decoding.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Final

from sscard.errors import (
    DeviceTimeout,
    FrameError,
    IdCardError,
    IdCardNoCard,
    IdCardReadFailed,
    IdCardSelectFailed,
)

if TYPE_CHECKING:
    from sscard.transports.stream import ByteStream

log = logging.getLogger("sscard.idcard")


# --- frames (docs/card-reference.md §9) ----------------------------------------------------------------------

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
#: Statuses that mean success.  docs/card-reference.md §9 gives ``9F`` for find and ``90`` for the rest; both are
#: accepted for every command, so a reader answering ``90`` to find is not refused.
SUCCESS: Final = frozenset({STATUS_OK, STATUS_FOUND})
_STATUS_ERRORS: Final = {
    STATUS_FIND_FAILED: IdCardNoCard,
    STATUS_SELECT_FAILED: IdCardSelectFailed,
    STATUS_READ_FAILED: IdCardReadFailed,
}
#: English log text for the other statuses security modules send, as vendors document them
#: (vendors' SAM protocol documents; not part of docs/card-reference.md §9).  Only used as ``detail``;
#: the code stays ID_CARD_ERROR.
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
    """XOR of every byte: the frame checksum over length..data (docs/card-reference.md §9)."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def build_request(cmd: bytes) -> bytes:
    """The request frame for a two-byte command (and any parameters after it).

    ``build_request(CMD_FIND) == bytes.fromhex("AAAAAA96690003200122")`` (docs/card-reference.md §9).
    """
    if len(cmd) < 2:
        raise ValueError("a command is at least two bytes")
    body = (len(cmd) + 1).to_bytes(2, "big") + cmd
    return PREAMBLE + body + bytes([checksum(body)])


@dataclasses.dataclass(frozen=True)
class Response:
    """A checked response frame: the three status bytes and the data (docs/card-reference.md §9)."""

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
