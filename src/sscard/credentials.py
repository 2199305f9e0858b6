"""One terminal, any credential: an SSC card, a QR code (electronic SSC, medical insurance
e-voucher), or a resident ID card — whichever the resident offers first (docs/serial.md).

Each source waits on its own thread: the card reader blocks in pcscd's state-change wait, the QR
scanner reads its serial line, the ID-card reader is asked "find card" every
:data:`IDCARD_POLL_S` (its protocol has no notification: the device must be asked).  The first
credential wins and the others are stopped.  A serial device that is unplugged is reported as a
``device_removed`` event and waited for; the other sources keep serving (issue 5 item 3).

The card itself is read on the caller's thread after it wins, so the card reader is never used
by two threads at once.  Nor is a serial port: a follower (:func:`follow_scanner`,
:func:`follow_idcard`: the service, ``sscard watch``) yields the port to a credential wait in the
same process for as long as the wait lasts and takes it back afterwards, since a serial port read
by two threads gives each part of the bytes (issue 14: the service's ``/v1/medical/credential``,
the native library's calls).

Why one module of over 400 lines: the one-off wait and the resident process's followers share
the sources (the card, the scanner's scans, the ID-card reader's reads) and the port hand-over
between them; split, the hand-over would sit apart from the two sides it coordinates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sscard.clock import local_now as _now
from sscard.errors import (
    DeviceNotFound,
    DeviceRemoved,
    DeviceTimeout,
    FrameError,
    IdCardNoCard,
    IdCardReadFailed,
    IdCardSelectFailed,
    SscardError,
    Timeout,
)
from sscard.events import Event, EventKind
from sscard.idcard import IdCardReader, IdCardRecord
from sscard.qr import QrConfig, QrCredential, QrScanner, ScannerRestored

if TYPE_CHECKING:
    from sscard.apps.ssc import CardRead
    from sscard.config import Config
    from sscard.transports.base import Reader


class CardTerminal(Protocol):
    """What waiting for a credential needs of a terminal (:class:`sscard.terminal.Terminal` is one):
    its reader, to wait for a card, and the social security card's read.  A protocol, so that this
    module, which the terminal uses, does not import the terminal back."""

    @property
    def reader(self) -> Reader: ...

    def read(self, app: Literal["ssc"]) -> CardRead: ...


log = logging.getLogger("sscard.credentials")

#: How often an ID-card reader is asked whether a card lies on it.
IDCARD_POLL_S = 0.3
#: How often a missing serial port is looked for again.
REOPEN_S = 0.5
#: How long one slice of the card wait lasts, so a stopped wait ends promptly.
CARD_SLICE_S = 0.5
#: How long a credential wait gives a scanner follower to close the port before opening it anyway.
YIELD_TIMEOUT_S = 3.0
#: How long a winner waits for the ID-card source's first "find card", so an ID card presented
#: at the same time is reported as also presented (one exchange: a few milliseconds when the
#: reader answers; bounded when it does not).
LOSER_LOOK_S = 0.5


class CredentialKind(str, enum.Enum):
    SSC_CARD = "ssc_card"
    QR = "qr"
    ID_CARD = "id_card"


@dataclass(frozen=True)
class Credential:
    """Whatever the resident offered; exactly one of ``card``, ``qr``, ``id_card`` is set.

    ``also_presented``: the other credentials seen during the same wait, which lost the race (an
    SSC still in the reader, an ID card found on its reader, a QR code scanned after the winner).
    They are reported, not read into this result: a card and an ID card stay where they are and
    the next wait returns them; a QR code that lost is named here (its code in ``lost_scans``)
    rather than replayed to a later wait, which may be another resident's.
    """

    kind: CredentialKind
    source: str
    card: CardRead | None = None
    qr: QrCredential | None = None
    id_card: IdCardRecord | None = None
    also_presented: tuple[CredentialKind, ...] = ()
    lost_scans: tuple[QrCredential, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "source": self.source}
        if self.card is not None:
            out["card"] = self.card.to_json()
        if self.qr is not None:
            out["qr"] = self.qr.to_json()
        if self.id_card is not None:
            out["id_card"] = self.id_card.to_json()
        if self.also_presented:
            out["also_presented"] = [kind.value for kind in self.also_presented]
        return out


def qr_config(config: Config) -> QrConfig:
    """The scanner settings of ``[qr]``: one place, so every reader of the scanner agrees."""
    return QrConfig(baudrate=config.qr_baudrate, terminator=config.qr_terminator, dedup_window=config.qr_dedup_window)


_Item = tuple[str, Any]


class _Sources:
    """The source threads of one wait, and the queue they report to."""

    def __init__(self, stop: threading.Event | None = None, publish: Callable[[Event], None] | None = None) -> None:
        self.results: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self.stop = stop or threading.Event()
        self.threads: list[threading.Thread] = []
        self.closers: list[Callable[[], None]] = []
        #: Sources that saw their credential (an ID card found), even if they were stopped
        #: before they had read it: what lost the race is reported (Credential.also_presented).
        self.seen: set[CredentialKind] = set()
        #: Set once the ID-card source has asked its reader "find card" a first time: a winner
        #: waits for that look (at most LOSER_LOOK_S) so that an ID card lying there is reported.
        self.looked = threading.Event()
        self.looked.set()  # no ID-card source: nothing to wait for
        #: Where device events go: straight to ``publish`` (``follow_scanner``), else onto the
        #: results queue for the waiting thread to hand to its ``on_event``.
        self._publish = publish

    def start(self, name: str, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except Exception as exc:  # a bug in a source must not hang the wait: report it
                if self.stop.is_set():
                    # Stopped: close() shut the port under the reading thread, and pyserial raises
                    # whatever the closed descriptor gives it.  Nobody waits for this source any more.
                    log.debug("credential source %s ended while stopping: %r", name, exc)
                    return
                log.exception("credential source %s failed", name)
                self.results.put(("error", exc))

        thread = threading.Thread(target=run, name=f"sscard-{name}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def event(self, event_kind: EventKind, device: str, detail: str | None = None, **data: Any) -> None:
        event = Event(event_kind, device, time=_now(), detail=detail, data=data or None)
        if self._publish is not None:
            self._publish(event)
        else:
            self.results.put(("event", event))

    def close(self) -> None:
        self.stop.set()
        for closer in self.closers:
            try:
                closer()
            except Exception:
                log.debug("closing a credential source failed", exc_info=True)
        for thread in self.threads:
            thread.join(timeout=2.0)


class _Pause(threading.Event):
    """A follower's stop: set by a wait that claims the port, and set too whenever the follower's
    own ``stop`` is, so the scanner, which checks one event, notices either."""

    def __init__(self, outer: threading.Event) -> None:
        super().__init__()
        self.outer = outer

    def is_set(self) -> bool:
        return super().is_set() or self.outer.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            super().wait(0.1 if remaining is None else min(remaining, 0.1))
        return True


class _ScannerPort:
    """The users of one QR scanner port in this process: the followers that have it open, and the
    credential waits that claimed it."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.waits = 0
        self.followers: set[_Pause] = set()


