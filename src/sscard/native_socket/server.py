"""The socket server: one thread per connection, each call through the Terminal facade.

One card operation at a time: every call goes through the ``runner`` the caller gives (the
service passes :func:`async_runner` over its own ``run``, so socket clients queue with HTTP
clients).  Also: systemd socket activation, and ``python -m sscard.native_socket`` for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from sscard.errors import PinBlocked, PinIncorrect, SscardError
from sscard.national import iReadCardBas, iReadCardBas_HSM_Step1, iReadCardBas_HSM_Step2
from sscard.native_socket.heasec import MedicalSettings, person_info, photo_wanted, read_sfz
from sscard.native_socket.pins import PagePinSource, PinpadPinSource, PinSource
from sscard.native_socket.protocol import (
    DEFAULT_SOCKET,
    MAX_REQUEST,
    REQUEST_TIMEOUT,
    Answer,
    BadCall,
    Request,
    encode,
    message,
    national_code,
    parse_request,
    peer_program,
)
from sscard.ssc.application import PinOutcome, PinState
from sscard.terminal import Terminal

log = logging.getLogger(__name__)

#: The return code of a national function sscard does not implement (docs/native.md).
NOT_SUPPORTED = -13

#: The systemd socket unit, shipped as ``sscard/service/sscard.socket`` (``sscard serve
#: --systemd-socket-unit`` prints it).
SYSTEMD_SOCKET_UNIT = resources.files("sscard.service").joinpath("sscard.socket").read_text(encoding="utf-8")


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
    return national_code(error), message(error)


#: Runs one card operation for the server (the service passes one that takes its own lock).
Runner = Callable[[Callable[[], Answer]], Answer]


def lock_runner(lock: threading.Lock | threading.RLock | None = None) -> Runner:
    """A runner for standalone use: one operation at a time under ``lock``."""
    held = lock or threading.Lock()

    def run(operation: Callable[[], Answer]) -> Answer:
        with held:
            return operation()

    return run


def async_runner(loop: asyncio.AbstractEventLoop, run: Callable[[Callable[[], Any]], Awaitable[Any]]) -> Runner:
    """A runner over the service's ``async run(operation)`` (its lock and worker threads).

    The socket's threads hand each operation to the service's event loop, so a socket call queues
    with the HTTP calls (one card operation at a time) and SERVICE_BUSY comes back as −11::

        NativeSocketServer(terminal, path, runner=async_runner(loop, service.run), ...)
    """

    def runner(operation: Callable[[], Answer]) -> Answer:
        result: Answer = asyncio.run_coroutine_threadsafe(_awaited(run, operation), loop).result()
        return result

    return runner


async def _awaited(run: Callable[[Callable[[], Any]], Awaitable[Any]], operation: Callable[[], Any]) -> Any:
    return await run(operation)


class NativeSocketServer:
    """Answer the C library's requests on a Unix-domain socket, one thread per connection.

    ``runner(operation)`` runs each card operation (the service passes one that takes its own
    lock, so socket calls and HTTP calls never overlap); ``pin_source`` supplies PINs;
    ``on_call(function, rc)`` hears of each call once answered (the service's metrics).
    """

    FUNCTIONS = (
        "iReadCardBas",
        "iReadCardBas_HSM_Step1",
        "iReadCardBas_HSM_Step2",
        "iVerifyPIN",
        "iChangePIN",
        # libHeaSecReadInfo.so's own (sscard.native_socket.heasec)
        "ReadSFZ",
        "GetPersonInfo",
    )

    def __init__(
        self,
        terminal: Terminal,
        path: str,
        *,
        runner: Runner | None = None,
        pin_source: PinSource | None = None,
        on_call: Callable[[str, int], None] | None = None,
        mode: int = 0o660,
        group: str | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.terminal = terminal
        self.path = path
        self.runner = runner or lock_runner()
        self.pin_source = pin_source
        #: Told ``(function, return code)`` after each call (the service's metrics); the function is
        #: one of :attr:`FUNCTIONS` or ``other``, never what an unknown request line said.
        self.on_call = on_call
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

                with contextlib.suppress(KeyError):  # no such group: the socket keeps the process's
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
            answer: Answer
            try:
                line = _read_line(conn)
                request = parse_request(line)
                answer = self.dispatch(request, caller=peer_program(conn))
            except SscardError as exc:
                answer = national_code(exc), message(exc)
            except OSError as exc:
                log.info("native socket: dropped a request: %s", type(exc).__name__)
                return
            except Exception:
                log.exception("native socket: unexpected error")
                answer = -13, "内部错误 / internal error"
            with contextlib.suppress(OSError):
                conn.settimeout(REQUEST_TIMEOUT)
                conn.sendall(encode(answer, request))
            log.info("native %s → %d", request.function if request else "?", answer[0])
            if self.on_call is not None:
                function = request.function if request and request.function in self.FUNCTIONS else "other"
                self.on_call(function, answer[0])

    def dispatch(self, request: Request, *, caller: str | None = None) -> Answer:
        """Run one function; ``(return code, pOutInfo text)`` or, for several outputs, its parts.
        ``caller``: who asked (:func:`peer_program`), shown with a PIN request."""
        fn = request.function
        if fn not in self.FUNCTIONS:
            return NOT_SUPPORTED, f"本库不支持此功能 / not supported by sscard: {fn[:40]}"
        if fn == "ReadSFZ":
            photo = photo_wanted(request.args)
            return self.runner(lambda: read_sfz(self.terminal, photo=photo))
        if fn == "GetPersonInfo":
            settings = MedicalSettings.from_args(request.args)
            return self.runner(
                lambda: person_info(
                    self.terminal,
                    settings,
                    verify_pin=lambda terminal: self._verify_for_credential(terminal, request.pin_timeout, caller),
                )
            )
        if fn == "iReadCardBas_HSM_Step2":
            if len(request.args) != 1:
                raise BadCall("pKey")
            return self.runner(lambda: self._hsm_step2(request.args[0]))
        _itype(request)
        if fn == "iReadCardBas":
            return self.runner(lambda: iReadCardBas(self.terminal))
        if fn == "iReadCardBas_HSM_Step1":
            return self.runner(self._hsm_step1_call)
        return self.runner(lambda: self._pin_call(fn, request.pin_timeout, caller))

    def _hsm_step1_call(self) -> Answer:
        rc, text = iReadCardBas_HSM_Step1(self.terminal)
        self._hsm_step1 = text if rc == 0 else None
        return rc, text

    def _hsm_step2(self, key: str) -> Answer:
        step1, self._hsm_step1 = self._hsm_step1, None
        if step1 is None:
            raise BadCall("call iReadCardBas_HSM_Step1 first")
        return iReadCardBas_HSM_Step2(self.terminal, step1, key)

    def _pin_call(self, fn: str, timeout: float, caller: str | None = None) -> Answer:
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
                source.verify(self.terminal, timeout, caller)
                if fn == "iVerifyPIN"
                else source.change(self.terminal, timeout, caller)
            )
        except SscardError as exc:
            return national_code(exc), message(exc)
        return _pin_result(outcome)

    def _verify_for_credential(self, terminal: Terminal, timeout: float, caller: str | None = None) -> None:
        """GetPersonInfo's PIN check (CARD_PASSTYPE "1"): as iVerifyPIN, but a failure is raised."""
        source = self.pin_source
        if source is None:
            raise BadCall("no PIN source configured")
        terminal.check_pin_allowed()
        status = terminal.pin_status()
        outcome = status if status.state is PinState.BLOCKED else source.verify(terminal, timeout, caller)
        if outcome.state is PinState.VERIFIED:
            return
        if outcome.state is PinState.BLOCKED:
            raise PinBlocked()
        raise PinIncorrect(outcome.tries_left if outcome.tries_left is not None else 0)


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
