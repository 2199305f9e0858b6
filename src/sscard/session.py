"""Kiosk sessions: who is signed in at this terminal, and the moment that ends.

Exactly one session per terminal.  It ends on the first of: the card leaving the reader (a
``card_removed`` event, or the reader or pcscd going away), :meth:`SessionManager.sign_out`, or
the idle timeout (``[session] idle_timeout``; every facade operation counts as activity).
Observers are told of both ends with a :class:`SessionEvent`; a kiosk UI returns to its welcome
screen on ``ended`` whatever the reason.

The removal watch uses :class:`sscard.events.Monitor` on the session's reader, so it needs no
polling and survives nothing it should not: if pcscd goes away the session ends (``service_lost``)
— every PC/SC connection, and with it the card's PIN-verified state, died with pcscd.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sscard.clock import local_now as _now
from sscard.errors import NotSignedIn, SessionActive
from sscard.events import Event, EventKind, Monitor
from sscard.tokens import claims as _claims
from sscard.transports.watch import EventSource

log = logging.getLogger("sscard.session")


class Method(str, enum.Enum):
    """How the resident proved who they are.  Only ``card+pin`` proves possession *and* knowledge;
    a QR code is a bearer credential the backend resolves, an ID card proves possession only."""

    CARD_PIN = "card+pin"
    CARD = "card"
    QR = "qr"
    IDCARD = "idcard"


class EndReason(str, enum.Enum):
    CARD_REMOVED = "card_removed"
    SIGNED_OUT = "signed_out"
    IDLE_TIMEOUT = "idle_timeout"
    SERVICE_LOST = "service_lost"
    READER_DETACHED = "reader_detached"


@dataclass(frozen=True)
class Session:
    """One signed-in resident.  ``expires`` moves with activity (idle timeout)."""

    id: str
    #: Personal data and secrets are out of ``repr`` (PIPL: a session in a log line or traceback).
    ssn: str = field(repr=False)
    name: str = field(repr=False)
    card_number: str = field(repr=False)
    card_id: str
    method: Method
    terminal_id: str
    reader: str
    started: dt.datetime
    expires: dt.datetime
    authenticated_by: str | None = None
    token: str | None = field(default=None, repr=False)
    #: For a QR sign-in, the scanned credential ``{"kind", "code"}``: opaque, for the backend.
    credential: dict[str, str] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ssn": self.ssn,
            "name": self.name,
            "card_number": self.card_number,
            "card_id": self.card_id,
            "method": self.method.value,
            "terminal_id": self.terminal_id,
            "reader": self.reader,
            "started": self.started.isoformat(timespec="seconds"),
            "expires": self.expires.isoformat(timespec="seconds"),
            "authenticated_by": self.authenticated_by,
            "token": self.token,
            "credential": self.credential,
        }


#: The one generator of session ids (:func:`sscard.tokens.claims.new_session_id`), named here too
#: because sessions are made with it.
new_session_id = _claims.new_session_id


@dataclass(frozen=True)
class SessionEvent:
    kind: str  # "started" | "ended"
    session: Session
    reason: EndReason | None = None
    time: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "event": f"session_{self.kind}",
            "session": self.session.id,
            "reason": self.reason.value if self.reason else None,
            "time": (self.time or _now()).isoformat(timespec="milliseconds"),
        }


Listener = Callable[[SessionEvent], None]


class SessionManager:
    """Holds the terminal's one session and ends it on removal, sign-out or idle timeout."""

    def __init__(self, idle_timeout: float, event_source: Callable[[], EventSource] | None = None) -> None:
        self.idle_timeout = idle_timeout
        self._event_source = event_source
        self._lock = threading.RLock()
        self._session: Session | None = None
        self._monitor: Monitor | None = None
        self._timer: threading.Timer | None = None
        self._listeners: list[Listener] = []
        self._ended = threading.Condition(self._lock)

    # -- observers --------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on every start and end; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)
        return lambda: self._unsubscribe(listener)

    def _unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _tell(self, event: SessionEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("session listener failed on %s", event.kind)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def active(self) -> Session | None:
        with self._lock:
            return self._session

    def require(self) -> Session:
        session = self.active
        if session is None:
            raise NotSignedIn()
        return session

    def start(self, session: Session, *, watch: bool = True) -> Session:
        """Make ``session`` the terminal's session; SessionActive if there already is one.

        ``watch=False`` for sessions with no card left in a reader (QR, ID card): they end on
        sign-out or the idle timeout only.
        """
        with self._lock:
            if self._session is not None:
                raise SessionActive(f"session {self._session.id} is active")
            self._session = session
            self._arm_timer()
            if watch and self._event_source is not None:
                self._watch(session)
        log.info("session %s started (%s) on %s", session.id, session.method.value, session.reader)
        self._tell(SessionEvent("started", session, time=session.started))
        return session

    def _watch(self, session: Session) -> None:
        assert self._event_source is not None
        ready = threading.Event()

        def on_event(event: Event) -> None:
            if event.kind is EventKind.READER_ATTACHED and event.reader == session.reader:
                ready.set()
            if event.cause == "initial":
                return
            if event.kind is EventKind.SERVICE_LOST or event.cause == "service_lost":
                reason = EndReason.SERVICE_LOST
            elif event.reader == session.reader and event.kind in _END_EVENTS:
                reason = _END_EVENTS[event.kind]
            else:
                return
            self._end_if(session.id, reason)

        monitor = Monitor(session.reader, source=self._event_source)
        self._monitor = monitor
        monitor.start(on_event)
        # Wait until the monitor has seen the reader, so a card pulled right after sign-in is not
        # missed (the monitor's first look would otherwise be its starting state, without a card).
        if not ready.wait(5.0):
            log.warning("session monitor did not report reader %r within 5 s", session.reader)

    def touch(self) -> None:
        """Activity: push the idle timeout back."""
        with self._lock:
            if self._session is None:
                return
            self._session = replace(self._session, expires=_now() + dt.timedelta(seconds=self.idle_timeout))
            self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        session = self._session
        if session is None:
            return
        timer = threading.Timer(self.idle_timeout, self._end_if, (session.id, EndReason.IDLE_TIMEOUT))
        timer.daemon = True
        self._timer = timer
        timer.start()

    def sign_out(self) -> Session:
        """End the session now; NotSignedIn if there is none."""
        session = self.require()
        self._end_if(session.id, EndReason.SIGNED_OUT)
        return session

    def _end_if(self, session_id: str, reason: EndReason) -> None:
        with self._lock:
            session = self._session
            if session is None or session.id != session_id:
                return
            self._session = None
            timer, self._timer = self._timer, None
            monitor, self._monitor = self._monitor, None
            self._ended.notify_all()
        if timer is not None:
            timer.cancel()
        if monitor is not None:
            monitor.stop()
        log.info("session %s ended: %s", session.id, reason.value)
        self._tell(SessionEvent("ended", session, reason, _now()))

    def wait_ended(self, timeout: float | None = None) -> bool:
        """Block until no session is active (e.g. a CLI holding a session open); False on timeout."""
        with self._ended:
            return self._ended.wait_for(lambda: self._session is None, timeout)

    def close(self) -> None:
        session = self.active
        if session is not None:
            self._end_if(session.id, EndReason.SIGNED_OUT)


_END_EVENTS = {
    EventKind.CARD_REMOVED: EndReason.CARD_REMOVED,
    EventKind.READER_DETACHED: EndReason.READER_DETACHED,
}
