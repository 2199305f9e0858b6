"""What every PC/SC reader holds, and blocking until that changes: the raw feed of the event monitor.

One ``SCardGetStatusChange`` call watches every reader *and* the ``\\\\?PnP?\\Notification``
pseudo-reader, with an infinite timeout: pcscd wakes us when a card comes or goes or a reader is
plugged in or out, and :meth:`PcscEventSource.cancel` (``SCardCancel`` from another thread) wakes
us to stop.  There is no polling interval of our own, so an event costs nothing while nothing
happens and arrives as soon as pcscd knows of it.

This module only reports states (:class:`~sscard.transports.watch.ReaderSnapshot`); turning two states into events, and
surviving a pcscd that goes away, is the facade's job (:mod:`sscard.events`), so that logic is the
same for every source and testable without PC/SC.

pcsc-lite details relied on (pcsc-lite ``winscard_clnt.c``):

* the upper 16 bits of a reader's event state count its card events, so a card pulled and another
  pushed in between two of our calls still shows as a change (the counter moved);
* the upper 16 bits of the PnP pseudo-reader's event state count the readers;
* a client whose pcscd died gets ``SCARD_E_NO_SERVICE`` (or a communication error) from the
  blocked call; a new context is needed once pcscd is back.
"""

from __future__ import annotations

import logging
import threading
import time

from sscard.errors import NoService, SscardError
from sscard.transports.pcsc_errors import PCSC_ERRORS, pcsc_error, scard
from sscard.transports.watch import Cancelled, ReaderSnapshot, ServiceLost

log = logging.getLogger("sscard.pcsc")

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
#: Used only where pcscd lacks PnP notification: how often the reader list is looked at again.
NO_PNP_RELIST_MS = 1000
#: How long :meth:`PcscEventSource.cancel` keeps waking a wait that is just starting.
CANCEL_PATIENCE_S = 2.0


def _u32(code: int) -> int:
    return code & 0xFFFFFFFF


_SUCCESS = _u32(scard.SCARD_S_SUCCESS)
_TIMEOUT = _u32(scard.SCARD_E_TIMEOUT)
_CANCELLED = _u32(scard.SCARD_E_CANCELLED)
_NO_READERS = _u32(scard.SCARD_E_NO_READERS_AVAILABLE)
_INFINITE = 0xFFFFFFFF
#: Codes that mean pcscd itself is gone (the socket closed under us), not a reader problem.
_SERVICE_GONE = frozenset(
    _u32(code)
    for code in (
        scard.SCARD_E_NO_SERVICE,
        scard.SCARD_E_SERVICE_STOPPED,
        scard.SCARD_F_COMM_ERROR,
        scard.SCARD_E_INVALID_HANDLE,
    )
)
_STATE_MASK = 0xFFFF
_GONE_STATES = scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE | scard.SCARD_STATE_IGNORE


def _service_error(code: int, action: str) -> SscardError:
    error = pcsc_error(code, action, connected=False)
    if _u32(code) in _SERVICE_GONE or isinstance(error, NoService):
        return ServiceLost(error.detail)
    return error


