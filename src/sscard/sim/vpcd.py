"""Put a :class:`~sscard.sim.card.SimulatedCard` (or a simulated PSAM) into pcscd through vpcd.

vpcd (Debian ``vsmartcard-vpcd``) is a PC/SC reader driver that listens on TCP 127.0.0.1:35963
for slot 0 ("Virtual PCD 00 00"), 35964 for slot 1, and so on; a virtual card is a client of that
socket.  Connecting is inserting the card, closing the socket is pulling it.  With the simulator
behind it, every PC/SC program on the machine — pyscard, ``pcsc_scan``, our own PC/SC transport —
sees a social security card, so the whole stack can be tested end to end without hardware.  Any
object with the :class:`VirtualCard` interface can be served: the PSAM of :mod:`sscard.sim.psam`
goes into slot 1 (``VpcdLink(psam, port=VpcdLink.port_for_slot(1))``), a kiosk's SAM slot.

Wire format, both directions: 2-byte big-endian length, then the payload.  From the reader a
1-byte payload is a control code (00 power off, 01 power on, 02 reset: no answer; 04 get ATR:
answer the ATR); anything longer is a command APDU, answered with the response APDU.

Latency: each APDU is one small request and one small answer.  Without ``TCP_NODELAY`` Nagle
holds our answer back, and without ``TCP_QUICKACK`` (re-armed before every receive, since Linux
clears it) delayed ACKs cost about 40 ms per APDU.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from sscard.errors import Timeout
from sscard.sim.card import CardGone
from sscard.transports.trace import redact_command

log = logging.getLogger("sscard.sim")

VPCD_HOST = "127.0.0.1"
VPCD_BASE_PORT = 35963
CTRL_POWER_OFF = 0x00
CTRL_POWER_ON = 0x01
CTRL_RESET = 0x02
CTRL_GET_ATR = 0x04
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
_RETRY_INTERVAL = 0.05


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class VirtualCard(Protocol):
    """What the link needs from a card: ATR, power, APDUs, presence, and a name and count for its logs.

    :class:`~sscard.sim.card.SimulatedCard` and :class:`~sscard.sim.psam.SimulatedPsam` both have it.
    """

    @property
    def persona(self) -> _Named: ...

    @property
    def atr(self) -> bytes: ...

    @property
    def present(self) -> bool: ...

    @property
    def apdu_count(self) -> int: ...

    def power_on(self) -> None: ...

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU; raise :class:`~sscard.sim.card.CardGone` once pulled."""
        ...


CardT = TypeVar("CardT", bound=VirtualCard)


