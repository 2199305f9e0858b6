"""PC/SC readers through pyscard's low-level ``smartcard.scard`` API.

Why one module of over 400 lines: the reader, the reader set and the transport share one set of
context, wait and handle helpers and the same rules for pcscd's codes; the binding and the code
table are already apart (:mod:`sscard.transports.pcsc_errors`), and so are the events.

This is the only module of sscard that imports pyscard (docs/design.md §1), and nothing imports it at
``import sscard`` time: :mod:`sscard.readers` loads it when a PC/SC reader is asked for.

The low-level API is used instead of pyscard's object layer because it hands back every PC/SC
result code, so each one can be turned into an error a person can act on (docs/design.md §10) through the
one table :data:`PCSC_ERRORS`.  A PC/SC context is established per operation (listing, waiting,
one connection) and released with it, so a restarted pcscd never leaves us holding a dead context
(the failure mode of pyscard issue #82).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sscard.errors import (
    CardRemoved,
    CardReset,
    NoCard,
    NoReader,
    SscardError,
    Timeout,
    TransportFailure,
)
from sscard.transports.base import ReaderBase, TransportBase
from sscard.transports.pcsc_errors import PCSC_ERRORS, _u32, pcsc_error, scard

if TYPE_CHECKING:
    from sscard.transports.watch import EventSource

__all__ = [
    "PCSC_ERRORS",
    "PcscReader",
    "PcscReaderSet",
    "PcscTransport",
    "find_reader",
    "list_readers",
    "pcsc_error",
    "scard",
]

log = logging.getLogger("sscard.pcsc")

#: The longest single blocking call, so Ctrl-C (delivered between Python bytecodes) gets through.
WAIT_SLICE_MS = 1000
#: How often a busy-reader retry looks again even if pcscd announces no state change: pcscd does
#: not signal every release of an exclusive connection to clients waiting on the reader's state.
BUSY_SLICE_MS = 100
#: How long a transmit that came back without a status word waits for pcscd to report the card gone.
CARD_GONE_GRACE_MS = 1000

_SHARE_MODES: Mapping[str, int] = {
    "shared": scard.SCARD_SHARE_SHARED,
    "exclusive": scard.SCARD_SHARE_EXCLUSIVE,
}
_PROTOCOLS: Mapping[str, int] = {"T0": scard.SCARD_PROTOCOL_T0, "T1": scard.SCARD_PROTOCOL_T1}
_PROTOCOL_NAMES: Mapping[int, str] = {scard.SCARD_PROTOCOL_T0: "T=0", scard.SCARD_PROTOCOL_T1: "T=1"}
_PCI: Mapping[int, int] = {scard.SCARD_PROTOCOL_T0: scard.SCARD_PCI_T0, scard.SCARD_PROTOCOL_T1: scard.SCARD_PCI_T1}

_SUCCESS = _u32(scard.SCARD_S_SUCCESS)
_TIMEOUT = _u32(scard.SCARD_E_TIMEOUT)
_SHARING_VIOLATION = _u32(scard.SCARD_E_SHARING_VIOLATION)
_NO_READERS = _u32(scard.SCARD_E_NO_READERS_AVAILABLE)
#: Codes that end a transaction only because the card itself went away: the lock went with it.
_LOCK_LOST_WITH_CARD = frozenset({_u32(scard.SCARD_W_REMOVED_CARD), _u32(scard.SCARD_W_RESET_CARD)})


def _check(code: int, action: str, *, connected: bool = True) -> None:
    if _u32(code) != _SUCCESS:
        raise pcsc_error(code, action, connected=connected)


@contextlib.contextmanager
def _pcsc_context() -> Iterator[int]:
    code, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    _check(code, "SCardEstablishContext", connected=False)
    try:
        yield context
    finally:
        _release_context(context)


def _release_context(context: int) -> None:
    code = scard.SCardReleaseContext(context)
    if _u32(code) != _SUCCESS:
        log.warning("%s", pcsc_error(code, "SCardReleaseContext", connected=False))


def _list_readers(context: int) -> list[str]:
    code, readers = scard.SCardListReaders(context, [])
    if _u32(code) == _NO_READERS:
        return []
    _check(code, "SCardListReaders", connected=False)
    return list(readers)


def _reader_states(context: int, readers: list[str]) -> dict[str, int]:
    """Each reader's current event state, without waiting."""
    if not readers:
        return {}
    code, states = scard.SCardGetStatusChange(context, 0, [(name, scard.SCARD_STATE_UNAWARE) for name in readers])
    _check(code, "SCardGetStatusChange", connected=False)
    return {name: int(state) for name, state, _atr in states}


