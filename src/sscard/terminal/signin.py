"""Sign-in and sessions: read → PIN (once) → a session that ends on removal, sign-out or idle
timeout, with its token."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

from sscard.clock import local_now as _now
from sscard.errors import (
    SessionActive,
    UsageError,
)
from sscard.ssc.pin import Pin
from sscard.terminal.core import PinSource
from sscard.terminal.hsm import HsmTerminal
from sscard.terminal.observe import observed

if TYPE_CHECKING:
    from sscard.session import Session, SessionEvent, SessionManager


class SignInTerminal(HsmTerminal):
    """A terminal that signs residents in with card + PIN."""

    # -- sign-in ----------------------------------------------------------------------------

    @property
    def sessions(self) -> SessionManager:
        """The terminal's one session slot; subscribe to it for started/ended events."""
        if self._sessions is None:
            from sscard.session import SessionManager
            from sscard.transports.base import event_factory

            self._sessions = SessionManager(self.config.session_idle, event_factory(self.reader))
            self._sessions.subscribe(self._on_session_event)
        return self._sessions

    def _on_session_event(self, event: SessionEvent) -> None:
        """A session that ended with the card still in (sign-out, idle) resets it; otherwise the
        connection is dead anyway and is dropped."""
        from sscard.session import EndReason

        if event.kind == "ended":
            self._drop(reset=event.reason in (EndReason.SIGNED_OUT, EndReason.IDLE_TIMEOUT))

    @property
    def session(self) -> Session | None:
        return self.sessions.active

    @observed("sign_in")
    def sign_in(self, pin: PinSource | None = None, *, require_pin: bool | None = None) -> Session:
        """Card present → read (authenticating as configured) → PIN → a session.

        The PIN is verified once and never retried: a wrong PIN raises
        :class:`~sscard.errors.PinIncorrect` with the tries left and starts nothing; a blocked
        one raises :class:`~sscard.errors.PinBlocked` without sending a VERIFY.  The session ends
        when the card leaves, on :meth:`sign_out`, or after ``[session] idle_timeout`` idle.

        ``pin`` may be a callable: it is called once, after the card has been read, so the PIN is
        asked for as late as possible.  A :class:`~sscard.ssc.pin.Pin` (or ``bytearray``) is
        wiped when this returns or raises.
        """
        from sscard.session import EndReason, Method, Session, new_session_id

        needs_pin = self.config.require_pin if require_pin is None else require_pin
        secret: Pin | None = None
        try:
            if needs_pin and pin is None:
                raise UsageError("this terminal requires the PIN to sign in", "本终端登录需要输入密码")
            if needs_pin:
                self.check_pin_allowed()
                if not callable(pin):
                    secret = Pin.of(pin or "")
                    secret.validate()  # a malformed PIN costs no card I/O
            if self.sessions.active is not None:
                raise SessionActive(f"session {self.sessions.active.id} is active")
            card = self.read("ssc")  # signing in is the social security card's (card + PIN)
            if needs_pin:
                if secret is None and callable(pin):
                    secret = Pin.of(pin())  # asked for now: the card is there and has been read
                self.verify(secret or "").raise_for_error()
        finally:
            if secret is not None:
                secret.wipe()
            elif isinstance(pin, (Pin, bytearray)):
                Pin.of(pin).wipe()  # not needed after all (card-only policy, or an early error)
        now = _now()
        session = Session(
            id=new_session_id(),
            ssn=card.cardholder.ssn or "",
            name=card.cardholder.full_name or "",
            card_number=card.issuer.card_number or "",
            card_id=card.issuer.identification_code.hex if card.issuer.identification_code else "",
            method=Method.CARD_PIN if needs_pin else Method.CARD,
            terminal_id=self.config.terminal_id,
            reader=card.reader,
            started=now,
            expires=now + dt.timedelta(seconds=self.config.session_idle),
            authenticated_by=card.authenticated_by,
        )
        session = dataclasses.replace(session, token=self._issue_token(session))
        self.sessions.start(session)
        if not self.reader.card_present():  # pulled before the watch began: end it now
            self.sessions._end_if(session.id, EndReason.CARD_REMOVED)
        return session

    @observed("sign_out")
    def sign_out(self) -> Session:
        """End the active session (NotSignedIn if none) and drop the connection, so the card's
        PIN-verified state is not left for whoever talks to it next."""
        return self.sessions.sign_out()  # the end event resets the card and drops the connection

    def _issue_token(self, session: Session) -> str | None:
        if not self.config.session_key:
            return None
        from sscard.session import Method
        from sscard.tokens import claims_for, issue_token, load_private_key

        if session.method is Method.QR and session.credential:
            session = dataclasses.replace(session, ssn=session.credential["code"])  # sub: the opaque code
        return issue_token(claims_for(session, self.config.token_ttl), load_private_key(self.config.session_key))