class VpcdLink(Generic[CardT]):
    """One simulated card in one vpcd slot.  ``insert()`` serves it from a daemon thread.

    Anything unexpected in the serving thread is logged on ``sscard.sim`` and kept in
    :attr:`error`; the link then closes, which pcscd reports as the card being removed.
    """

    def __init__(
        self, card: CardT, host: str = VPCD_HOST, port: int = VPCD_BASE_PORT, *, reconnect: bool = False
    ) -> None:
        self.card = card
        self.host = host
        self.port = port
        #: Stay inserted across a pcscd restart: when vpcd closes the socket (pcscd stopped), keep
        #: trying to connect until it listens again, like a card that never left the reader.
        self.reconnect = reconnect
        #: The exception that ended the serving loop unexpectedly, if any.
        self.error: BaseException | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._apdu_count = 0
        #: ``time.monotonic()`` of vpcd's last power-on or reset of the card: the moment pcscd acted
        #: on the insertion it detected (benchmarks compare event latency against it).
        self.powered_at: float | None = None
        #: ``time.monotonic()`` of the last insert (socket connected) and remove (socket closed).
        self.inserted_at: float | None = None
        self.removed_at: float | None = None

    @staticmethod
    def port_for_slot(slot: int) -> int:
        """vpcd's port for reader slot ``slot`` ("Virtual PCD 00 0<slot>")."""
        if slot < 0:
            raise ValueError(f"no vpcd slot {slot}")
        return VPCD_BASE_PORT + slot

    @property
    def apdu_count(self) -> int:
        """Command APDUs answered over this link (control messages not counted)."""
        return self._apdu_count

    @property
    def connected(self) -> bool:
        return self._sock is not None

    # -- insert / remove --------------------------------------------------------------------

    def insert(self, timeout: float = 5.0) -> None:
        """Connect to vpcd (retrying until it listens) and serve the card in a daemon thread.

        A no-op while the card is inserted; after :meth:`remove` (or a pull) it inserts it again.
        """
        if self.connected:
            return
        sock = self._connect(timeout)
        self._thread = threading.Thread(target=self._serve, args=(sock,), name=f"sscard-vpcd-{self.port}", daemon=True)
        self._thread.start()

    def serve_forever(self, timeout: float = 5.0) -> None:
        """Blocking form for ``sscard sim insert``: serve until pulled, vpcd goes away, or Ctrl-C."""
        sock = self._connect(timeout)
        try:
            self._serve(sock)
        finally:
            self._stopping.set()
            self._close()

    def remove(self) -> None:
        """Pull the card: close the socket (vpcd then reports no card) and stop serving."""
        self._stopping.set()
        self._close()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
            if thread.is_alive():
                log.warning("vpcd serving thread on port %d did not stop", self.port)

    def __enter__(self) -> VpcdLink[CardT]:
        self.insert()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    # -- socket plumbing --------------------------------------------------------------------

    def _connect(self, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        self._stopping.clear()
        self.error = None
        while True:
            remaining = deadline - time.monotonic()
            try:
                sock = socket.create_connection((self.host, self.port), timeout=max(remaining, 0.1))
                break
            except OSError as exc:
                if time.monotonic() + _RETRY_INTERVAL >= deadline:
                    raise Timeout(f"vpcd on {self.host}:{self.port}", detail=str(exc)) from None
                time.sleep(_RETRY_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        with self._lock:
            self._sock = sock
        self.inserted_at = time.monotonic()
        log.info("card %s inserted into vpcd %s:%d", self.card.persona.name, self.host, self.port)
        return sock

    def _close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is None:
            return
        self.removed_at = time.monotonic()
        # shutdown() wakes a recv() blocked in the serving thread; it fails harmlessly when the
        # peer has already gone, which is the very state we are moving to.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    @property
    def serving(self) -> bool:
        """Inserted, or (with ``reconnect``) waiting for vpcd to come back."""
        thread = self._thread
        return self.connected or (thread is not None and thread.is_alive())

    def _serve(self, sock: socket.socket) -> None:
        while True:
            self._serve_once(sock)
            if not self.reconnect or self._stopping.is_set() or not self.card.present or self.error is not None:
                return
            log.info("vpcd on port %d went away (pcscd stopped?); waiting for it to come back", self.port)
            next_sock = self._wait_for_vpcd()
            if next_sock is None:
                return
            sock = next_sock

    def _wait_for_vpcd(self) -> socket.socket | None:
        """Connect again as soon as vpcd listens; None once :meth:`remove` is called."""
        while not self._stopping.wait(_RETRY_INTERVAL):
            try:
                sock = socket.create_connection((self.host, self.port), timeout=1.0)
            except OSError:
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(None)
            with self._lock:
                if self._stopping.is_set():
                    sock.close()
                    return None
                self._sock = sock
            log.info("card %s back in vpcd %s:%d", self.card.persona.name, self.host, self.port)
            return sock
        return None

    def _serve_once(self, sock: socket.socket) -> None:
        try:
            self._serve_loop(sock)
        except OSError as exc:
            if self._stopping.is_set():
                pass
            elif self.reconnect:
                log.info("vpcd link on port %d dropped: %s", self.port, exc)
            else:
                self.error = exc
                log.warning("vpcd link on port %d failed: %s", self.port, exc)
        except Exception as exc:
            # A simulator bug: say so loudly, then behave like a pulled card rather than hang pcscd.
            self.error = exc
            log.exception("simulated card on vpcd port %d crashed", self.port)
        finally:
            self._close()

    def _serve_loop(self, sock: socket.socket) -> None:
        while True:
            payload = _receive(sock)
            if payload is None:
                if not self._stopping.is_set():
                    log.info("vpcd on port %d closed the connection", self.port)
                return
            try:
                if len(payload) == 1:
                    self._control(sock, payload[0])
                    continue
                response = self.card.process(payload)
            except CardGone:
                log.info("card pulled after %d APDUs (remove_after)", self.card.apdu_count)
                return
            self._apdu_count += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s -> %s", redact_command(payload), response.hex().upper())
            _send(sock, response)
            if not self.card.present:
                log.info("card pulled after %d APDUs (remove_after)", self.card.apdu_count)
                return

    def _control(self, sock: socket.socket, code: int) -> None:
        if code in (CTRL_POWER_ON, CTRL_RESET):
            self.powered_at = time.monotonic()
            self.card.power_on()
        elif code == CTRL_GET_ATR:
            _send(sock, self.card.atr)
        elif code != CTRL_POWER_OFF:
            log.warning("vpcd sent unknown control code %02X; ignored", code)


def _receive(sock: socket.socket) -> bytes | None:
    """One length-prefixed message, or ``None`` when the peer closed the connection."""
    header = _receive_exactly(sock, 2)
    if header is None:
        return None
    body = _receive_exactly(sock, int.from_bytes(header, "big"))
    return body


def _receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    buffer = bytearray()
    while len(buffer) < size:
        if _QUICKACK is not None:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        chunk = sock.recv(size - len(buffer))
        if not chunk:
            return None
        buffer += chunk
    return bytes(buffer)


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(len(payload).to_bytes(2, "big") + payload)
