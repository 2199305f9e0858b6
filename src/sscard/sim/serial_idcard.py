"""A simulated resident ID-card reader on a pseudo-terminal (docs/card-reference.md §9).

Why one module of over 400 lines: the persona files, the frames and the pty thread are one
simulated device, with its own copy of the wire constants kept apart from :mod:`sscard.idcard` on
purpose, so splitting would only spread one device over files.

The other side of the wire for :mod:`sscard.idcard`: it reads request frames from the master end
of a pty pair and answers them as a reader's security module would, for an ID-card persona
(``sim/idcards/NAME.toml``).  Clients open the slave end (:attr:`SimulatedIdCardReader.path`) with
pyserial like any serial port.  Frames are built and parsed here, with this module's own code and
never :mod:`sscard.idcard`'s, so a test that reads this reader through the middleware checks the
middleware against an independent reading of the reference.

USB removal is modelled: :meth:`~SimulatedIdCardReader.unplug` closes the master (the client's
next read or write fails with ``EIO``: DEVICE_REMOVED) and :meth:`~SimulatedIdCardReader.plug`
makes a new pty and points the optional ``link`` at it, as udev repoints ``/dev/sscard-idcard``.

Switches for tests, settable at any time:

* ``card = None`` (or :meth:`take_card`): nothing on the reader, find answers ``80``;
* ``select_fails`` / ``read_fails``: select answers ``81``, read answers ``41``;
* ``sam_status``: the SAM-status answer (``0x90`` ready);
* ``silent``: commands are swallowed, never answered;
* ``unplug_on``: a command (e.g. ``b"\\x30\\x01"``) at which the reader is pulled out instead of
  answering (after :data:`UNPLUG_PAUSE`, while the client waits for the answer);
* one-shot faults on the next answers: :meth:`send_stray` (bytes before the frame),
  :meth:`corrupt_checksum`, :meth:`reply_with` (exact bytes instead of the answer).

Every request frame received is kept in :attr:`requests`, so tests assert the exact bytes sent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import select
import sys
import threading
import tty
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sscard import _toml as tomllib
from sscard.errors import ConfigError

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:  # pragma: no cover
        from importlib.abc import Traversable

log = logging.getLogger("sscard.sim.idcard")

# --- wire constants (docs/card-reference.md §9), kept apart from sscard.idcard on purpose ---------------------

SYNC = b"\xaa\xaa\xaa\x96\x69"
FIND, SELECT, READ, SAM_STATUS = b"\x20\x01", b"\x20\x02", b"\x30\x01", b"\x11\xff"
OK, FOUND, FIND_FAILED, SELECT_FAILED, READ_FAILED = 0x90, 0x9F, 0x80, 0x81, 0x41
BAD_CHECKSUM, BAD_LENGTH, BAD_COMMAND = 0x10, 0x11, 0x21
#: Field widths of the text block in bytes (UCS-2 little-endian, space padded), in order.
WIDTHS = (
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
PHOTO_SIZE = 1024
#: How long the reader works on an ``unplug_on`` command before it is pulled out (seconds).
UNPLUG_PAUSE = 0.1
PHOTO_MARKER = b"SSCARD SIMULATED WLT - NOT A PHOTO\n"


def _xor(data: bytes) -> int:
    out = 0
    for byte in data:
        out ^= byte
    return out


def answer_frame(status: int, data: bytes = b"") -> bytes:
    """A response: sync, length of what follows, status ``00 00 SS``, data, XOR from the length on."""
    body = bytes((0, 0, status)) + data
    length = (len(body) + 1).to_bytes(2, "big")
    return SYNC + length + body + bytes((_xor(length + body),))


# --- personas ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdCardPersona:
    """One resident ID card's chip content, as the strings the chip holds (docs/card-reference.md §9)."""

    key: str
    description: str
    name: str
    gender: str
    nation: str
    birth_date: str  # YYYYMMDD
    address: str
    id_number: str
    issuer: str
    valid_from: str  # YYYYMMDD
    valid_to: str  # YYYYMMDD or 长期
    photo: bytes = field(default=b"", repr=False)

    def text_block(self) -> bytes:
        """The 256-byte text block: each field UCS-2 LE, right-padded with spaces to its width."""
        out = bytearray()
        for key, width in WIDTHS:
            value = ("" if key == "reserved" else str(getattr(self, key))).encode("utf-16-le")
            out += value + " ".encode("utf-16-le") * ((width - len(value)) // 2)
        return bytes(out)


def synthetic_wlt(seed: str) -> bytes:
    """1024 deterministic bytes in place of the WLT photo: a marker, then hash output; no image."""
    out = bytearray(PHOTO_MARKER)
    counter = 0
    while len(out) < PHOTO_SIZE:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:PHOTO_SIZE])


def _folder() -> Traversable:
    return resources.files("sscard.sim").joinpath("idcards")