class PcscEventSource:
    """Reader states from pcscd, and a blocking wait for the next change.  One context per source.

    Not thread-safe except :meth:`cancel`, which is meant to be called from another thread.
    """

    def __init__(self) -> None:
        self._context: int | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self._wake = threading.Event()
        self._in_wait = False
        self._pnp_count: int | None = None
        self._pnp_supported = True
        self._states: dict[str, int] = {}

    # -- lifecycle --------------------------------------------------------------------------

    def open(self) -> None:
        """Establish a PC/SC context; :class:`ServiceLost` when pcscd does not answer."""
        self.close()
        code, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if _u32(code) != _SUCCESS:
            raise _service_error(code, "SCardEstablishContext")
        with self._lock:
            self._context = int(context)
            if self._cancelled:
                scard.SCardCancel(self._context)
        self._pnp_count = None
        self._states = {}

    def close(self) -> None:
        with self._lock:
            context, self._context = self._context, None
        if context is not None:
            scard.SCardReleaseContext(context)

    def cancel(self) -> None:
        """Wake a blocked :meth:`wait` (from any thread); it and every later wait raise :class:`Cancelled`.

        ``SCardCancel`` only wakes a call already in progress, and the waiting thread may be just
        about to enter one; so keep cancelling until that thread is out (at most CANCEL_PATIENCE_S).
        """
        with self._lock:
            self._cancelled = True
            self._wake.set()
        deadline = time.monotonic() + CANCEL_PATIENCE_S
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_wait or self._context is None:
                    return
                scard.SCardCancel(self._context)
            time.sleep(0.01)
        log.warning("PC/SC wait did not end %g s after SCardCancel", CANCEL_PATIENCE_S)

    # -- reading states ---------------------------------------------------------------------

    def _require_context(self) -> int:
        if self._cancelled:
            raise Cancelled
        if self._context is None:
            raise ServiceLost("no PC/SC context (call open() first)")
        return self._context

    def snapshot(self) -> dict[str, ReaderSnapshot]:
        """Every reader's state now, without waiting (after :meth:`open`, and after each wait)."""
        context = self._require_context()
        code, readers = scard.SCardListReaders(context, [])
        if _u32(code) == _NO_READERS:
            readers = []
        elif _u32(code) != _SUCCESS:
            raise _service_error(code, "SCardListReaders")
        queries = [(name, scard.SCARD_STATE_UNAWARE) for name in readers]
        if self._pnp_supported:
            queries.append((PNP_NOTIFICATION, scard.SCARD_STATE_UNAWARE))
        code, states = scard.SCardGetStatusChange(context, 0, queries)
        if _u32(code) not in (_SUCCESS, _TIMEOUT):
            raise _service_error(code, "SCardGetStatusChange")
        result: dict[str, ReaderSnapshot] = {}
        self._states = {}
        for name, raw_state, atr in states:
            state = int(raw_state) & ~scard.SCARD_STATE_CHANGED
            if name == PNP_NOTIFICATION:
                if state & scard.SCARD_STATE_UNKNOWN:
                    log.info("pcscd has no PnP notification; looking for new readers every %d ms", NO_PNP_RELIST_MS)
                    self._pnp_supported = False
                else:
                    self._pnp_count = state
                continue
            if state & _GONE_STATES:
                continue  # went away between listing and asking
            self._states[name] = state
            result[name] = _snapshot(name, state, bytes(atr))
        return result

    def wait(self) -> dict[str, ReaderSnapshot]:
        """Block until a reader or card changes, then return every reader's new state.

        Raises :class:`ServiceLost` if pcscd goes away and :class:`Cancelled` after :meth:`cancel`.
        """
        context = self._require_context()
        if self._pnp_count is None and self._pnp_supported:
            self.snapshot()
        queries = [(name, state) for name, state in self._states.items()]
        timeout = _INFINITE
        if self._pnp_supported and self._pnp_count is not None:
            queries.append((PNP_NOTIFICATION, self._pnp_count))
        else:
            timeout = NO_PNP_RELIST_MS
        if not queries:
            # No readers and no PnP: nothing to block on but time (cancel() still wakes us).
            self._wake.wait(NO_PNP_RELIST_MS / 1000)
            code = _TIMEOUT
        else:
            with self._lock:
                if self._cancelled:
                    raise Cancelled
                self._in_wait = True
            try:
                code = _u32(scard.SCardGetStatusChange(context, timeout, queries)[0])
            finally:
                with self._lock:
                    self._in_wait = False
        if code == _CANCELLED or self._cancelled:
            raise Cancelled
        if code not in (_SUCCESS, _TIMEOUT):
            error = _service_error(code, "SCardGetStatusChange")
            if not isinstance(error, ServiceLost) and code not in PCSC_ERRORS:
                log.warning("%s; looking at the readers again", error)
            elif not isinstance(error, ServiceLost):
                log.info("%s; looking at the readers again", error)
            else:
                raise error
        return self.snapshot()


def _snapshot(name: str, state: int, atr: bytes) -> ReaderSnapshot:
    present = bool(state & scard.SCARD_STATE_PRESENT)
    return ReaderSnapshot(
        name=name,
        present=present,
        atr=atr if present else b"",
        counter=(state >> 16) & _STATE_MASK,
        exclusive=bool(state & scard.SCARD_STATE_EXCLUSIVE),
        mute=bool(state & scard.SCARD_STATE_MUTE),
    )