def list_readers() -> list[str]:
    """Names of the readers pcscd knows, empty when it has none; NoService when pcscd is not running."""
    with _pcsc_context() as context:
        return _list_readers(context)


def find_reader(pattern: str | None = None) -> str:
    """The reader to use: first whose name contains ``pattern`` (case-insensitive).

    Without a pattern, the first reader that holds a card, else the first reader, so a kiosk with one
    reader needs no configuration and one with a PSAM slot (a second "reader", docs/card-reference.md §5) picks
    the slot the person put a card in.
    """
    with _pcsc_context() as context:
        readers = _list_readers(context)
        if pattern:
            for name in readers:
                if pattern.lower() in name.lower():
                    return name
            shown = ", ".join(repr(name) for name in readers) or "none"
            raise NoReader(f"no reader name contains {pattern!r}; readers: {shown}")
        if not readers:
            raise NoReader("pcscd lists no readers")
        states = _reader_states(context, readers)
        for name in readers:
            if states[name] & scard.SCARD_STATE_PRESENT:
                return name
        return readers[0]


def _poll_readers(context: int, known: Mapping[str, int], timeout_ms: int) -> dict[str, int] | None:
    """One SCardGetStatusChange over ``known``: every reader's new event state, or None on timeout."""
    code, states = scard.SCardGetStatusChange(context, timeout_ms, list(known.items()))
    if _u32(code) == _TIMEOUT:
        return None
    _check(code, f"SCardGetStatusChange({', '.join(map(repr, known))})", connected=False)
    result: dict[str, int] = {}
    for name, raw, _atr in states:
        state = int(raw)
        if state & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
            raise NoReader(f"reader {name!r} is gone or unavailable (state 0x{state:X})")
        result[name] = state & ~scard.SCARD_STATE_CHANGED
    return result


def _wait_any(names: Sequence[str], *, present: bool, timeout: float | None, what: str) -> str:
    """Block until one of ``names`` shows a card (or, ``present=False``, until all are empty).

    Blocks on pcscd's state-change notification, in slices of at most WAIT_SLICE_MS so Ctrl-C gets
    through.  Returns the reader that ended the wait.
    """
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    with _pcsc_context() as context:
        known = dict.fromkeys(names, scard.SCARD_STATE_UNAWARE)
        wait_ms = 0
        while True:
            states = _poll_readers(context, known, wait_ms)
            if states is not None:
                known = states
                with_card = [name for name in names if known[name] & scard.SCARD_STATE_PRESENT]
                if present and with_card:
                    return with_card[0]
                if not present and not with_card:
                    return names[0]
            if deadline is None:
                wait_ms = WAIT_SLICE_MS
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                what_zh = "拔卡" if what == "card removal" else "插卡"
                raise Timeout(what, f"{timeout:g} s on {', '.join(map(repr, names))}", what_zh=what_zh)
            wait_ms = min(WAIT_SLICE_MS, max(1, math.ceil(remaining * 1000)))


def _parse_protocols(protocols: str) -> int:
    mask = 0
    for part in protocols.replace(" ", "").upper().replace("=", "").split("|"):
        if part not in _PROTOCOLS:
            raise ValueError(f"unknown protocol {part!r} in {protocols!r}; use T0, T1 or T0|T1")
        mask |= _PROTOCOLS[part]
    return mask


