"""The Unix-domain socket that ``libSSCardDriver.so`` talks to (docs/native.md, issue 13).

Kiosk programs written against the national reader interface (reference §6.5) link the C library
in ``native/``; each of its calls is one request on this socket, answered by calling the
:class:`~sscard.terminal.Terminal` facade, so the C side needs no JSON parser and no Python runs
inside the host program.  The wire protocol (docs/native.md, "Wire protocol")::

    request   SSCARD1 TAB FUNCTION TAB ENCODING TAB OUTSIZE TAB PIN_TIMEOUT_MS [TAB ARG]... LF
    answer    RC TAB LENGTH LF, then LENGTH bytes of pOutInfo (encoded, no NUL)

Arguments escape ``\\``, TAB, LF and CR as ``\\\\``, ``\\t``, ``\\n``, ``\\r``.  ``ENCODING`` is
``gbk`` (encoded with Python's GB18030 codec, so a character GBK lacks comes out as GB18030
bytes) or ``utf-8``; the answer never exceeds ``OUTSIZE - 1`` bytes and a result line that does
not fit is refused rather than cut.

One card operation at a time: every call goes through the ``runner`` the caller gives (the
service passes its own, so socket clients queue with HTTP clients).  PINs come from a
:class:`PinSource` — the kiosk page (``page``) or the reader's own PIN pad (``pinpad``, PC/SC
part 10) — and never appear in a log, an event or an error.

    python -m sscard.native_socket --socket PATH --reader READER     # for tests and docs
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import struct
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from sscard.errors import PinBlocked, PinFormat, PinIncorrect, SscardError
from sscard.national import (
    iReadCardBas,
    iReadCardBas_HSM_Step1,
    iReadCardBas_HSM_Step2,
    return_code,
)
from sscard.ssc.application import PinOutcome, PinState
from sscard.ssc.pin import Pin
from sscard.terminal import Terminal

log = logging.getLogger(__name__)

PROTOCOL = "SSCARD1"
DEFAULT_SOCKET = "/run/sscard/sscard.sock"
#: The longest request line accepted (the C library sends far less).
MAX_REQUEST = 64 * 1024
#: The longest PIN wait a client may ask for (s).
MAX_PIN_TIMEOUT = 600.0
#: Seconds a connected client has to send its request line.
REQUEST_TIMEOUT = 5.0

#: National codes of this module's own errors (sscard.national.RETURN_CODES has the others).
EXTRA_RETURN_CODES = {
    "PIN_CANCELLED": -31,
    "PIN_ENTRY_TIMEOUT": -32,
    "PARAMETER": -14,
    "NOT_SUPPORTED": -13,
    "SERVICE_BUSY": -11,  # queued longer than [service] queue_timeout behind other clients: the reader is busy
}

#: The systemd socket unit (the integrator moves it beside sscard.service as sscard.socket).
SYSTEMD_SOCKET_UNIT = """\
# sscard.socket: the national-interface socket libSSCardDriver.so connects to (docs/native.md).
# systemd creates it and starts sscard.service on the first call (as pcscd.socket does for
# pcscd); the service takes it over from LISTEN_FDS.  Kiosk programs' users join group sscard.
#   install -m 0644 sscard.socket /etc/systemd/system/ && systemctl enable --now sscard.socket

[Unit]
Description=sscard national-interface socket (libSSCardDriver.so)

[Socket]
ListenStream=/run/sscard/sscard.sock
SocketUser=root
SocketGroup=sscard
SocketMode=0660
DirectoryMode=0755
Service=sscard.service

