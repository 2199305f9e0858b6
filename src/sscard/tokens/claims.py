"""The claims of a session token: who signed in, how, where and until when (docs/tokens.md).

Values only: building, checking and converting the claims to and from the token's JSON payload.
Signing and verifying are :mod:`sscard.tokens.codec`; keys are :mod:`sscard.tokens.keys`.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from sscard.errors import (
    ConfigError,
    TokenMalformed,
)

#: The format version, in the payload (``v``) and, as ``sst1``, in the token's first part.
VERSION: Final = 1
#: Longest text claim (characters).
MAX_FIELD_LENGTH: Final = 128
#: Longest ``sub`` of a QR session: the scanned code (sscard.qr accepts up to 512 characters).
MAX_QR_SUBJECT: Final = 512
#: Largest ``iat``/``exp`` accepted: 2**53 - 1, the largest integer every JSON parser reads exactly.
MAX_TIME: Final = 2**53 - 1

#: How the resident signed in.  ``qr`` and ``idcard`` are reserved for the sign-in methods to come.
METHOD_CARD_PIN: Final = "card+pin"
METHOD_CARD: Final = "card"
METHOD_QR: Final = "qr"
METHOD_IDCARD: Final = "idcard"
METHODS: Final = frozenset({METHOD_CARD_PIN, METHOD_CARD, METHOD_QR, METHOD_IDCARD})
_CARD_ID = re.compile(r"[0-9A-F]{32}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class SessionClaims:
    """What a session token says.  JSON names in brackets (docs/tokens.md).

    ``ssn``, ``name`` and ``card_number`` are left out of ``repr`` so that logging a claims object
    does not log the resident.  Construction checks every field and raises ``ValueError`` naming
    the field (never its value).
    """

    session_id: str  # [sid] unique per session; the key of a backend's deny list
    terminal_id: str  # [iss] the kiosk that signed in the resident
    ssn: str = field(repr=False)  # [sub] 社会保障号码
    name: str = field(repr=False)  # [name] 姓名 (may be empty when the card did not give it)
    card_number: str = field(repr=False)  # [card_number] 卡号
    card_id: str  # [card_id] 卡识别码, 32 upper-case hex characters
    method: str  # [method] one of METHODS
    issued_at: int  # [iat] Unix seconds
    expires_at: int  # [exp] Unix seconds, > issued_at
    key_id: str | None = None  # [kid] the signing key's id; set by issue_token

    def __post_init__(self) -> None:
        # A QR or ID-card session has no SSC: no card number or identification code.  For "qr" the
        # subject is the scanned code itself (opaque; the backend resolves it online).
        by_card = self.method in (METHOD_CARD_PIN, METHOD_CARD)
        for name, value, required, limit in (
            ("sid", self.session_id, True, MAX_FIELD_LENGTH),
            ("iss", self.terminal_id, True, MAX_FIELD_LENGTH),
            ("sub", self.ssn, True, MAX_QR_SUBJECT if self.method == METHOD_QR else MAX_FIELD_LENGTH),
            ("name", self.name, False, MAX_FIELD_LENGTH),
            ("card_number", self.card_number, by_card, MAX_FIELD_LENGTH),
            ("method", self.method, True, MAX_FIELD_LENGTH),
        ):
            _check_text(name, value, required, limit)
        if not isinstance(self.card_id, str) or not (
            _CARD_ID.fullmatch(self.card_id) or (not by_card and self.card_id == "")
        ):
            raise ValueError("claim 'card_id' must be 32 upper-case hexadecimal characters")
        if self.method not in METHODS:
            raise ValueError(f"claim 'method' must be one of {', '.join(sorted(METHODS))}")
        times: tuple[tuple[str, object], ...] = (("iat", self.issued_at), ("exp", self.expires_at))
        for claim, seconds in times:  # JSON gives any type; bool is an int to Python, not to JSON
            if type(seconds) is not int or not 0 <= seconds <= MAX_TIME:
                raise ValueError(f"claim '{claim}' must be an integer number of seconds (0 to 2**53-1)")
        if self.expires_at <= self.issued_at:
            raise ValueError("claim 'exp' must be later than 'iat'")
        if self.key_id is not None and (not isinstance(self.key_id, str) or not _KEY_ID.fullmatch(self.key_id)):
            raise ValueError("claim 'kid' must be 16 lower-case hexadecimal characters")

    @classmethod
    def create(
        cls,
        *,
        terminal_id: str,
        ssn: str,
        name: str,
        card_number: str,
        card_id: str,
        method: str,
        ttl: int,
        now: float | None = None,
        session_id: str | None = None,
    ) -> SessionClaims:
        """Claims for a session starting ``now`` (default: the clock) and lasting ``ttl`` seconds."""
        if type(ttl) is not int or ttl < 1:
            raise ValueError("ttl must be a whole number of seconds, at least 1")
        issued = int(time.time() if now is None else now)
        return cls(
            session_id=new_session_id() if session_id is None else session_id,
            terminal_id=terminal_id,
            ssn=ssn,
            name=name,
            card_number=card_number,
            card_id=card_id,
            method=method,
            issued_at=issued,
            expires_at=issued + ttl,
        )

    def to_payload(self) -> dict[str, Any]:
        """The JSON object inside the token (``kid`` only when set)."""
        payload: dict[str, Any] = {
            "v": VERSION,
            "sid": self.session_id,
            "iss": self.terminal_id,
            "sub": self.ssn,
            "name": self.name,
            "card_number": self.card_number,
            "card_id": self.card_id,
            "method": self.method,
            "iat": self.issued_at,
            "exp": self.expires_at,
        }
        if self.key_id is not None:
            payload["kid"] = self.key_id
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SessionClaims:
        """Claims from a token's JSON object; :class:`TokenMalformed` names what is wrong.

        Members this version does not know are ignored, so a terminal may add optional ones
        without breaking deployed verifiers; a change of meaning needs a new version (``sst2``).
        """
        version = payload.get("v")
        if type(version) is not int or version != VERSION:
            raise TokenMalformed(f"claim 'v' must be {VERSION}")
        missing = [name for name in _REQUIRED if name not in payload]
        if missing:
            raise TokenMalformed(f"claims missing: {', '.join(missing)}")
        try:
            return cls(
                session_id=payload["sid"],
                terminal_id=payload["iss"],
                ssn=payload["sub"],
                name=payload["name"],
                card_number=payload["card_number"],
                card_id=payload["card_id"],
                method=payload["method"],
                issued_at=payload["iat"],
                expires_at=payload["exp"],
                key_id=payload.get("kid"),
            )
        except ValueError as exc:  # our own messages: they name the claim, never its value
            raise TokenMalformed(str(exc)) from None


_REQUIRED: Final = ("sid", "iss", "sub", "name", "card_number", "card_id", "method", "iat", "exp")


def _check_text(name: str, value: object, required: bool, limit: int = 128) -> None:
    if not isinstance(value, str):
        raise ValueError(f"claim '{name}' must be a string")
    if required and not value:
        raise ValueError(f"claim '{name}' must not be empty")
    if len(value) > limit:
        raise ValueError(f"claim '{name}' is longer than {limit} characters")
    # Control characters would let a claim forge lines in a backend's log; lone surrogates are not text.
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or 0xD800 <= ord(ch) < 0xE000 for ch in value):
        raise ValueError(f"claim '{name}' contains control characters or is not valid Unicode")


def new_session_id() -> str:
    """A fresh session id: 128 random bits, base64url (22 characters).

    The one generator of session ids: :class:`sscard.session.Session` ids (``Terminal.sign_in``)
    and a token's ``sid`` when none is given; unguessable, because it keys a backend's deny list.
    """
    return secrets.token_urlsafe(16)


class SessionLike(Protocol):
    """What :func:`claims_for` reads from a session (``sscard.session.Session`` has all of it)."""

    @property
    def id(self) -> str: ...
    @property
    def terminal_id(self) -> str: ...
    @property
    def ssn(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def card_number(self) -> str: ...
    @property
    def card_id(self) -> str: ...
    @property
    def method(self) -> str: ...  # a str, or a str-valued Enum such as sscard.session.Method
    @property
    def started(self) -> datetime: ...
    @property
    def expires(self) -> datetime: ...


def claims_for(session: SessionLike, ttl: int | None = None) -> SessionClaims:
    """The claims of a kiosk session: ``iat`` its start, ``exp`` its start + ``ttl`` seconds, or
    (``ttl`` None) its current expiry.  A token cannot be extended offline, so a session whose
    idle timeout moves on with activity needs a fresh token when it outlives the first one.

    Raises :class:`~sscard.errors.ConfigError` when the terminal has no id (``[terminal] id``),
    and :class:`TokenMalformed` when the session lacks what a token must carry (an SSN, a card
    number, a 32-hex card identification code); the message names the claim, never its value.
    """
    if not session.terminal_id:
        raise ConfigError("[terminal] id must be set to sign session tokens")
    issued = int(session.started.timestamp())
    if ttl is not None:
        if type(ttl) is not int or ttl < 1:
            raise ValueError("ttl must be a whole number of seconds, at least 1")
        expires = issued + ttl
    else:
        expires = max(issued + 1, math.ceil(session.expires.timestamp()))
    method = session.method
    try:
        return SessionClaims(
            session_id=session.id,
            terminal_id=session.terminal_id,
            ssn=session.ssn,
            name=session.name,
            card_number=session.card_number,
            card_id=session.card_id,
            method=str(getattr(method, "value", method)),
            issued_at=issued,
            expires_at=expires,
        )
    except ValueError as exc:
        raise TokenMalformed(f"this session cannot be put in a token: {exc}") from None