def list_idcards() -> list[str]:
    """Names of the bundled ID-card personas, sorted."""
    return sorted(entry.name[: -len(".toml")] for entry in _folder().iterdir() if entry.name.endswith(".toml"))


def load_idcard(name_or_path: str) -> IdCardPersona:
    """A bundled ID-card persona by name, or any file of the same shape by path."""
    if name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"ID-card persona file {name_or_path} not found")
        return _parse(path.stem, path.read_text(encoding="utf-8"))
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name_or_path) or name_or_path not in list_idcards():
        raise ConfigError(f"unknown ID-card persona {name_or_path!r}; available: {', '.join(list_idcards())}")
    return _parse(name_or_path, _folder().joinpath(f"{name_or_path}.toml").read_text(encoding="utf-8"))


def _parse(key: str, text: str) -> IdCardPersona:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"ID-card persona {key}: not valid TOML ({exc})") from None
    widths = dict(WIDTHS)

    def text_field(name: str) -> str:
        value = data.get(name)
        if not isinstance(value, str):
            raise ConfigError(f"ID-card persona {key}: {name} must be a string")
        if any(ord(ch) > 0xFFFF for ch in value) or len(value) * 2 > widths[name]:
            raise ConfigError(f"ID-card persona {key}: {name} must be at most {widths[name] // 2} UCS-2 characters")
        return value

    def date_field(name: str) -> str:
        value = data.get(name)
        if isinstance(value, str) and value == "长期" and name == "valid_to":
            return value
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = dt.date.fromisoformat(value)
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value.strftime("%Y%m%d")
        allowed = "a date YYYY-MM-DD or 长期" if name == "valid_to" else "a date YYYY-MM-DD"
        raise ConfigError(f"ID-card persona {key}: {name} must be {allowed}")

    name = text_field("name")
    return IdCardPersona(
        key=key,
        description=str(data.get("description", "")),
        name=name,
        gender=text_field("gender"),
        nation=text_field("nation"),
        birth_date=date_field("birth_date"),
        address=text_field("address"),
        id_number=text_field("id_number"),
        issuer=text_field("issuer"),
        valid_from=date_field("valid_from"),
        valid_to=date_field("valid_to"),
        photo=synthetic_wlt(f"{key}:{name}"),
    )


# --- the reader -------------------------------------------------------------------------------