[Install]
WantedBy=sockets.target
"""


def systemd_socket(first_fd: int = 3) -> socket.socket | None:
    """The listening socket systemd passed (``sscard.socket``, socket activation), if any.

    ``LISTEN_PID``/``LISTEN_FDS`` as sd_listen_fds(3) reads them; both are removed so a child
    process does not take the socket for its own.  ``first_fd`` is SD_LISTEN_FDS_START (tests
    pass another).
    """
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or not os.environ.get("LISTEN_FDS", "").isdigit():
        return None
    count = int(os.environ.pop("LISTEN_FDS"))
    os.environ.pop("LISTEN_PID", None)
    os.environ.pop("LISTEN_FDNAMES", None)
    if count < 1:
        return None
    sock = socket.socket(fileno=first_fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        return None
    return sock


class PinEntryCancelled(SscardError):
    """The resident cancelled PIN entry (national −31); no PIN reached the card."""

    code = "PIN_CANCELLED"
    message_en = "PIN entry was cancelled."
    message_zh_text = "密码输入已取消。"
    retriable = True


class PinEntryTimeout(SscardError):
    """No PIN was entered in time (national −32); no PIN reached the card."""

    code = "PIN_ENTRY_TIMEOUT"
    message_en = "PIN entry timed out."
    message_zh_text = "密码输入超时。"
    retriable = True


class BadCall(SscardError):
    """A request the socket cannot carry out (national −14): unknown step, unusable argument."""

    code = "PARAMETER"
    message_en = "Invalid parameter: {problem}."
    message_zh_text = "参数错误。"

    def __init__(self, problem: str = "request") -> None:
        super().__init__(None, problem=problem)


def national_code(error: SscardError) -> int:
    """The national return code of any error, this module's own included."""
    return EXTRA_RETURN_CODES.get(error.code, return_code(error))


# -- PIN sources ---------------------------------------------------------------------------------


class PinSource(Protocol):
    """Where the PIN of an ``iVerifyPIN``/``iChangePIN`` comes from.  Runs inside the card lock."""

    def verify(self, terminal: Terminal, timeout: float) -> PinOutcome: ...

    def change(self, terminal: Terminal, timeout: float) -> PinOutcome: ...


@dataclass
class _Pending:
    operation: str
    done: threading.Event = field(default_factory=threading.Event)
    pins: tuple[Pin, ...] = ()
    cancelled: bool = False


class PagePinSource:
    """The kiosk page types the PIN: publish ``pin_requested``, wait for :meth:`answer`.

    ``publish`` gets ``{"kind": "pin_requested", "request": ID, "operation": "verify"|"change"}``
    (the service forwards it on ``/v1/events``); ``POST /v1/pin-entry`` calls :meth:`answer`.
    """

    def __init__(self, publish: Callable[[dict[str, Any]], None]) -> None:
        self.publish = publish
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def answer(
        self,
        request: str,
        *,
        pin: str | bytearray | None = None,
        old: str | bytearray | None = None,
        new: str | bytearray | None = None,
        cancel: bool = False,
    ) -> bool:
        """Deliver the answer to request ``request``; False when no such request is waiting.

        A PIN of the wrong shape is still delivered (and refused as PIN_FORMAT, −33, by the
        terminal before anything reaches the card), so the caller learns the right code.
        """
        with self._lock:
            pending = self._pending.get(request)
            if pending is None or pending.done.is_set():
                return False
            if cancel:
                pending.cancelled = True
            else:
                given = (pin,) if pending.operation == "verify" else (old, new)
                pending.pins = tuple(
                    Pin.from_text(p) if isinstance(p, str) else Pin(p) if isinstance(p, bytearray) else Pin(bytearray())
                    for p in given
                )
            pending.done.set()
            return True

    @contextlib.contextmanager
    def _ask(self, operation: str, timeout: float) -> Iterator[tuple[Pin, ...]]:
        request = secrets.token_hex(8)
        pending = _Pending(operation)
        with self._lock:
            self._pending[request] = pending
        try:
            self.publish({"kind": "pin_requested", "request": request, "operation": operation})
            answered = pending.done.wait(timeout)
            with self._lock:
                self._pending.pop(request, None)
                pending.done.set()  # a late answer finds the request closed
            if not answered:
                raise PinEntryTimeout(f"no answer to request {request} in {timeout:g} s")
            if pending.cancelled:
                raise PinEntryCancelled(f"request {request}")
            yield pending.pins
        finally:
            for p in pending.pins:
                p.wipe()

    def verify(self, terminal: Terminal, timeout: float) -> PinOutcome:
        with self._ask("verify", timeout) as (pin,):
            return terminal.verify(pin)

    def change(self, terminal: Terminal, timeout: float) -> PinOutcome:
        with self._ask("change", timeout) as (old, new):
            return terminal.change_pin(old, new)


