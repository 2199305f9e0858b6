"""The terminal facade: what kiosk software calls.  ``read``, ``verify``, ``change_pin``.

    from sscard.terminal import Terminal

    with Terminal.open("sim:typical") as terminal:      # or a PC/SC reader name, or "replay:PATH"
        terminal.wait_for_card(timeout=30)
        card = terminal.read()
        print(card.cardholder.full_name, card.issuer.card_number)
        outcome = terminal.verify(pin)                  # PinOutcome: verified / incorrect (tries left) / blocked

Each public operation runs inside one PC/SC transaction (STYLE.md §4), so another process cannot
interleave APDUs, and starts with its own SELECT SSSE, so it never depends on what a previous
operation (or another program) left selected.  A card pulled out mid-operation surfaces as
:class:`~sscard.errors.CardRemoved`; the terminal drops the connection and the next operation
connects to whatever card is then in the reader.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sscard.apdu.atr import historical_bytes
from sscard.apdu.processors import TraceSink, standard_stack
from sscard.clock import local_now as _now
from sscard.config import Config, load_config
from sscard.errors import (
    AlgorithmUnsupported,
    AuthRequired,
    BadRecord,
    CardChanged,
    CardMute,
    CardRemoved,
    CardReset,
    NoCard,
    NoReader,
    NoService,
    PsamMissing,
    ReplayPinRefused,
    SessionActive,
    TransportFailure,
    UsageError,
)
from sscard.ssc.application import PinOutcome, PinState, Progress, SscApplication, SsseInfo
from sscard.ssc.pin import Pin, PinLike
from sscard.ssc.records import CardholderData, IssuerData, RecordWarning, validate
from sscard.transports.base import Reader, Transport

# sscard.session is imported where a session is made: it brings the event monitor and asyncio
# (~40 ms at start-up), which a plain `sscard read` never uses (issue 7, docs/performance.md).
# sscard.psam (and with it the cryptography library) is imported where a card is authenticated:
# a plain read needs none of it (issue 7, docs/performance.md).
if TYPE_CHECKING:
    from sscard.credentials import Credential
    from sscard.events import Event
    from sscard.psam.auth import Authenticator
    from sscard.psam.crypto import Algorithm, CardFacts
    from sscard.psam.hsm import HsmStep1
    from sscard.psam.keys import KeyService
    from sscard.session import Session, SessionEvent, SessionManager

#: What :meth:`Terminal.sign_in` takes for the PIN: the PIN, or a callable that asks for it once
#: the card has been read (so a person is not asked for a PIN a missing or wrong card makes useless).
PinSource = PinLike | Callable[[], PinLike]

IDENTIFICATION_CODE_TAG = 0x01  # EF05 tag 01, 卡识别码 (reference §3)
#: The EF06 elements a locked 3rd-generation card withholds (reference §1, §3).
LOCKED_EF06 = ("ssn", "name", "gender", "nation", "birthplace", "birth_date")


def _card_keys(transport: Transport, ssse: SsseInfo, issuer: IssuerData) -> tuple[CardFacts, Algorithm]:
    """What authentication needs of the card: the data its factors are built from, and its
    algorithm (docs/card-auth.md).  Only asked for when a card is authenticated, so a plain read
    neither refuses an unknown algorithm flag nor needs an identification code."""
    from sscard.psam.crypto import Algorithm, CardFacts

    if issuer.identification_code is None:
        raise BadRecord("identification_code", "missing; card authentication needs it", "卡识别码")
    facts = CardFacts(issuer.identification_code.raw, issuer.card_number or "", historical_bytes(transport.atr))
    return facts, Algorithm.of(ssse.algorithm)


def open_key_service(config: Config, trace_sink: TraceSink | None = None) -> KeyService:
    """The configured key service (``[keys] service``); the PSAM is connected now."""
    from sscard.psam.keys import PsamKeyService, SoftwareKeyService
    from sscard.psam.profile import load_profile

    if config.key_service == "software":
        from sscard.readers import published_test_keys_path

        path = config.key_file or str(published_test_keys_path())
        return SoftwareKeyService.from_file(path, config.keyset, allowed=config.allow_software_keys)
    if config.key_service == "psam":
        from sscard.readers import open_sam_reader

        reader = open_sam_reader(config)
        try:
            transport = reader.connect()
        except NoCard:
            raise PsamMissing(f"the SAM slot {reader.name!r} is empty") from None
        return PsamKeyService(transport, load_profile(config.key_profile), trace_sink)
    if config.key_service == "hsm":
        raise UsageError(
            'with [keys] service = "hsm" use the two-step calls (hsm_step1 / hsm_step2)',
            "加密机模式请使用两步调用（hsm_step1/hsm_step2）",
        )
    raise AuthRequired(
        "card authentication",
        "no key service configured ([keys] service = psam, or hsm with the two-step calls)",
        element_zh="卡片认证数据",
    )


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class CardRead:
    """Everything ``read()`` learnt: card (EF05), cardholder (EF06), and warnings.

    ``locked_elements`` lists the EF06 elements a 3rd-generation card refused without terminal
    authentication; it is empty on a complete read.
    """

    reader: str
    atr: bytes
    ssse: SsseInfo
    issuer: IssuerData
    cardholder: CardholderData
    warnings: tuple[RecordWarning, ...] = ()
    locked_elements: tuple[str, ...] = field(default=())
    #: The key service that proved the card genuine (internal authentication), if one did.
    authenticated_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON contract of ``sscard read --json`` (docs/cli.md); keys never change meaning."""
        issuer, holder = self.issuer, self.cardholder
        out: dict[str, Any] = {
            "card": {
                "identification_code": issuer.identification_code.hex if issuer.identification_code else None,
                "type": issuer.card_type,
                "spec_version": issuer.spec_version,
                "issuer_id": issuer.issuer_id,
                "issue_date": _iso(issuer.issue_date),
                "expiry_date": _iso(issuer.expiry_date),
                "card_number": issuer.card_number,
                "region_code": issuer.region_code,
                "atr": self.atr.hex().upper(),
            },
            "cardholder": {
                "ssn": holder.ssn,
                "name": holder.full_name,
                "gender_code": holder.gender_code,
                "gender": holder.gender,
                "nation_code": holder.nation_code,
                "nation": holder.nation,
                "birthplace_code": holder.birthplace_code,
                "birth_date": _iso(holder.birth_date),
            },
            "warnings": [w.to_dict() for w in self.warnings],
        }
        if self.authenticated_by is not None:  # only when asked for: the three keys above stay the contract
            out["authenticated_by"] = self.authenticated_by
        return out