class PcscReader(ReaderBase):
    """One PC/SC reader by name; connects on demand and waits for cards without polling."""

    def __init__(self, name: str, busy_wait: float = 0.0) -> None:
        self._name = name
        #: Seconds :meth:`connect` keeps trying while another program holds the reader exclusively.
        self.busy_wait = busy_wait
        #: The transport of the last successful :meth:`connect`, for diagnostics.
        self.last: PcscTransport | None = None

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"PcscReader({self._name!r})"

    def event_source(self) -> EventSource:
        """pcscd's events (filter them by this reader's name): see :mod:`sscard.events`."""
        from sscard.transports.pcsc_events import PcscEventSource

        return PcscEventSource()

    def card_present(self) -> bool:
        with _pcsc_context() as context:
            state = self._poll(context, scard.SCARD_STATE_UNAWARE, 0)
        return state is not None and bool(state & scard.SCARD_STATE_PRESENT)

    def wait_for_card(self, timeout: float | None = None) -> None:
        """Block until a card is in the reader; Timeout("card") after ``timeout`` seconds."""
        self._wait(present=True, timeout=timeout, what="card")

    def wait_for_removal(self, timeout: float | None = None) -> None:
        """Block until the reader is empty, e.g. before telling the person to take the next step."""
        self._wait(present=False, timeout=timeout, what="card removal")

    def _poll(self, context: int, known_state: int, timeout_ms: int) -> int | None:
        """One SCardGetStatusChange: the new event state, or None if nothing changed in time."""
        states = _poll_readers(context, {self._name: known_state}, timeout_ms)
        return None if states is None else states[self._name]

    def _wait(self, *, present: bool, timeout: float | None, what: str) -> None:
        _wait_any([self._name], present=present, timeout=timeout, what=what)

    def connect(
        self,
        share: str = "shared",
        protocols: str = "T0|T1",
        *,
        busy_wait: float | None = None,
        reset_on_close: bool = False,
    ) -> PcscTransport:
        """Connect to the card now in the reader.

        ``share="exclusive"`` keeps every other program off the card for the whole connection.
        While another program holds the reader exclusively, keep trying for ``busy_wait`` seconds
        (default: the reader's) before raising ReaderBusy.  ``reset_on_close=True`` resets the card
        on :meth:`PcscTransport.close` so a verified PIN's security state cannot outlive the session
        for the next program to ride on; it is off by default because a reset sent to a card that
        has just vanished leaves some drivers (vpcd) unable to see the next card for many seconds.
        """
        if share not in _SHARE_MODES:
            raise ValueError(f"share must be one of {sorted(_SHARE_MODES)}, not {share!r}")
        mode, wanted = _SHARE_MODES[share], _parse_protocols(protocols)
        wait = self.busy_wait if busy_wait is None else busy_wait
        code, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        _check(code, "SCardEstablishContext", connected=False)
        try:
            handle, active = self._connect(context, mode, wanted, wait)
            try:
                code, _reader, _state, _protocol, atr = scard.SCardStatus(handle)
                _check(code, f"SCardStatus({self._name!r})")
            except BaseException:
                scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
                raise
        except BaseException:
            _release_context(context)
            raise
        disposition = scard.SCARD_RESET_CARD if reset_on_close else scard.SCARD_LEAVE_CARD
        self.last = PcscTransport(context, handle, self._name, active, bytes(atr), disposition=disposition)
        return self.last

    def _connect(self, context: int, mode: int, protocols: int, busy_wait: float) -> tuple[int, int]:
        action = f"SCardConnect({self._name!r})"
        deadline = time.monotonic() + max(busy_wait, 0.0)
        known = scard.SCARD_STATE_UNAWARE
        while True:
            code, handle, active = scard.SCardConnect(context, self._name, mode, protocols)
            if _u32(code) == _SUCCESS:
                return handle, int(active)
            remaining = deadline - time.monotonic()
            if _u32(code) != _SHARING_VIOLATION or remaining <= 0:
                if _u32(code) == _SHARING_VIOLATION and busy_wait > 0:
                    action += f" after waiting {busy_wait:g} s"
                raise pcsc_error(code, action, connected=False)
            # Wake as soon as pcscd reports a change, but look again at least every BUSY_SLICE_MS.
            state = self._poll(context, known, min(BUSY_SLICE_MS, max(1, math.ceil(remaining * 1000))))
            known = known if state is None else state


