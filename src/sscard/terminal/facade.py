"""The whole facade: sign-in with any credential — the card, a QR code, a resident ID card —
whichever comes first (:mod:`sscard.credentials`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sscard.clock import local_now as _now
from sscard.errors import (
    SessionActive,
    UsageError,
)
from sscard.ssc.pin import Pin
from sscard.terminal.core import PinSource
from sscard.terminal.signin import SignInTerminal

if TYPE_CHECKING:
    from sscard.credentials import Credential
    from sscard.events import Event
    from sscard.session import Session


class Terminal(SignInTerminal):
    """One card reader seen as a kiosk terminal."""

    def wait_for_credential(
        self,
        timeout: float | None = None,
        *,
        card: bool = True,
        qr: bool = True,
        idcard: bool = True,
        on_event: Callable[[Event], None] | None = None,
    ) -> Credential:
        """Whichever comes first: an SSC card in the reader, a QR scan, a resident ID card.

        The QR scanner and the ID-card reader are the configured ones (``[qr] port``,
        ``[idcard] port``); a source that is not configured is not waited on.  Device events
        (scans, a device unplugged and back) go to ``on_event``; an unplugged device never stops
        the other sources.  :class:`~sscard.errors.Timeout` after ``timeout`` seconds.
        """
        from sscard.credentials import qr_config, wait_for_credential

        config = self.config
        return wait_for_credential(
            self,
            timeout,
            card=card,
            qr_port=config.qr_port if qr else None,
            qr_config=qr_config(config),
            idcard_port=config.idcard_port if idcard else None,
            idcard_baudrate=config.idcard_baudrate,
            on_event=on_event,
        )

    def sign_in_with(self, credential: Credential, pin: PinSource | None = None) -> Session:
        """Sign in with what :meth:`wait_for_credential` returned.

        An SSC card goes through :meth:`sign_in` (authentication, PIN).  A QR code starts a ``qr``
        session carrying the opaque code for the backend to resolve; an ID card an ``idcard``
        session with the ID number and name.  Neither proves knowledge of anything: only
        card+PIN does, and the session's ``method`` says which it was.  They end on sign-out or
        idle timeout (nothing stays in a reader to be removed).
        """
        from sscard.credentials import CredentialKind
        from sscard.session import Method, Session, new_session_id

        if credential.kind is CredentialKind.SSC_CARD:
            return self.sign_in(pin)
        if isinstance(pin, (Pin, bytearray)):
            Pin.of(pin).wipe()  # a QR code or an ID card takes no PIN
        if self.sessions.active is not None:
            raise SessionActive(f"session {self.sessions.active.id} is active")
        now = _now()
        if credential.qr is not None:
            qr = credential.qr
            fields: dict[str, Any] = {
                "ssn": "",
                "name": "",
                "method": Method.QR,
                "credential": {"kind": qr.kind.value, "code": qr.code},
            }
        elif credential.id_card is not None:
            record = credential.id_card
            fields = {"ssn": record.id_number, "name": record.name, "method": Method.IDCARD}
        else:
            raise UsageError("the credential carries nothing to sign in with", "该凭证没有可用于登录的内容")
        session = Session(
            id=new_session_id(),
            card_number="",
            card_id="",
            terminal_id=self.config.terminal_id,
            reader=credential.source,
            started=now,
            expires=now + dt.timedelta(seconds=self.config.session_idle),
            **fields,
        )
        session = dataclasses.replace(session, token=self._issue_token(session))
        return self.sessions.start(session, watch=False)