class _Pty:
    """One plug-in of the reader: a pty pair in raw mode and the thread answering on it."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no CR/LF or XON/XOFF handling: bytes pass as they are
        self.device = os.ttyname(self.slave)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for fd in (self.master, self.slave):
                with contextlib.suppress(OSError):
                    os.close(fd)


class SimulatedIdCardReader:
    """An ID-card reader with ``card`` on it, plugged in at construction; use as a context manager."""

    def __init__(
        self, card: IdCardPersona | None = None, *, link: str | os.PathLike[str] | None = None, sam_status: int = OK
    ) -> None:
        self.link = Path(link) if link is not None else None
        self.sam_status = sam_status
        self.select_fails = False
        self.read_fails = False
        self.silent = False
        self.unplug_on: bytes | None = None
        #: Every request frame received, in order (raw bytes, including bad ones).
        self.requests: list[bytes] = []
        self._lock = threading.RLock()
        self._card = card
        self._found = False
        self._selected = False
        self._stray: list[bytes] = []
        self._corrupt = 0
        self._replies: list[bytes] = []
        self._pty: _Pty | None = None
        self.plug()

    # --- state ----------------------------------------------------------------------------

    @property
    def card(self) -> IdCardPersona | None:
        return self._card

    @card.setter
    def card(self, card: IdCardPersona | None) -> None:
        with self._lock:
            self._card, self._found, self._selected = card, False, False

    def place(self, card: IdCardPersona) -> None:
        self.card = card

    def take_card(self) -> None:
        self.card = None

    @property
    def device(self) -> str:
        """The current slave device (``/dev/pts/N``); it changes at every :meth:`plug`."""
        if self._pty is None:
            raise ConfigError("the simulated ID-card reader is unplugged")
        return self._pty.device

    @property
    def path(self) -> str:
        """What a client opens: the stable link when there is one, else the current device."""
        return str(self.link) if self.link is not None else self.device

    @property
    def plugged(self) -> bool:
        return self._pty is not None

    # --- one-shot faults ------------------------------------------------------------------

    def send_stray(self, data: bytes, times: int = 1) -> None:
        """The next ``times`` answers are preceded by ``data`` (line noise, a half frame)."""
        with self._lock:
            self._stray.extend([data] * times)

    def corrupt_checksum(self, times: int = 1) -> None:
        """The next ``times`` answers carry a wrong checksum byte."""
        with self._lock:
            self._corrupt += times

    def reply_with(self, raw: bytes) -> None:
        """The next command is answered with exactly ``raw`` (queued; one per command)."""
        with self._lock:
            self._replies.append(raw)

    # --- plugging -------------------------------------------------------------------------

    def plug(self) -> None:
        """A new pty (a new device), the link pointed at it, and the answering thread started."""
        with self._lock:
            if self._pty is not None:
                return
            if self.link is not None and self.link.exists() and not self.link.is_symlink():
                raise ConfigError(f"{self.link} exists and is not a symlink: not replacing it")
            pty = _Pty()
            if self.link is not None:
                tmp = self.link.with_name(self.link.name + ".new")
                try:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
                    tmp.symlink_to(pty.device)
                    tmp.replace(self.link)  # atomically, as udev repoints a link
                except OSError as exc:
                    pty.close()
                    raise ConfigError(f"cannot make the link {self.link}: {exc}") from None
            pty.thread = threading.Thread(target=self._serve, args=(pty,), name="sim-idcard", daemon=True)
            self._pty = pty
            pty.thread.start()
            log.info("simulated ID-card reader plugged in at %s", self.path)

    def unplug(self) -> None:
        """Pull the reader out: the link disappears and the pty closes (clients get EIO)."""
        with self._lock:
            pty, self._pty = self._pty, None
            if pty is None:
                return
            pty.stop.set()
            # Under the lock, so a plug() right after the client sees EIO keeps its new link.
            if self.link is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.link.unlink()
        if pty.thread is not None and pty.thread is not threading.current_thread():
            pty.thread.join(timeout=2.0)  # it stops within one 50 ms poll unless stuck writing
        pty.close()
        log.info("simulated ID-card reader unplugged")

    def close(self) -> None:
        self.unplug()

    def __enter__(self) -> SimulatedIdCardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- serving --------------------------------------------------------------------------

    def _serve(self, pty: _Pty) -> None:
        buf = bytearray()
        while not pty.stop.is_set():
            try:
                ready, _, _ = select.select([pty.master], [], [], 0.05)
                if not ready:
                    continue
                chunk = os.read(pty.master, 4096)
            except OSError:
                return
            buf += chunk
            for request in _take_requests(buf):
                if not self._handle(pty, request):
                    return

    def _handle(self, pty: _Pty, request: bytes) -> bool:
        """Answer one request; False once the reader has been pulled out."""
        with self._lock:
            self.requests.append(request)
            pull_out = self.unplug_on is not None and request[7:9] == self.unplug_on
        if pull_out:
            # Pulled out while working on the command: the client has finished sending it and
            # waits for the answer, as during a real read (which takes about a second).
            pty.stop.wait(UNPLUG_PAUSE)
            log.info("simulated ID-card reader pulled out on command %s", request[7:9].hex().upper())
            self.unplug()
            return False
        with self._lock:
            if self.silent:
                return True
            answer = self._replies.pop(0) if self._replies else self._answer(request)
            if self._corrupt:
                self._corrupt -= 1
                answer = answer[:-1] + bytes((answer[-1] ^ 0xFF,))
            if self._stray:
                answer = self._stray.pop(0) + answer
        try:
            _write_all(pty.master, answer)
        except OSError:
            return False
        return True

    def _answer(self, request: bytes) -> bytes:
        length = int.from_bytes(request[5:7], "big")
        if length < 3:
            return answer_frame(BAD_LENGTH)
        if _xor(request[5:-1]) != request[-1]:
            return answer_frame(BAD_CHECKSUM)
        command = request[7:9]
        card = self._card
        if command == FIND:
            self._found = card is not None
            return answer_frame(FOUND, bytes(4)) if self._found else answer_frame(FIND_FAILED)
        if command == SELECT:
            self._selected = self._found and not self.select_fails
            return answer_frame(OK, bytes(8)) if self._selected else answer_frame(SELECT_FAILED)
        if command == READ:
            if card is None or not self._selected or self.read_fails:
                return answer_frame(READ_FAILED)
            text = card.text_block()
            lengths = len(text).to_bytes(2, "big") + len(card.photo).to_bytes(2, "big")
            return answer_frame(OK, lengths + text + card.photo)
        if command == SAM_STATUS:
            return answer_frame(self.sam_status)
        return answer_frame(BAD_COMMAND)


def _take_requests(buf: bytearray) -> list[bytes]:
    """Whole request frames off the front of ``buf``; noise before a sync is dropped."""
    out: list[bytes] = []
    while True:
        start = buf.find(SYNC)
        if start < 0:
            del buf[: max(0, len(buf) - (len(SYNC) - 1))]
            return out
        del buf[:start]
        if len(buf) < 7:
            return out
        end = 7 + int.from_bytes(buf[5:7], "big")
        if len(buf) < end:
            return out
        out.append(bytes(buf[:end]))
        del buf[:end]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