_SCANNER_PORTS: dict[str, _ScannerPort] = {}
_SCANNER_PORTS_LOCK = threading.Lock()


def _scanner_port(path: str) -> _ScannerPort:
    with _SCANNER_PORTS_LOCK:
        return _SCANNER_PORTS.setdefault(path, _ScannerPort())


@contextlib.contextmanager
def _claim_scanner(path: str) -> Iterator[None]:
    """The port at ``path`` for a credential wait: followers close it (up to YIELD_TIMEOUT_S) and
    wait until the claim ends before they open it again."""
    port = _scanner_port(path)
    with port.cond:
        port.waits += 1
        for pause in port.followers:
            pause.set()
        if not port.cond.wait_for(lambda: not port.followers, YIELD_TIMEOUT_S):
            log.warning("a scanner follower of %s did not let go of the port in time", path)
    try:
        yield
    finally:
        with port.cond:
            port.waits -= 1
            port.cond.notify_all()


def claim_port(path: str) -> contextlib.AbstractContextManager[None]:
    """The serial port at ``path`` for a one-off exchange in this process (libHeaSecReadInfo's
    ``ReadSFZ``, a vendor bridge's ``read_idcard``): the service's follower of that port lets go of
    it for as long as the ``with`` lasts, as it does for a credential wait."""
    return _claim_scanner(path)


def _open_port(sources: _Sources, path: str, baudrate: int) -> Any:
    """Open a serial port, waiting (and saying so once) while the device is absent."""
    from sscard.transports.serial import SerialPort

    told = False
    while not sources.stop.is_set():
        try:
            port = SerialPort(path, baudrate)
            if told:
                sources.event(EventKind.DEVICE_RESTORED, path)
            return port
        except DeviceNotFound as exc:
            if not told:
                sources.event(EventKind.DEVICE_REMOVED, path, exc.detail)
                told = True
            sources.stop.wait(REOPEN_S)
    return None


