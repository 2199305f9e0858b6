"""The wire protocol of libSSCardDriver.so's socket, and the errors of a call (docs/native.md).

    request   SSCARD1 TAB FUNCTION TAB ENCODING TAB OUTSIZE TAB PIN_TIMEOUT_MS [TAB ARG]... LF
    answer    RC TAB LENGTH LF, then LENGTH bytes of pOutInfo (encoded, no NUL)

Numbers to parse on the C side, so it needs no JSON parser.  A call with several outputs
(libHeaSecReadInfo's ReadSFZ: the text, the business string, the photo) is answered with one
length per part, the parts one after the other (:func:`encode_parts`)::

    answer    RC TAB LENGTH1 TAB LENGTH2 ... LF, then the parts

The errors of a call are :mod:`sscard.errors` classes with rows in its one table:
``PIN_ENTRY_CANCELLED`` (−31), ``PIN_ENTRY_TIMEOUT`` (−32), ``PARAMETER_ERROR`` (−14).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from sscard.errors import ParameterError, PinEntryCancelled, PinEntryTimeout, SscardError
from sscard.national import return_code

PROTOCOL = "SSCARD1"
DEFAULT_SOCKET = "/run/sscard/sscard.sock"
#: The longest request line accepted (the C library sends far less).
MAX_REQUEST = 64 * 1024
#: The longest PIN wait a client may ask for (s).
MAX_PIN_TIMEOUT = 600.0
#: Seconds a connected client has to send its request line.
REQUEST_TIMEOUT = 5.0
#: The most a byte part (a photo) may hold; the library's buffer for it is this size.
MAX_BYTES_PART = 64 * 1024

#: The outputs of a call with several: text (in the caller's encoding) or bytes (as they are).
Parts = tuple[str | bytes, ...]
#: What one call answers: its return code and pOutInfo's text, or its parts.
Answer = tuple[int, str | Parts]


#: The socket's "bad call" error (national −14): :class:`sscard.errors.ParameterError`.
BadCall = ParameterError
#: The national code of a bad call, and of a result that does not fit pOutInfo.
PARAMETER_CODE = -14

#: National codes of errors the one table (sscard.errors.ERROR_TABLE) gives none or another.
EXTRA_RETURN_CODES = {
    "SERVICE_BUSY": -11,  # queued longer than [service] queue_timeout behind other clients: the reader is busy
}


def national_code(error: SscardError) -> int:
    """The national return code of any error (the one table's, :data:`EXTRA_RETURN_CODES` first)."""
    return EXTRA_RETURN_CODES.get(error.code, return_code(error))


def message(error: SscardError) -> str:
    """What goes into pOutInfo on failure: the Chinese message (for −51 its only number is the tries left)."""
    return error.message_zh


_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def escape(text: str) -> str:
    """Escape one argument for the request line (the C library does the same to its bytes)."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in _UNESCAPE:
                raise BadCall("bad escape in argument")
            out.append(_UNESCAPE[text[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Request:
    function: str
    encoding: str
    outsize: int
    pin_timeout: float
    args: tuple[str, ...]

    @property
    def codec(self) -> str:
        """GB18030 for ``gbk``: GBK's superset, so a rare name character is not lost."""
        return "utf-8" if self.encoding == "utf-8" else "gb18030"


def parse_request(line: bytes) -> Request:
    """One request line (without its LF): an ASCII header, arguments in the request's encoding."""
    fields = line.split(b"\t")
    if len(fields) < 5 or fields[0] != PROTOCOL.encode():
        raise BadCall("not an SSCARD1 request")
    try:
        function, encoding, outsize, pin_ms = (f.decode("ascii") for f in fields[1:5])
    except UnicodeDecodeError:
        raise BadCall("bad request header") from None
    if encoding not in ("gbk", "utf-8") or not outsize.isdigit() or not pin_ms.isdigit():
        raise BadCall("bad request header")
    codec = "utf-8" if encoding == "utf-8" else "gb18030"
    try:
        args = tuple(unescape(a.decode(codec)) for a in fields[5:])
    except UnicodeDecodeError:
        raise BadCall("argument not in the request's encoding") from None
    return Request(function, encoding, max(2, int(outsize)), min(int(pin_ms) / 1000, MAX_PIN_TIMEOUT), args)


def encode_answer(rc: int, text: str, request: Request | None) -> bytes:
    """``RC TAB LENGTH LF`` + the text in the caller's encoding, never more than OUTSIZE − 1 bytes.

    A result (rc 0) that does not fit is refused with −14 instead of being cut: never a partial
    line.  A message that does not fit is cut at a character boundary.
    """
    codec = request.codec if request else "gb18030"
    limit = (request.outsize if request else 1024) - 1
    body = text.encode(codec, errors="replace")
    if len(body) > limit:
        if rc == 0:
            rc = PARAMETER_CODE
            body = "pOutInfo 缓冲区太小 / buffer too small".encode(codec)
        cut = bytearray()
        for ch in body.decode(codec):
            piece = ch.encode(codec)
            if len(cut) + len(piece) > limit:
                break
            cut += piece
        body = bytes(cut)
    return f"{rc}\t{len(body)}\n".encode("ascii") + body


def encode_parts(rc: int, parts: Parts, request: Request | None) -> bytes:
    """``RC TAB LENGTH1 TAB LENGTH2 … LF`` + the parts: a call with several outputs.

    Text parts are encoded like :func:`encode_answer`'s and each must fit OUTSIZE − 1 bytes (else
    the whole answer is −14, never a part cut); byte parts go as they are (at most
    :data:`MAX_BYTES_PART`).  A failure is never several parts: its message alone.
    """
    if rc != 0:
        first = parts[0] if parts and isinstance(parts[0], str) else ""
        return encode_answer(rc, first, request)
    codec = request.codec if request else "gb18030"
    limit = (request.outsize if request else 1024) - 1
    bodies: list[bytes] = []
    for part in parts:
        body = part if isinstance(part, bytes) else part.encode(codec, errors="replace")
        if len(body) > (MAX_BYTES_PART if isinstance(part, bytes) else limit):
            return encode_answer(PARAMETER_CODE, "pOutInfo 缓冲区太小 / buffer too small", request)
        bodies.append(body)
    header = "\t".join([str(rc), *(str(len(b)) for b in bodies)])
    return f"{header}\n".encode("ascii") + b"".join(bodies)


def encode(answer: Answer, request: Request | None) -> bytes:
    """One call's answer on the wire: :func:`encode_answer` for a text, :func:`encode_parts` for parts."""
    rc, body = answer
    return encode_answer(rc, body, request) if isinstance(body, str) else encode_parts(rc, body, request)


__all__ = [
    "DEFAULT_SOCKET",
    "EXTRA_RETURN_CODES",
    "MAX_BYTES_PART",
    "MAX_PIN_TIMEOUT",
    "MAX_REQUEST",
    "PARAMETER_CODE",
    "PROTOCOL",
    "REQUEST_TIMEOUT",
    "Answer",
    "BadCall",
    "Parts",
    "PinEntryCancelled",
    "PinEntryTimeout",
    "Request",
    "encode",
    "encode_answer",
    "encode_parts",
    "escape",
    "message",
    "national_code",
    "parse_request",
    "unescape",
]


def peer_program(conn: socket.socket) -> str | None:
    """The program at the other end of a Unix socket: ``"name (PID n)"`` from SO_PEERCRED and
    /proc/PID/comm (the kernel's, not the client's word), None where that cannot be told."""
    try:
        cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = struct.unpack("3i", cred)[0]
    except (OSError, AttributeError, struct.error):
        return None
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as comm:
            name = "".join(ch for ch in comm.read(64).strip() if ch.isprintable())
    except OSError:
        name = ""
    return f"{name} (PID {pid})" if name else f"PID {pid}"