class PcscReaderSet(ReaderBase):
    """Several readers (or slots) as one, in order of preference: the card is in whichever holds one.

    This is how the national interface's iType 3/4 ("auto, contact first" / "contactless first",
    docs/card-reference.md §6) behaves: a resident may put the card in the contact slot or on the contactless
    pad, and the kiosk waits on both with one blocking call.
    """

    def __init__(self, names: Sequence[str], busy_wait: float = 0.0) -> None:
        if not names:
            raise ValueError("a reader set needs at least one reader")
        self.names = tuple(names)
        self.busy_wait = busy_wait
        self.last: PcscTransport | None = None

    @property
    def name(self) -> str:
        return self.last.name if self.last is not None and not self.last.closed else self.names[0]

    def __repr__(self) -> str:
        return f"PcscReaderSet({list(self.names)!r})"

    def _present(self) -> list[str]:
        with _pcsc_context() as context:
            states = _poll_readers(context, dict.fromkeys(self.names, scard.SCARD_STATE_UNAWARE), 0) or {}
        return [name for name in self.names if states.get(name, 0) & scard.SCARD_STATE_PRESENT]

    def card_present(self) -> bool:
        return bool(self._present())

    def event_source(self) -> EventSource:
        from sscard.transports.pcsc_events import PcscEventSource

        return PcscEventSource()

    def wait_for_card(self, timeout: float | None = None) -> None:
        _wait_any(self.names, present=True, timeout=timeout, what="card")

    def wait_for_removal(self, timeout: float | None = None) -> None:
        _wait_any(self.names, present=False, timeout=timeout, what="card removal")

    def connect(self, **options: Any) -> PcscTransport:
        """Connect to the card in the most preferred reader that holds one."""
        present = self._present()
        if not present:
            raise NoCard(f"no card in {', '.join(map(repr, self.names))}")
        options.setdefault("busy_wait", self.busy_wait)
        self.last = PcscReader(present[0]).connect(**options)
        return self.last