# PC/SC part 10 (pcsc-lite's reader.h): SCARD_CTL_CODE(3400) and the feature tags.
CM_IOCTL_GET_FEATURE_REQUEST = 0x42000000 + 3400
FEATURE_VERIFY_PIN_DIRECT = 0x06
FEATURE_MODIFY_PIN_DIRECT = 0x07
#: Status words a PIN pad reader answers with (PC/SC part 10): timeout, cancel, PINs differ.
SW_PINPAD_TIMEOUT, SW_PINPAD_CANCEL, SW_PINPAD_MISMATCH = 0x6400, 0x6401, 0x6402
#: zh-CN, for the reader's own prompts.
LANG_ZH_CN = 0x0804


class Control(Protocol):
    """What the pinpad source needs of a connection: ``SCardControl(code, data) -> answer``."""

    def control(self, code: int, data: bytes) -> bytes: ...


def parse_features(answer: bytes) -> dict[int, int]:
    """The GET_FEATURE_REQUEST answer: TLVs of tag, length 4, control code (big-endian)."""
    features: dict[int, int] = {}
    i = 0
    while i + 2 <= len(answer):
        tag, length = answer[i], answer[i + 1]
        value = answer[i + 2 : i + 2 + length]
        if length == 4 and len(value) == 4:
            features[tag] = int.from_bytes(value, "big")
        i += 2 + length
    return features