def wait_for_credential(
    terminal: CardTerminal,
    timeout: float | None = None,
    *,
    card: bool = True,
    qr_port: str | None = None,
    qr_config: QrConfig | None = None,
    idcard_port: str | None = None,
    idcard_baudrate: int = 115200,
    on_event: Callable[[Event], None] | None = None,
) -> Credential:
    """The first credential offered at ``terminal``: see :meth:`sscard.terminal.Terminal.wait_for_credential`."""
    sources = _Sources()
    if card:
        sources.start("card", lambda: _wait_card(terminal, sources))
    if qr_port:
        config = qr_config or QrConfig()
        sources.start("qr", lambda: _read_qr(sources, qr_port, config))
    if idcard_port:
        sources.looked.clear()
        sources.start("idcard", lambda: _read_idcard(sources, idcard_port, idcard_baudrate))
    if not sources.threads:
        raise ValueError("no credential source: enable the card, a QR port or an ID-card port")
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise Timeout("a credential", f"none within {timeout:g} s", what_zh="读卡或扫码")
            try:
                kind, value = sources.results.get(timeout=remaining)
            except queue.Empty:
                continue
            if kind == "event":
                if on_event is not None:
                    on_event(value)
                continue
            if kind == "error":
                raise value
            sources.looked.wait(LOSER_LOOK_S)  # the ID-card reader asked once: what lies there
            sources.close()  # stop the others before touching the card
            winner = _WINNERS[kind]
            also, lost = _losers(terminal, sources, winner, card=card)
            if kind == "card":
                card_read = terminal.read("ssc")  # an SSC credential; another card is NOT_SSC here
                found = Credential(CredentialKind.SSC_CARD, card_read.reader, card=card_read)
            elif kind == "qr":
                found = Credential(CredentialKind.QR, value.device, qr=value)
            else:
                record, device = value
                found = Credential(CredentialKind.ID_CARD, device, id_card=record)
            if also:
                log.info("credential %s won; also presented: %s", winner.value, ", ".join(k.value for k in also))
                found = dataclasses.replace(found, also_presented=also, lost_scans=lost)
            return found
    finally:
        sources.close()


_WINNERS = {"card": CredentialKind.SSC_CARD, "qr": CredentialKind.QR, "idcard": CredentialKind.ID_CARD}


def _losers(
    terminal: CardTerminal, sources: _Sources, winner: CredentialKind, *, card: bool
) -> tuple[tuple[CredentialKind, ...], tuple[QrCredential, ...]]:
    """What else was presented during the wait (the sources are stopped and joined): results
    still queued, an ID card its source had found, and a card in the reader when the card lost."""
    seen = set(sources.seen)
    lost: list[QrCredential] = []
    while True:
        try:
            kind, value = sources.results.get_nowait()
        except queue.Empty:
            break
        if kind in _WINNERS:
            seen.add(_WINNERS[kind])
            if kind == "qr":
                lost.append(value)
    if card and winner is not CredentialKind.SSC_CARD and CredentialKind.SSC_CARD not in seen:
        with contextlib.suppress(SscardError):
            if terminal.reader.card_present():
                seen.add(CredentialKind.SSC_CARD)
    seen.discard(winner)
    order = (CredentialKind.SSC_CARD, CredentialKind.ID_CARD, CredentialKind.QR)
    return tuple(k for k in order if k in seen), tuple(lost)


def _wait_card(terminal: CardTerminal, sources: _Sources) -> None:
    while not sources.stop.is_set():
        try:
            terminal.reader.wait_for_card(CARD_SLICE_S)
        except Timeout:
            continue
        sources.results.put(("card", None))
        return


def _scans(sources: _Sources, path: str, config: QrConfig) -> Iterator[QrCredential]:
    """The credentials of the scanner at ``path`` until ``sources.stop``; its device events (scans,
    removal and return) go to ``sources.event``, rejected scans to the log: listening goes on."""
    port = _open_port(sources, path, config.baudrate)
    if port is None:
        return
    sources.closers.append(port.close)
    try:
        for item in QrScanner(port, config).scans(sources.stop, reopen=lambda: port.reopen(timeout=0)):
            if isinstance(item, QrCredential):
                sources.event(EventKind.QR_SCANNED, path, kind=item.kind.value, code=item.code)
                yield item
            elif isinstance(item, ScannerRestored):
                sources.event(EventKind.DEVICE_RESTORED, path)
            elif isinstance(item, DeviceRemoved):
                sources.event(EventKind.DEVICE_REMOVED, path, item.detail)
            else:  # ScanRejected: the resident scans again
                log.info("scan rejected: %s", item.fields.get("reason"))
    finally:
        port.close()


def _read_qr(sources: _Sources, path: str, config: QrConfig) -> None:
    with _claim_scanner(path):
        for credential in _scans(sources, path, config):
            sources.results.put(("qr", credential))
            return


def _read_idcard(sources: _Sources, path: str, baudrate: int) -> None:
    if not os.path.exists(path):
        sources.looked.set()  # an unplugged reader has nothing on it to report
    with _claim_scanner(path):  # a follower (the service's [idcard]) lets go of the port meanwhile
        for record in _idcards(sources, path, baudrate):
            sources.results.put(("idcard", (record, path)))
            return