class PcscTransport(TransportBase):
    """One PC/SC connection (card handle plus its own context), made by :meth:`PcscReader.connect`."""

    def __init__(self, context: int, handle: int, reader: str, protocol: int, atr: bytes, *, disposition: int) -> None:
        if protocol not in _PCI:
            scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
            _release_context(context)
            raise TransportFailure(f"reader {reader!r} chose unsupported protocol 0x{protocol:X}")
        self._context: int | None = context
        self._handle: int | None = handle
        self._reader = reader
        self._protocol = protocol
        self._atr = atr
        self._disposition = disposition

    @property
    def name(self) -> str:
        return self._reader

    @property
    def atr(self) -> bytes:
        return self._atr

    @property
    def protocol(self) -> str:
        return _PROTOCOL_NAMES[self._protocol]

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __repr__(self) -> str:
        return f"PcscTransport({self._reader!r}, {self.protocol}, {'closed' if self.closed else 'open'})"

    def _open_handle(self) -> int:
        if self._handle is None:
            raise TransportFailure(f"connection to {self._reader!r} is closed")
        return self._handle

    def transmit(self, apdu: bytes) -> bytes:
        handle = self._open_handle()
        action = f"SCardTransmit({self._reader!r})"
        code, response = scard.SCardTransmit(handle, _PCI[self._protocol], list(apdu))
        code = _u32(code)
        if code == _SUCCESS and len(response) >= 2:
            return bytes(response)
        if code == _SUCCESS:
            error: SscardError = TransportFailure(f"{action}: response of {len(response)} bytes has no status word")
        elif code in _LOCK_LOST_WITH_CARD:
            # pcscd already knew the card was gone or reset and did not pass the command on.
            error = pcsc_error(code, action)
            if isinstance(error, CardRemoved):
                error.command_sent = False
        else:
            error = pcsc_error(code, action)
        if type(error) is TransportFailure:
            error = self._card_gone_or(handle, error)
        raise error

    def control(self, code: int, data: bytes) -> bytes:
        """``SCardControl`` on the card handle (PC/SC part 10: the PIN pad features); its answer.

        A non-success code is the PC/SC error it names (TransportFailure for an unsupported or
        failed control code).  The data may carry a PIN_VERIFY_STRUCTURE: never logged.
        """
        handle = self._open_handle()
        result, answer = scard.SCardControl(handle, code, list(data))
        result = _u32(result)
        if result != _SUCCESS:
            raise pcsc_error(result, f"SCardControl({self._reader!r}, 0x{code:08X})")
        return bytes(answer)

    def _card_gone_or(self, handle: int, error: SscardError) -> SscardError:
        """CardRemoved if the card left during a failed exchange, else ``error`` unchanged.

        A card pulled mid-APDU makes the driver report a communication failure (vpcd even reports
        success with an empty answer), and pcscd notices the removal only at its next presence poll
        (400 ms in pcsc-lite).  Give it up to CARD_GONE_GRACE_MS to say so: CardRemoved tells a kiosk
        to ask for the card again, where a bare transport failure would not.
        """
        context = self._context
        deadline = time.monotonic() + CARD_GONE_GRACE_MS / 1000
        known = scard.SCARD_STATE_UNAWARE
        while True:
            code = _u32(scard.SCardStatus(handle)[0])
            if code != _SUCCESS:
                gone = pcsc_error(code, f"{error.detail}; then SCardStatus")
                return gone if isinstance(gone, CardRemoved | CardReset | NoReader) else error
            remaining_ms = math.ceil((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or context is None:
                return error
            code, states = scard.SCardGetStatusChange(context, remaining_ms, [(self._reader, known)])
            if _u32(code) == _SUCCESS:
                known = int(states[0][1]) & ~scard.SCARD_STATE_CHANGED
            elif _u32(code) != _TIMEOUT:
                return error

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return self._transaction()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        handle = self._open_handle()
        _check(scard.SCardBeginTransaction(handle), f"SCardBeginTransaction({self._reader!r})")
        try:
            yield
        except BaseException:
            self._end_transaction(handle, failing=True)
            raise
        self._end_transaction(handle, failing=False)

    def _end_transaction(self, handle: int, *, failing: bool) -> None:
        """End the transaction; its own failure never replaces the error that is already on its way.

        A card removed or reset after the last response took the lock with it: the operation's
        results stand, so that is logged rather than raised.
        """
        if self._handle != handle:
            return  # closed inside the transaction: the disconnect ended it
        code = _u32(scard.SCardEndTransaction(handle, scard.SCARD_LEAVE_CARD))
        if code == _SUCCESS:
            return
        error = pcsc_error(code, f"SCardEndTransaction({self._reader!r})")
        if failing or code in _LOCK_LOST_WITH_CARD:
            log.info("%s", error)
            return
        raise error

    def reset_and_close(self) -> None:
        """Close with SCARD_RESET_CARD: the card loses its security state (a verified PIN)."""
        self._disposition = scard.SCARD_RESET_CARD
        self.close()

    def close(self) -> None:
        """Disconnect and release the context; safe to call twice and never raises (it runs in cleanup)."""
        handle, self._handle = self._handle, None
        context, self._context = self._context, None
        if handle is not None:
            code = scard.SCardDisconnect(handle, self._disposition)
            if _u32(code) != _SUCCESS:
                log.info("%s", pcsc_error(code, f"SCardDisconnect({self._reader!r})"))
        if context is not None:
            _release_context(context)