def _bcd_template(digits: int) -> bytes:
    return b"\xff" * ((digits + 1) // 2)


def verify_structure(digits: int, timeout: int) -> bytes:
    """PIN_VERIFY_STRUCTURE for the SSC's VERIFY ``00 20 00 00 Lc BCD`` (F-padded, reference §2).

    bmFormatString 0x81: units in bytes, PIN at offset 0 of the data, left-justified, BCD.
    bmPINBlockString: no length field, a block of ``ceil(digits/2)`` bytes; the template is
    ``FF`` so an odd last digit keeps its ``F`` pad.  Entry ends on the validation key (0x02).
    """
    block = _bcd_template(digits)
    apdu = bytes([0x00, 0x20, 0x00, 0x00, len(block)]) + block
    return (
        struct.pack(
            "<BBBBBHBBHB3sI",
            min(timeout, 255),
            0,
            0x81,
            len(block),
            0x00,
            (digits << 8) | digits,
            0x02,
            0x01,
            LANG_ZH_CN,
            0,
            b"\x00\x00\x00",
            len(apdu),
        )
        + apdu
    )


def modify_structure(digits: int, timeout: int) -> bytes:
    """PIN_MODIFY_STRUCTURE for CHANGE PIN ``80 5E 01 00 Lc old ‖ FF ‖ new`` (reference §2)."""
    block = _bcd_template(digits)
    data = block + b"\xff" + block
    apdu = bytes([0x80, 0x5E, 0x01, 0x00, len(data)]) + data
    return (
        struct.pack(
            "<BBBBBBBHBBBHBBB3sI",
            min(timeout, 255),
            0,
            0x81,
            len(block),
            0x00,
            0,  # bInsertionOffsetOld
            len(block) + 1,  # bInsertionOffsetNew: after old ‖ FF
            (digits << 8) | digits,
            0x03,  # bConfirmPIN: confirm the new PIN, and ask for the old one
            0x02,
            0x03,
            LANG_ZH_CN,
            0,
            1,
            2,
            b"\x00\x00\x00",
            len(apdu),
        )
        + apdu
    )


def pinpad_outcome(answer: bytes) -> PinOutcome:
    """The card's (or the reader's) status word after a PIN pad operation, as an outcome."""
    if len(answer) < 2:
        raise BadCall("PIN pad answer shorter than a status word")
    sw = int.from_bytes(answer[-2:], "big")
    if sw == 0x9000:
        return PinOutcome(PinState.VERIFIED)
    if sw == SW_PINPAD_TIMEOUT:
        raise PinEntryTimeout("the PIN pad timed out")
    if sw == SW_PINPAD_CANCEL:
        raise PinEntryCancelled("cancelled on the PIN pad")
    if sw == SW_PINPAD_MISMATCH:
        from sscard.errors import PinMismatch

        raise PinMismatch()
    if sw & 0xFFF0 == 0x63C0:
        return PinOutcome(PinState.INCORRECT if sw & 0xF else PinState.BLOCKED, sw & 0xF)
    if sw in (0x6983, 0x6984):
        return PinOutcome(PinState.BLOCKED, 0)
    if sw in (0x6700, 0x6A80, 0x6403):
        raise PinFormat(f"PIN pad / card answered {sw:04X}")
    from sscard.errors import CardError

    raise CardError(sw)


class PinpadPinSource:
    """The reader's own PIN pad (PC/SC part 10): the PIN never reaches the host.

    Needs ``control(code, data)`` on the terminal's connection (``SCardControl``); the PC/SC
    transport gets it from the integrator (docs/native.md).  ``digits``: the PIN length the pad
    takes (SSC PINs are issued with 6); ``timeout`` is passed to the reader (at most 255 s).
    """

    def __init__(self, digits: int = 6) -> None:
        self.digits = digits

    def _run(self, terminal: Terminal, tag: int, structure: bytes) -> PinOutcome:
        """Find the feature and send the structure, inside one PC/SC transaction."""
        transport = terminal.transport  # connected by the status query just before
        if transport is None or not callable(getattr(transport, "control", None)):
            raise BadCall("this reader has no PC/SC control channel (no PIN pad)")
        channel: Control = transport  # type: ignore[assignment]
        with transport.transaction():
            code = parse_features(channel.control(CM_IOCTL_GET_FEATURE_REQUEST, b"")).get(tag)
            if code is None:
                raise BadCall("the reader has no PIN pad (FEATURE_VERIFY/MODIFY_PIN_DIRECT)")
            return pinpad_outcome(channel.control(code, structure))

    def verify(self, terminal: Terminal, timeout: float) -> PinOutcome:
        return self._run(terminal, FEATURE_VERIFY_PIN_DIRECT, verify_structure(self.digits, int(timeout)))

    def change(self, terminal: Terminal, timeout: float) -> PinOutcome:
        return self._run(terminal, FEATURE_MODIFY_PIN_DIRECT, modify_structure(self.digits, int(timeout)))


# -- the protocol ---------------------------------------------------------------------------------

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
            rc = EXTRA_RETURN_CODES["PARAMETER"]
            body = "pOutInfo 缓冲区太小 / buffer too small".encode(codec)
        cut = bytearray()
        for ch in body.decode(codec):
            piece = ch.encode(codec)
            if len(cut) + len(piece) > limit:
                break
            cut += piece
        body = bytes(cut)
    return f"{rc}\t{len(body)}\n".encode("ascii") + body


def _message(exc: SscardError) -> str:
    if isinstance(exc, PinIncorrect):
        return exc.message_zh  # "密码错误，还可尝试N次。": the only number is the tries left
    return exc.message_zh


def _itype(request: Request) -> int:
    if len(request.args) != 1 or request.args[0] not in ("1", "2", "3", "4"):
        raise BadCall("iType must be 1 to 4")
    return int(request.args[0])


def _pin_result(outcome: PinOutcome) -> tuple[int, str]:
    if outcome.state is PinState.VERIFIED:
        return 0, ""
    if outcome.state is PinState.BLOCKED:
        error: SscardError = PinBlocked()
    elif outcome.state is PinState.INCORRECT:
        error = PinIncorrect(outcome.tries_left if outcome.tries_left is not None else 0)
    else:
        raise BadCall(f"unexpected PIN state {outcome.state.value}")
    return national_code(error), _message(error)


#: Runs one card operation for the server (the service passes one that takes its own lock).
Runner = Callable[[Callable[[], tuple[int, str]]], tuple[int, str]]


def lock_runner(lock: threading.Lock | threading.RLock | None = None) -> Runner:
    """A runner for standalone use: one operation at a time under ``lock``."""
    held = lock or threading.Lock()

    def run(operation: Callable[[], tuple[int, str]]) -> tuple[int, str]:
        with held:
            return operation()

    return run


def async_runner(loop: asyncio.AbstractEventLoop, run: Callable[[Callable[[], Any]], Awaitable[Any]]) -> Runner:
    """A runner over the service's ``async run(operation)`` (its lock and worker threads).

    The socket's threads hand each operation to the service's event loop, so a socket call queues
    with the HTTP calls (one card operation at a time) and SERVICE_BUSY comes back as −11::

        NativeSocketServer(terminal, path, runner=async_runner(loop, service.run), ...)
    """

    def runner(operation: Callable[[], tuple[int, str]]) -> tuple[int, str]:
        result: tuple[int, str] = asyncio.run_coroutine_threadsafe(_awaited(run, operation), loop).result()
        return result

    return runner


async def _awaited(run: Callable[[Callable[[], Any]], Awaitable[Any]], operation: Callable[[], Any]) -> Any:
    return await run(operation)


class NativeSocketServer:
    """Answer the C library's requests on a Unix-domain socket, one thread per connection.

    ``runner(operation)`` runs each card operation (the service passes one that takes its own
    lock, so socket calls and HTTP calls never overlap); ``pin_source`` supplies PINs.
    """

    FUNCTIONS = ("iReadCardBas", "iReadCardBas_HSM_Step1", "iReadCardBas_HSM_Step2", "iVerifyPIN", "iChangePIN")

    def __init__(
        self,
        terminal: Terminal,
        path: str,
        *,
        runner: Runner | None = None,
        pin_source: PinSource | None = None,
        mode: int = 0o660,
        group: str | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.terminal = terminal
        self.path = path
        self.runner = runner or lock_runner()
        self.pin_source = pin_source
        self._hsm_step1: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Whether this server bound the path (and so removes it); an inherited socket is systemd's.
        self._owns_path = sock is None
        if sock is None:
            with contextlib.suppress(FileNotFoundError):
                if os.path.exists(path) and not os.path.isdir(path):
                    os.unlink(path)  # a stale socket from a previous run
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            os.chmod(path, mode)
            if group is not None:
                import grp

                os.chown(path, -1, grp.getgrnam(group).gr_gid)
        sock.listen(16)
        sock.settimeout(0.2)
        self._sock = sock

    # lifecycle

    def start(self) -> NativeSocketServer:
        self._thread = threading.Thread(target=self.serve_forever, name="sscard-native-socket", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                raise
            threading.Thread(target=self._serve, args=(conn,), name="sscard-native-call", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self._sock.close()
        if self._owns_path:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def __enter__(self) -> NativeSocketServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # one connection = one call

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(REQUEST_TIMEOUT)
            request: Request | None = None
            try:
                line = _read_line(conn)
                request = parse_request(line)
                rc, text = self.dispatch(request)
            except SscardError as exc:
                rc, text = national_code(exc), _message(exc)
            except OSError as exc:
                log.info("native socket: dropped a request: %s", type(exc).__name__)
                return
            except Exception:
                log.exception("native socket: unexpected error")
                rc, text = -13, "内部错误 / internal error"
            with contextlib.suppress(OSError):
                conn.settimeout(REQUEST_TIMEOUT)
                conn.sendall(encode_answer(rc, text, request))
            log.info("native %s → %d", request.function if request else "?", rc)

    def dispatch(self, request: Request) -> tuple[int, str]:
        """Run one national function; ``(return code, pOutInfo text)``."""
        fn = request.function
        if fn not in self.FUNCTIONS:
            return EXTRA_RETURN_CODES["NOT_SUPPORTED"], f"本库不支持此功能 / not supported by sscard: {fn[:40]}"
        if fn == "iReadCardBas_HSM_Step2":
            if len(request.args) != 1:
                raise BadCall("pKey")
            return self.runner(lambda: self._hsm_step2(request.args[0]))
        _itype(request)
        if fn == "iReadCardBas":
            return self.runner(lambda: iReadCardBas(self.terminal))
        if fn == "iReadCardBas_HSM_Step1":
            return self.runner(self._hsm_step1_call)
        return self.runner(lambda: self._pin_call(fn, request.pin_timeout))

    def _hsm_step1_call(self) -> tuple[int, str]:
        rc, text = iReadCardBas_HSM_Step1(self.terminal)
        self._hsm_step1 = text if rc == 0 else None
        return rc, text

    def _hsm_step2(self, key: str) -> tuple[int, str]:
        step1, self._hsm_step1 = self._hsm_step1, None
        if step1 is None:
            raise BadCall("call iReadCardBas_HSM_Step1 first")
        return iReadCardBas_HSM_Step2(self.terminal, step1, key)

    def _pin_call(self, fn: str, timeout: float) -> tuple[int, str]:
        """Check the card first (no card −2, blocked −52 at once), then ask for the PIN once."""
        source = self.pin_source
        if source is None:
            raise BadCall("no PIN source configured")
        try:
            self.terminal.check_pin_allowed()
            status = self.terminal.pin_status()
            if status.state is PinState.BLOCKED:
                return _pin_result(status)
            outcome = (
                source.verify(self.terminal, timeout) if fn == "iVerifyPIN" else source.change(self.terminal, timeout)
            )
        except SscardError as exc:
            return national_code(exc), _message(exc)
        return _pin_result(outcome)


def _read_line(conn: socket.socket) -> bytes:
    data = bytearray()
    try:
        while not data.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                raise BadCall("request ended without LF")
            data += chunk
            if len(data) > MAX_REQUEST:
                raise BadCall("request too long")
        return bytes(data[:-1])
    finally:
        data[:] = bytes(len(data))  # the line may carry a key; wipe the buffer


# -- the tiny entry point (tests and docs; `sscard serve --socket` is the real one) ---------------


def _stdio_pin_source() -> PagePinSource:
    """Page source over stdio: events out as JSON lines, answers in (tests answer from there)."""
    out_lock = threading.Lock()

    def publish(event: dict[str, Any]) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()

    source = PagePinSource(publish)

    def follow() -> None:
        for line in sys.stdin:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                message = json.loads(line)
                source.answer(
                    str(message["request"]),
                    pin=message.get("pin"),
                    old=message.get("old"),
                    new=message.get("new"),
                    cancel=bool(message.get("cancel")),
                )

    threading.Thread(target=follow, name="sscard-native-stdin", daemon=True).start()
    return source


def main(argv: list[str] | None = None) -> int:
    """``--socket PATH --reader R [--pin-source page|pinpad]`` (argparse is the CLI's alone)."""
    options = {"--socket": os.environ.get("SSCARD_SOCKET", DEFAULT_SOCKET), "--reader": "", "--pin-source": "page"}
    words = list(sys.argv[1:] if argv is None else argv)
    while words:
        name = words.pop(0)
        if name not in options or not words:
            sys.stderr.write(
                "usage: python -m sscard.native_socket --socket PATH --reader R [--pin-source page|pinpad]\n"
            )
            return 2
        options[name] = words.pop(0)
    if options["--pin-source"] not in ("page", "pinpad"):
        sys.stderr.write("--pin-source: page or pinpad\n")
        return 2
    source: PinSource = _stdio_pin_source() if options["--pin-source"] == "page" else PinpadPinSource()
    with Terminal.open(options["--reader"] or None) as terminal:
        server = NativeSocketServer(terminal, options["--socket"], pin_source=source)
        sys.stdout.write(json.dumps({"kind": "listening", "socket": options["--socket"]}) + "\n")
        sys.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
