"""QR scanners on a serial port: each scan becomes a typed, classified, opaque credential.

Why one module of over 400 lines: most of it is :class:`QrScanner`, one line-protocol state
machine (framing, validation, de-duplication, reopening) that is clearest in one place; the kinds
and classification rules are apart (:mod:`sscard.qr.formats`).

    from sscard.transports.serial import SerialPort
    from sscard.qr import QrConfig, QrScanner

    config = QrConfig(dedup_window=2.0)                 # terminator "any": CR, LF or CR LF
    port = SerialPort("/dev/sscard-qr", config.baudrate)
    scanner = QrScanner(port, config)
    credential = scanner.read_scan(timeout=5.0)        # QrCredential, or None after 5 s of silence
    for item in scanner.scans(stop, reopen=lambda: port.reopen(timeout=0)):
        ...                                             # QrCredential | ScanRejected | DeviceRemoved | ScannerRestored

Kiosk scanners (USB-serial, or USB CDC-ACM in "virtual COM" mode) send what the code holds, then
a configurable terminator: CR, LF, CRLF, or nothing (the scan then ends with a pause, the
inter-character timeout).  By default (``any``) CR, LF and CR LF each end a scan exactly once, so
a scanner at its factory setting (often CR LF) works without configuration; an explicit
terminator pins one.  Optionally wrapped in a configured prefix and suffix (STX/ETX, a
symbology identifier).  :class:`QrScanner` turns that byte stream into :class:`QrCredential`
values: the code, and its kind — medical insurance e-voucher (医保电子凭证), electronic social
security card (电子社保卡) or unknown — from the rules in ``qr_formats.toml`` (docs/card-reference.md §9).

Codes are opaque (docs/card-reference.md §9): sscard captures a code and hands it over, and never tries to
resolve it; the backend asks the national platform ("ec.query" for the e-voucher).  A code is a
personal credential, so no log line holds one: logs give its kind, its length and a short hash
(:attr:`QrCredential.ref`).

What goes wrong is a typed error, and the scanner keeps listening (docs/design.md §10):

* a line that is not printable ASCII, a line longer than ``max_length`` (discarded up to the next
  terminator, rejected once), and a line left without its terminator for ``incomplete_timeout``
  are each :class:`~sscard.errors.ScanRejected` (``reason``: ``not_ascii``, ``non_printable``,
  ``too_long``, ``incomplete``); the bytes after it are read normally;
* the same code again within ``dedup_window`` seconds of the last time it was seen (a phone held
  in front of a scanner in continuous mode) is the same scan, swallowed;
* an unplugged scanner is :class:`~sscard.errors.DeviceRemoved`; :meth:`QrScanner.scans` with a
  ``reopen`` callable waits for it (backoff 0.1 s doubling to 2 s) and resumes with the same scanner.

This module speaks only to the :class:`~sscard.transports.stream.ByteStream` interface; pyserial
stays in :mod:`sscard.transports.serial` (docs/design.md §1, §8).  The kinds and the classification
rules are :mod:`sscard.qr.formats`; this module holds the credentials, the configuration and the
scanner, and re-exports both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeAlias

from sscard.backoff import Backoff
from sscard.clock import local_now as _now
from sscard.errors import ConfigError, DeviceNotFound, DeviceRemoved, ScanRejected

if TYPE_CHECKING:
    from sscard.transports.stream import ByteStream
from sscard.qr.formats import QrFormat, QrFormats, QrKind, _bundled_formats, classify, load_formats

log = logging.getLogger("sscard.qr")

__all__ = [
    "DEFAULT_TERMINATOR",
    "REASON_INCOMPLETE",
    "REASON_NON_PRINTABLE",
    "REASON_NOT_ASCII",
    "REASON_TOO_LONG",
    "TERMINATORS",
    "QrConfig",
    "QrCredential",
    "QrFormat",
    "QrFormats",
    "QrKind",
    "QrScanner",
    "ScanResult",
    "ScannerRestored",
    "classify",
    "code_ref",
    "load_formats",
]

#: Terminator names (``QrConfig.terminator``) and their bytes; ``none`` ends a scan with a pause;
#: ``any`` (the default) ends it at CR, LF or CR LF alike (``b"\r\n"`` here: either byte ends a line).
TERMINATORS: dict[str, bytes] = {"any": b"\r\n", "CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "none": b""}
#: The default terminator: whatever a scanner ends its lines with.
DEFAULT_TERMINATOR = "any"

#: ``ScanRejected.reason`` values (stable).
REASON_NOT_ASCII = "not_ascii"
REASON_NON_PRINTABLE = "non_printable"
REASON_TOO_LONG = "too_long"
REASON_INCOMPLETE = "incomplete"

_CHUNK = 4096


def code_ref(code: str) -> str:
    """A short, stable reference to a code for logs and support: never the code itself."""
    return hashlib.sha256(code.encode("utf-8")).hexdigest()[:12]


# --- credentials ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QrCredential:
    """One scan: an opaque code of a known kind, from a device, at a time.

    ``code`` is left out of ``repr`` so that a credential in a log line or a traceback does not
    leak it; :attr:`ref` names it instead.
    """

    kind: QrKind
    code: str = field(repr=False)
    device: str
    time: dt.datetime

    @property
    def ref(self) -> str:
        return code_ref(self.code)

    def to_json(self) -> dict[str, Any]:
        """One line of ``sscard scan --json``: these keys never change meaning."""
        return {
            "kind": self.kind.value,
            "code": self.code,
            "device": self.device,
            "time": self.time.isoformat(timespec="milliseconds"),
        }


@dataclass(frozen=True)
class ScannerRestored:
    """The scanner came back after :class:`~sscard.errors.DeviceRemoved`; scans resume."""

    device: str
    time: dt.datetime


#: What :meth:`QrScanner.scans` yields.
ScanResult: TypeAlias = QrCredential | ScanRejected | DeviceRemoved | ScannerRestored


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QrConfig:
    """How one scanner is set up; must match the scanner's own configuration (its manual).

    * ``terminator``: ``any`` (the default: CR, LF and CR LF each end a scan once), ``CR``, ``LF``,
      ``CRLF`` or ``none`` (case-insensitive); with ``none`` a scan ends when no byte arrives for
      ``inter_char_timeout`` seconds;
    * ``prefix`` / ``suffix``: bytes the scanner adds around each code, removed when present;
    * ``dedup_window``: seconds within which the same code again is the same scan (0: off);
    * ``max_length``: the longest line accepted, in bytes, prefix and suffix included;
    * ``incomplete_timeout``: a line still without its terminator after this many seconds of
      silence is rejected (``incomplete``) rather than glued to the next scan.
    """

    baudrate: int = 9600
    terminator: str = DEFAULT_TERMINATOR
    inter_char_timeout: float = 0.05
    prefix: bytes = b""
    suffix: bytes = b""
    dedup_window: float = 2.0
    max_length: int = 512
    incomplete_timeout: float = 1.0

    _NAMES: ClassVar[dict[str, str]] = {"ANY": "any", "CR": "CR", "LF": "LF", "CRLF": "CRLF", "NONE": "none"}

    def __post_init__(self) -> None:
        name = self._NAMES.get(str(self.terminator).upper())
        if name is None:
            raise ConfigError(f"QR terminator must be any, CR, LF, CRLF or none, not {self.terminator!r}")
        object.__setattr__(self, "terminator", name)
        if self.baudrate <= 0:
            raise ConfigError(f"QR baud rate must be positive, not {self.baudrate}")
        if self.max_length <= 0:
            raise ConfigError(f"QR max_length must be positive, not {self.max_length}")
        if self.inter_char_timeout <= 0 or self.incomplete_timeout <= 0:
            raise ConfigError("QR inter_char_timeout and incomplete_timeout must be positive")
        if self.dedup_window < 0:
            raise ConfigError(f"QR dedup_window must not be negative, not {self.dedup_window}")
        term = TERMINATORS[name]
        ends = (b"\r", b"\n") if name == "any" else (term,)
        if term and any(end in self.prefix or end in self.suffix for end in ends):
            raise ConfigError("QR prefix and suffix must not contain the terminator")

    @property
    def terminator_bytes(self) -> bytes:
        return TERMINATORS[self.terminator]


# --- the scanner ------------------------------------------------------------------------------


class QrScanner:
    """Scans from one scanner's byte stream; one consumer at a time (not thread-safe).

    ``stream`` is any :class:`~sscard.transports.stream.ByteStream` (a ``SerialPort``);
    ``formats`` overrides the bundled classification rules; ``clock`` (monotonic seconds) is for
    tests of the time-based rules.
    """

    def __init__(
        self,
        stream: ByteStream,
        config: QrConfig | None = None,
        *,
        formats: QrFormats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.config = config or QrConfig()
        self.formats = formats or _bundled_formats()
        self._clock = clock
        self._term = self.config.terminator_bytes
        #: ``any``: a CR or an LF ends a line; the empty "line" between the CR and LF of a CR LF
        #: is not a scan (:meth:`_find_end`), so CR LF ends a scan exactly once.
        self._any = self.config.terminator == "any"
        self._buf = bytearray()
        self._after_cr = False  # ``any``: the last line ended with CR, so an LF next is its end too
        self._skipping = False  # inside an overlong line, already rejected: drop up to its end
        self._last_rx = 0.0
        self._seen: dict[bytes, float] = {}  # sha256 of a code -> when it was last seen
        self._stop = threading.Event()

    @property
    def device(self) -> str:
        return self.stream.name

    def __repr__(self) -> str:
        return f"QrScanner({self.stream!r}, terminator={self.config.terminator})"

    # -- one scan -----------------------------------------------------------------------------

    def read_scan(self, timeout: float | None = None) -> QrCredential | None:
        """The next scan, waiting up to ``timeout`` seconds (None: for ever); None when none came.

        Raises :class:`~sscard.errors.ScanRejected` for one bad line (the next call reads on after
        it) and :class:`~sscard.errors.DeviceRemoved` when the scanner is gone.  Duplicates within
        the window are swallowed and the wait goes on.  With terminator ``none`` a scan that has
        begun is finished even when that takes up to ``inter_char_timeout`` past the deadline.
        """
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            line = self._pop_line()
            if line is None and self._gap_passed():
                line = self._end_at_gap()
            if line is not None:
                credential = self._accept(line)
                if credential is not None:
                    return credential
                continue
            now = self._clock()
            pending = bool(self._buf) or self._skipping
            wait = None if deadline is None else deadline - now
            if wait is not None and wait <= 0 and not (pending and not self._term):
                return None
            if pending:
                gap_left = max(0.0, self._last_rx + self._gap - now)
                wait = gap_left if wait is None or not self._term else min(wait, gap_left)
            self._receive(wait)

    def discard(self) -> None:
        """Forget a partly received line (after a reopen, the device's old bytes mean nothing)."""
        self._buf.clear()
        self._skipping = False
        self._after_cr = False

    @property
    def _gap(self) -> float:
        return self.config.incomplete_timeout if self._term else self.config.inter_char_timeout

    def _receive(self, wait: float | None) -> None:
        first = self.stream.read(1, wait)
        if not first:
            return
        self._buf += first
        self._buf += self.stream.read(_CHUNK, 0)
        self._last_rx = self._clock()

    def _pop_line(self) -> bytes | None:
        """A complete line from the buffer, terminator removed; handles overlong lines."""
        if not self._term:  # scans end at a pause (_end_at_gap); only the length is checked here
            if len(self._buf) > self.config.max_length:
                self._buf.clear()
                if not self._skipping:
                    self._skipping = True
                    self._reject(REASON_TOO_LONG, "no pause within max_length bytes")
            elif self._skipping:
                self._buf.clear()
            return None
        keep = 0 if self._any else len(self._term) - 1  # a CRLF may be split across two reads
        while True:
            self._drop_lf_after_cr()
            index, length = self._find_end()
            if self._skipping:
                if index < 0:
                    del self._buf[: len(self._buf) - keep]
                    return None
                self._consume(index, length)
                self._skipping = False
                continue
            if index >= 0:
                line = bytes(self._buf[:index])
                self._consume(index, length)
                if len(line) > self.config.max_length:
                    self._reject(REASON_TOO_LONG, f"{len(line)} bytes")
                return line
            if len(self._buf) - keep > self.config.max_length:
                self._skipping = True
                del self._buf[: len(self._buf) - keep]
                self._reject(REASON_TOO_LONG, f"no terminator within {self.config.max_length} bytes")
            return None

    def _find_end(self) -> tuple[int, int]:
        """Where the first line ends in the buffer and the terminator's length; (-1, 0) if it does not."""
        if not self._any:
            return self._buf.find(self._term), len(self._term)
        ends = [i for i in (self._buf.find(b"\r"), self._buf.find(b"\n")) if i >= 0]
        return (min(ends), 1) if ends else (-1, 0)

    def _consume(self, index: int, length: int) -> None:
        """Drop a line and its terminator; with ``any`` remember a CR, whose LF may come later."""
        if self._any:
            self._after_cr = self._buf[index] == 0x0D
        del self._buf[: index + length]

    def _drop_lf_after_cr(self) -> None:
        """``any``: the LF of a CR LF ends nothing more, even when it arrives in a later read."""
        if self._after_cr and self._buf:
            if self._buf[0] == 0x0A:
                del self._buf[0]
            self._after_cr = False

    def _gap_passed(self) -> bool:
        if not self._buf and not self._skipping:
            return False
        return self._clock() - self._last_rx >= self._gap

    def _end_at_gap(self) -> bytes | None:
        """The silence after a pending line: the end of a scan (``none``) or a broken line."""
        line = bytes(self._buf)
        skipping = self._skipping
        self.discard()
        if skipping:
            return None
        if not self._term:
            return line
        self._reject(REASON_INCOMPLETE, f"{len(line)} bytes, then {self._gap:g} s without a terminator")

    def _reject(self, reason: str, detail: str) -> NoReturn:
        log.info("scan rejected on %s: %s (%s)", self.device, reason, detail)
        raise ScanRejected(reason, f"{detail}; device {self.device}")

    def _accept(self, line: bytes) -> QrCredential | None:
        code_bytes = line
        prefix, suffix = self.config.prefix, self.config.suffix
        if prefix and code_bytes.startswith(prefix):
            code_bytes = code_bytes[len(prefix) :]
        if suffix and code_bytes.endswith(suffix):
            code_bytes = code_bytes[: -len(suffix)]
        if not code_bytes:
            log.debug("empty line from %s ignored", self.device)
            return None
        if any(byte >= 0x80 for byte in code_bytes):
            self._reject(REASON_NOT_ASCII, f"{len(code_bytes)} bytes, not ASCII")
        if any(byte < 0x20 or byte == 0x7F for byte in code_bytes):
            self._reject(REASON_NON_PRINTABLE, f"{len(code_bytes)} bytes with control characters")
        code = code_bytes.decode("ascii")
        kind = self.formats.classify(code)
        if self._duplicate(code):
            log.debug("duplicate scan on %s swallowed: %s, ref %s", self.device, kind.value, code_ref(code))
            return None
        credential = QrCredential(kind, code, self.device, _now())
        log.info("scan on %s: %s, %d characters, ref %s", self.device, kind.value, len(code), credential.ref)
        return credential

    def _duplicate(self, code: str) -> bool:
        window = self.config.dedup_window
        if window <= 0:
            return False
        now = self._clock()
        for key in [key for key, seen in self._seen.items() if now - seen >= window]:
            del self._seen[key]
        key = hashlib.sha256(code.encode("ascii")).digest()
        duplicate = key in self._seen
        self._seen[key] = now  # sliding: a code held in front of the scanner stays one scan
        return duplicate

    # -- listening for good -------------------------------------------------------------------

    def scans(
        self,
        stop: threading.Event | None = None,
        *,
        reopen: Callable[[], object] | None = None,
        poll: float = 0.2,
        backoff: Backoff | None = None,
    ) -> Iterator[ScanResult]:
        """Every scan and every problem, as values, until ``stop`` (or :meth:`stop`) is set.

        Yields :class:`QrCredential` for each scan, :class:`~sscard.errors.ScanRejected` for each
        bad line (and goes on listening) and :class:`~sscard.errors.DeviceRemoved` when the scanner
        is unplugged.  Without ``reopen`` the generator ends after DeviceRemoved.  With it (for a
        ``SerialPort``: ``lambda: port.reopen(timeout=0)``, which raises DeviceNotFound while the
        port is absent) it retries with backoff, yields :class:`ScannerRestored` once the
        device is back, and resumes.  ``stop`` is checked at least every ``poll`` seconds.
        A kiosk runs this on its own thread, one per scanner, and forwards each value as an event.
        """
        stop = stop or self._stop
        delays = backoff or Backoff()
        while not stop.is_set():
            try:
                credential = self.read_scan(poll)
            except ScanRejected as exc:
                yield exc
                continue
            except DeviceRemoved as exc:
                self.discard()
                yield exc
                if reopen is None or not self._reopen(reopen, stop, delays):
                    return
                yield ScannerRestored(self.device, _now())
                continue
            if credential is not None:
                yield credential

    def _reopen(self, reopen: Callable[[], object], stop: threading.Event, backoff: Backoff) -> bool:
        for delay in backoff.delays():
            if stop.wait(delay):
                return False
            try:
                reopen()
            except (DeviceNotFound, DeviceRemoved) as exc:
                log.debug("scanner %s not back yet: %s", self.device, exc.detail)
                continue
            self.discard()
            log.info("scanner %s is back", self.device)
            return True
        return False  # pragma: no cover - delays() never ends

    def stop(self) -> None:
        """End :meth:`scans` (when it was started without its own ``stop`` event)."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self.stream.close()

    def __enter__(self) -> QrScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