@dataclass(frozen=True)
class CardIdentity:
    """What tells two cards apart without reading the cardholder: ATR, identification code, number."""

    atr: bytes
    identification_code: str | None
    card_number: str | None

    @classmethod
    def of(cls, card: CardRead) -> CardIdentity:
        code = card.issuer.identification_code
        return cls(card.atr, code.hex if code else None, card.issuer.card_number)


#: Errors after which a connection is no use: the card or the service behind it went away.
_CONNECTION_ERRORS = (CardRemoved, CardReset, NoCard, NoService, NoReader, TransportFailure, CardMute)


@contextlib.contextmanager
def _pin_in_flight() -> Iterator[None]:
    """A card that vanishes between a PIN command and its answer may have counted the attempt."""
    try:
        yield
    except CardRemoved as exc:
        if exc.command_sent is False:
            raise  # the transport knew the card was gone before the PIN command could leave
        raise CardRemoved(exc.detail, pin_sent=True) from None


class Terminal:
    """One card reader seen as a kiosk terminal."""

    def __init__(
        self,
        reader: Reader,
        *,
        config: Config | None = None,
        trace_sink: TraceSink | None = None,
        transport_wrapper: Callable[[Transport], Transport] | None = None,
    ) -> None:
        self.reader = reader
        self.config = config or Config()
        self.trace_sink = trace_sink
        #: Applied to every new connection, e.g. a RecordingTransport for ``sscard record``.
        self.transport_wrapper = transport_wrapper
        self._transport: Transport | None = None
        #: The card this terminal last read; PIN operations on a new connection check against it.
        self.card_identity: CardIdentity | None = None
        self._auth: Authenticator | None = None
        self._sessions: SessionManager | None = None
        #: One operation at a time; session ends (from the monitor or the idle timer) wait for it.
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls,
        reader: str | None = None,
        *,
        config: Config | None = None,
        trace_sink: TraceSink | None = None,
        transport_wrapper: Callable[[Transport], Transport] | None = None,
        accept_any_pin: bool = False,
    ) -> Terminal:
        """Open a terminal on ``reader``: a PC/SC reader-name substring, ``sim:PERSONA`` or ``replay:PATH``.

        ``None`` takes the reader from configuration (``SSCARD_READER``, the config file), else the
        first PC/SC reader with a card.  ``accept_any_pin`` is for tests that replay PIN traces: a
        ``replay:`` reader refuses PIN operations without it (REPLAY_PIN_REFUSED), because the
        trace holds ``**`` for the PIN and would accept any.
        """
        from sscard.readers import open_reader

        config = config or load_config()
        spec = reader if reader is not None else config.reader
        return cls(
            open_reader(spec, config=config, accept_any_pin=accept_any_pin),
            config=config,
            trace_sink=trace_sink,
            transport_wrapper=transport_wrapper,
        )

    # -- lifecycle --------------------------------------------------------------------------

    def wait_for_card(self, timeout: float | None = None) -> None:
        """Block until a card is in the reader; :class:`~sscard.errors.Timeout` after ``timeout`` s."""
        self.reader.wait_for_card(timeout)

    @property
    def transport(self) -> Transport | None:
        """The current connection, if any (for recording and diagnostics)."""
        return self._transport

    def close(self) -> None:
        """End any session, drop the connection and forget the card; the terminal can be reused."""
        if self._sessions is not None:
            self._sessions.close()
        self._drop()
        self.card_identity = None
        auth, self._auth = self._auth, None
        if auth is not None:
            auth.service.close()

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> Transport:
        transport = self.reader.connect()
        self._transport = self.transport_wrapper(transport) if self.transport_wrapper else transport
        return self._transport

    def _drop(self, *, reset: bool = False) -> None:
        """Forget the connection (not the card identity) after the card or the service went away.

        ``reset`` (at the end of a session) resets the card as the connection closes, so its
        PIN-verified state does not outlive the session for whichever program talks to it next.
        """
        with self._lock:
            transport, self._transport = self._transport, None
            if transport is None:
                return
            if reset:
                transport.reset_and_close()
            else:
                transport.close()

    @contextlib.contextmanager
    def _operation(self) -> Iterator[tuple[Transport, SscApplication, bool]]:
        """Connect if needed, hold one transaction, and drop the connection if the card went away.

        Yields the transport, the application and whether the connection is new.  A kept connection
        that cannot even start a transaction (the card was swapped or reset, pcscd restarted) is
        replaced once, transparently: nothing was sent on it, so nothing can have happened twice.
        Whether the card behind the new connection is the one read before is the operation's
        business (:meth:`_check_same_card`).
        """
        if self._sessions is not None:
            self._sessions.touch()
        with self._lock, contextlib.ExitStack() as stack:
            fresh = self._transport is None
            transport = self._transport or self._connect()
            try:
                stack.enter_context(transport.transaction())
            except _CONNECTION_ERRORS:
                self._drop()
                if fresh:
                    raise
                fresh, transport = True, self._connect()
                try:
                    stack.enter_context(transport.transaction())
                except _CONNECTION_ERRORS:
                    self._drop()
                    raise
            try:
                yield transport, SscApplication(standard_stack(transport, self.trace_sink)), fresh
            except _CONNECTION_ERRORS:
                self._drop()
                raise

    def _check_same_card(self, transport: Transport, app: SscApplication, fresh: bool) -> None:
        """Before a PIN operation on a new connection: is this the card this terminal last read?

        A PC/SC connection dies with its card, so on a kept connection the card cannot have changed.
        On a new one it may have: the resident swapped cards between reading and typing the PIN.
        Verifying the new card's PIN would sign the wrong person in, so compare the ATR and the card
        identification code (one READ RECORD) first and refuse with CARD_CHANGED.
        """
        known = self.card_identity
        if not fresh or known is None:
            return
        if transport.atr != known.atr:
            self.card_identity = None
            raise CardChanged(f"ATR {transport.atr.hex().upper()} is not {known.atr.hex().upper()}")
        code = app.read_element(IDENTIFICATION_CODE_TAG)
        seen = code.hex if code is not None else None
        if seen != known.identification_code:
            self.card_identity = None
            raise CardChanged(f"card identification code {seen} is not {known.identification_code}")

    # -- operations -------------------------------------------------------------------------

    def read(
        self, *, require_cardholder: bool = True, authenticate: bool | None = None, today: dt.date | None = None
    ) -> CardRead:
        """Read card (EF05) and cardholder (EF06) data with the fewest APDUs the card allows.

        A 3rd-generation card refuses EF06 until the terminal authenticates (reference §1, §5).
        With a key service configured (``[keys] service``) sscard authenticates first, so the read
        is complete.  Without one, by default that raises :class:`~sscard.errors.AuthRequired`;
        with ``require_cardholder=False`` the EF05 data comes back with ``locked_elements`` set
        and an ``AUTH_REQUIRED`` warning, never as if it were complete.

        ``authenticate`` (default ``[keys] authenticate_card``) also proves the card genuine by
        internal authentication, in the same transaction; a counterfeit is
        :class:`~sscard.errors.CardNotGenuine` and none of its data is returned.
        """
        check_card = self.config.authenticate_card if authenticate is None else authenticate
        with self._operation() as (transport, app, _fresh):
            ssse = app.select()
            issuer = app.read_issuer()
            locked: tuple[str, ...] = ()
            authenticator = self._authenticator() if self.config.key_service != "none" else None
            keys = _card_keys(transport, ssse, issuer) if authenticator is not None or check_card else None
            unlocked = False
            if authenticator is not None and keys is not None and (issuer.spec_version or "").startswith("3"):
                authenticator.external(app.connection, *keys)  # 3rd gen: unlock first
                unlocked = True
            try:
                holder = app.read_cardholder(issuer.spec_version)
            except AuthRequired as exc:
                if authenticator is not None and keys is not None and not unlocked:
                    authenticator.external(app.connection, *keys)
                    holder = app.read_cardholder(issuer.spec_version)
                elif require_cardholder:
                    raise AuthRequired("cardholder data (EF06)", exc.detail, element_zh="持卡人数据（EF06）") from None
                else:
                    holder, locked = CardholderData(), LOCKED_EF06
            authenticated_by = None
            if check_card and keys is not None:
                authenticator = authenticator or self._authenticator()
                authenticator.internal(app.connection, *keys)
                authenticated_by = authenticator.service.describe()
            warnings = validate(issuer, None if locked else holder, today or dt.date.today())
            if locked:
                warnings.append(
                    RecordWarning(
                        "AUTH_REQUIRED",
                        "Cardholder data needs terminal authentication (PSAM or HSM): " + ", ".join(locked),
                        "持卡人信息需要终端认证（PSAM或加密机）后才能读取。",
                    )
                )
            card = CardRead(
                transport.name, transport.atr, ssse, issuer, holder, tuple(warnings), locked, authenticated_by
            )
            self.card_identity = CardIdentity.of(card)
            return card

    def auth_check(self) -> str:
        """Is the card in the reader genuine?  Internal authentication only; returns who vouched.

        Raises :class:`~sscard.errors.CardNotGenuine` for a card without its genuine key, and the
        key-service errors (PSAM_MISSING, PSAM_KEY_MISSING, ALGORITHM_UNSUPPORTED …) when the
        question cannot be asked.
        """
        authenticator = self._authenticator()
        with self._operation() as (transport, app, _fresh):
            ssse = app.select()
            issuer = app.read_issuer()
            authenticator.internal(app.connection, *_card_keys(transport, ssse, issuer))
            self.card_identity = None  # what was read here is not a full read
            return authenticator.service.describe()

    def read_photo(self, progress: Progress | None = None) -> bytes:
        """The cardholder's photo (EF08; JPEG on the cards seen, format unconfirmed, reference §1).

        EF08 needs external authentication on most cards: with a key service configured sscard
        authenticates when the card asks; without one this is AUTH_REQUIRED.  ``progress`` gets
        ``(bytes_so_far, total_or_None)`` after every READ BINARY.
        """
        with self._operation() as (transport, app, _fresh):
            ssse = app.select()
            try:
                return app.read_binary_file(0x08, progress)
            except AuthRequired:
                if self.config.key_service == "none":
                    raise AuthRequired("photo (EF08)", element_zh="照片（EF08）") from None
            app.select()
            issuer = app.read_issuer()
            self._authenticator().external(app.connection, *_card_keys(transport, ssse, issuer))
            return app.read_binary_file(0x08, progress)

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
            card = self.read()
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

    # -- the HSM two-step -------------------------------------------------------------------

    def hsm_step1(self, terminal_id: str | None = None) -> HsmStep1:
        """Step 1 of the HSM two-step (reference §6): what the HSM needs, ending with GET CHALLENGE.

        Nothing may be sent to the card between this and :meth:`hsm_step2`: the challenge is
        good for the card's next command only.
        """
        import secrets  # here: a plain read needs no random numbers (start-up, issue 11 item 14)

        from sscard.psam.auth import get_challenge
        from sscard.psam.crypto import Algorithm, build_factors
        from sscard.psam.hsm import HsmStep1
        from sscard.psam.profile import load_profile

        profile = load_profile(self.config.key_profile)
        with self._operation() as (transport, app, _fresh):
            ssse = app.select()
            issuer = app.read_issuer()
            facts, algorithm = _card_keys(transport, ssse, issuer)
            if algorithm is Algorithm.SSF33:
                raise AlgorithmUnsupported("SSF33", "no HSM layout is defined for SSF33 here")
            challenge = get_challenge(app.connection, profile)
            return HsmStep1(
                region_code=issuer.region_code or "",
                atr=transport.atr,
                algorithm=algorithm,
                identification_code=facts.identification_code,
                ia_factors=b"".join(build_factors(profile.ia.levels, facts)),
                ia_data=secrets.token_bytes(profile.internal_data_length),
                rk_factors=b"".join(build_factors(profile.rkssse.levels, facts)),
                challenge=challenge,
                terminal_id=self.config.terminal_id if terminal_id is None else terminal_id,
            )

    def hsm_step2(self, step1: HsmStep1 | str, answer: str, *, today: dt.date | None = None) -> CardRead:
        """Step 2: EXTERNAL AUTHENTICATE with the HSM's cryptogram as the card's next command, then
        read everything and check the card's internal-authentication answer against the HSM's.

        ``step1`` may be the line itself, so step 2 can run in another process.  The card must be
        the one of step 1 (same ATR, same identification code) or this is CARD_CHANGED.
        """
        from sscard.psam.auth import ask_internal, check_internal, send_external
        from sscard.psam.hsm import HsmAnswer, HsmStep1
        from sscard.psam.profile import load_profile

        state = HsmStep1.parse(step1) if isinstance(step1, str) else step1
        hsm = HsmAnswer.parse(answer, state.algorithm, len(state.ia_data))
        profile = load_profile(self.config.key_profile)
        with self._operation() as (transport, app, _fresh):
            if transport.atr != state.atr:
                raise CardChanged("the ATR differs from step 1")
            send_external(app.connection, profile, hsm.external_cryptogram)
            ssse = app.select()
            issuer = app.read_issuer()
            if issuer.identification_code is None or issuer.identification_code.raw != state.identification_code:
                raise CardChanged("the card identification code differs from step 1")
            holder = app.read_cardholder(issuer.spec_version)
            _data, card_answer = ask_internal(app.connection, profile, state.ia_data)
            check_internal(card_answer, hsm.internal_result)
            warnings = validate(issuer, holder, today or dt.date.today())
            card = CardRead(transport.name, transport.atr, ssse, issuer, holder, tuple(warnings), (), "HSM")
            self.card_identity = CardIdentity.of(card)
            return card

    def _authenticator(self) -> Authenticator:
        from sscard.psam.auth import Authenticator
        from sscard.psam.profile import load_profile

        if self._auth is None:
            self._auth = Authenticator(
                open_key_service(self.config, self.trace_sink), load_profile(self.config.key_profile)
            )
        return self._auth

    def check_pin_allowed(self) -> None:
        """Raise :class:`~sscard.errors.ReplayPinRefused` when this reader cannot check a PIN.

        A ``replay:`` reader not opened for tests answers a recorded VERIFY to any PIN.  Every PIN
        operation calls this first, and a front end calls it before it asks for the PIN.
        """
        if not self.reader.accepts_pin:
            raise ReplayPinRefused(f"reader {self.reader.name!r}")

    def pin_status(self) -> PinOutcome:
        """Tries left, without spending one, where the card supports the status query."""
        with self._operation() as (transport, app, fresh):
            app.select()
            self._check_same_card(transport, app, fresh)
            return app.pin_status()

    def verify(self, pin: PinLike) -> PinOutcome:
        """Verify the cardholder's PIN once.  Never retried: a retry could block the card.

        The PIN format is checked (once) before anything reaches the card, and a blocked PIN is
        reported from the status query without sending a VERIFY that could change the card.  A
        :class:`~sscard.ssc.pin.Pin` or ``bytearray`` is wiped when this returns or raises,
        whatever happened; a ``str`` cannot be (docs/architecture.md, "PIN handling").
        """
        with Pin.of(pin) as secret:
            self.check_pin_allowed()
            secret.validate()
            with self._operation() as (transport, app, fresh):
                app.select()
                self._check_same_card(transport, app, fresh)
                status = app.pin_status()
                if status.state is PinState.BLOCKED:
                    return status
                with _pin_in_flight():
                    return app.verify(secret)

    def change_pin(self, old: PinLike, new: PinLike) -> PinOutcome:
        """CHANGE PIN; both PINs checked for format first; a blocked PIN is not touched.

        Both are wiped afterwards when given as :class:`~sscard.ssc.pin.Pin` or ``bytearray``.
        """
        with Pin.of(old) as old_secret, Pin.of(new) as new_secret:
            self.check_pin_allowed()
            old_secret.validate()
            new_secret.validate()
            with self._operation() as (transport, app, fresh):
                app.select()
                self._check_same_card(transport, app, fresh)
                status = app.pin_status()
                if status.state is PinState.BLOCKED:
                    return status
                with _pin_in_flight():
                    return app.change_pin(old_secret, new_secret)