def _idcards(
    sources: _Sources, path: str, baudrate: int, *, each_once: bool = False, lying: bool = False
) -> Iterator[IdCardRecord]:
    """The ID cards laid on the reader at ``path`` until ``sources.stop``, each published as
    ``id_card_read``.  ``each_once``: after a card is read, wait for it to be lifted before the
    next read (a card left lying on the reader is one offer, not one every poll); ``lying``: a
    card there now was read already (by the wait the follower yielded the port to)."""
    port = _open_port(sources, path, baudrate)
    if port is None:
        return
    sources.closers.append(port.close)
    reader = IdCardReader(port)
    while not sources.stop.is_set():
        try:
            try:
                reader.find()
            finally:
                sources.looked.set()
            sources.seen.add(CredentialKind.ID_CARD)  # on the reader, whether or not it wins
            if lying:  # still there: do not read it again
                sources.stop.wait(IDCARD_POLL_S)
                continue
            reader.select()
            record = reader.read()
        except IdCardNoCard:
            lying = False
            sources.seen.discard(CredentialKind.ID_CARD)
            sources.stop.wait(IDCARD_POLL_S)
            continue
        except DeviceRemoved as exc:
            lying = False
            sources.event(EventKind.DEVICE_REMOVED, path, exc.detail)
            while not sources.stop.is_set():
                try:
                    port.reopen(timeout=0)
                    sources.event(EventKind.DEVICE_RESTORED, path)
                    break
                except DeviceNotFound:
                    sources.stop.wait(REOPEN_S)
            continue
        except (FrameError, DeviceTimeout, IdCardSelectFailed, IdCardReadFailed) as exc:
            # A card moved while being read, noise on the line: try again, the resident is waiting.
            log.info("ID-card read did not complete (%s); trying again", exc.code)
            sources.stop.wait(IDCARD_POLL_S)
            continue
        except SscardError as exc:
            if each_once:  # a resident process: say so and keep serving
                log.warning("ID-card reader %s: %s; trying again", path, exc.code)
                sources.stop.wait(REOPEN_S)
                continue
            sources.results.put(("error", exc))
            return
        sources.event(EventKind.ID_CARD_READ, path, id_number_suffix=record.id_number[-4:])
        lying = each_once
        yield record


def _follow(path: str, stop: threading.Event, run: Callable[[threading.Event, bool], None]) -> None:
    """Run ``run(pause, resumed)`` on the port at ``path`` until ``stop``, letting go of the port
    whenever a credential wait in this process claims it, and taking it back when the wait ends."""
    port = _scanner_port(path)
    resumed = False
    while not stop.is_set():
        with port.cond:
            if port.waits:
                port.cond.wait(0.2)  # a wait has the port
                resumed = True
                continue
            pause = _Pause(stop)
            port.followers.add(pause)
        try:
            run(pause, resumed)
        finally:
            with port.cond:
                port.followers.discard(pause)
                port.cond.notify_all()


def follow_scanner(
    path: str,
    config: QrConfig,
    stop: threading.Event,
    publish: Callable[[Event], None],
    on_credential: Callable[[Credential], None] | None = None,
) -> None:
    """Publish every scan of the scanner at ``path`` as an event until ``stop`` (``sscard watch``,
    the service), and hand it to ``on_credential``.  A missing or unplugged scanner is
    ``device_removed`` (once) and waited for, then ``device_restored``; a rejected scan is logged
    and listening goes on.  While a credential wait in this process claims the port
    (:func:`wait_for_credential`), the port is closed and the wait publishes what it reads itself;
    following resumes when the wait ends."""

    def run(pause: threading.Event, resumed: bool) -> None:
        for credential in _scans(_Sources(pause, publish), path, config):
            if on_credential is not None:  # already published as qr_scanned
                on_credential(Credential(CredentialKind.QR, credential.device, qr=credential))

    _follow(path, stop, run)


def follow_idcard(
    path: str,
    baudrate: int,
    stop: threading.Event,
    publish: Callable[[Event], None],
    on_credential: Callable[[Credential], None],
) -> None:
    """Read every ID card laid on the reader at ``path`` until ``stop`` (the service's ``[idcard]``):
    each is published as ``id_card_read`` (the ID number's last four digits only) and handed to
    ``on_credential``; a card left lying there is read once.  An unplugged reader is
    ``device_removed`` and waited for, as the scanner is; a credential wait in this process gets
    the port as it gets the scanner's, and the card it read is not read again afterwards."""

    def run(pause: threading.Event, resumed: bool) -> None:
        for record in _idcards(_Sources(pause, publish), path, baudrate, each_once=True, lying=resumed):
            on_credential(Credential(CredentialKind.ID_CARD, path, id_card=record))

    _follow(path, stop, run)
