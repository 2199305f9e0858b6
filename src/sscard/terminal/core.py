"""Connection life and card operations: ``read``, ``auth_check``, ``read_photo``, ``pin_status``,
``verify``, ``change_pin`` — one PC/SC transaction each (docs/design.md §4).

The rest of the facade builds on :class:`CardTerminal`: the HSM two-step (:mod:`.hsm`), sign-in
and sessions (:mod:`.signin`), any credential (:mod:`.facade`).

This module is over 400 lines because the connection's life (connect, one transaction, drop,
replace once) and every operation that runs inside it stay together: the typed ``read``
overloads, the card-identity check before a PIN command and the PIN operations all lean on
``_operation``, and splitting them would put that one mechanism in two places.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, overload

from sscard.apdu.processors import TraceSink, standard_stack
from sscard.apps.ssc import CardRead, card_keys
from sscard.cardapp import (
    APPLICATIONS,
    CardResult,
    ReadContext,
    ReadOptions,
    Registry,
    read_card,
    recorded_applications,
)
from sscard.config import Config, load_config
from sscard.errors import (
    AuthRequired,
    CardChanged,
    CardMute,
    CardRemoved,
    CardReset,
    NoCard,
    NoReader,
    NoService,
    ReplayPinRefused,
    TransportFailure,
)
from sscard.logfmt import log_context
from sscard.ssc.application import PinOutcome, PinState, Progress, SscApplication
from sscard.ssc.pin import Pin, PinLike
from sscard.terminal.keys import open_key_service
from sscard.terminal.observe import OperationObserver, observed
from sscard.transports.base import Reader, Transport

# sscard.session is imported where a session is made: it brings the event monitor and asyncio
# (~40 ms at start-up), which a plain `sscard read` never uses (issue 7, docs/performance.md).
# sscard.psam (and with it the cryptography library) is imported where a card is authenticated:
# a plain read needs none of it (issue 7, docs/performance.md).
if TYPE_CHECKING:
    from sscard.bank.card import BankCard
    from sscard.health.application import HealthCard
    from sscard.psam.auth import Authenticator
    from sscard.session import SessionManager

from typing import TypeVar

#: What :meth:`Terminal.sign_in` takes for the PIN: the PIN, or a callable that asks for it once
#: the card has been read (so a person is not asked for a PIN a missing or wrong card makes useless).
PinSource = PinLike | Callable[[], PinLike]

IDENTIFICATION_CODE_TAG = 0x01  # EF05 tag 01, 卡识别码 (docs/card-reference.md §3)


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


_T = TypeVar("_T", bound="CardTerminal")


class CardTerminal:
    """One card reader seen as a kiosk terminal: its connection and the card operations."""

    def __init__(
        self,
        reader: Reader,
        *,
        config: Config | None = None,
        trace_sink: TraceSink | None = None,
        transport_wrapper: Callable[[Transport], Transport] | None = None,
        applications: Registry | None = None,
    ) -> None:
        self.reader = reader
        #: The card applications ``read()`` tries, in order (sscard.cardapp; docs/architecture.md).
        self.applications = applications or APPLICATIONS
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
        #: Told of every card operation (sscard.terminal.observe): the service's metrics, None in the CLI.
        self.observer: OperationObserver | None = None

    @classmethod
    def open(
        cls: type[_T],
        reader: str | None = None,
        *,
        config: Config | None = None,
        trace_sink: TraceSink | None = None,
        transport_wrapper: Callable[[Transport], Transport] | None = None,
        accept_any_pin: bool = False,
        applications: Registry | None = None,
    ) -> _T:
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
            applications=applications,
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

    def __enter__(self: _T) -> _T:
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
            stack.enter_context(log_context(reader=transport.name))  # the reader in JSON log lines
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

    @overload
    def read(
        self,
        app: Literal["ssc"],
        *,
        require_cardholder: bool = True,
        authenticate: bool | None = None,
        today: dt.date | None = None,
    ) -> CardRead: ...

    @overload
    def read(
        self,
        app: Literal["bank"],
        *,
        require_cardholder: bool = True,
        authenticate: bool | None = None,
        today: dt.date | None = None,
    ) -> BankCard: ...

    @overload
    def read(
        self,
        app: Literal["health"],
        *,
        require_cardholder: bool = True,
        authenticate: bool | None = None,
        today: dt.date | None = None,
    ) -> HealthCard: ...

    @overload
    def read(
        self,
        app: str | None = None,
        *,
        require_cardholder: bool = True,
        authenticate: bool | None = None,
        today: dt.date | None = None,
    ) -> CardResult: ...

    @observed("read")
    def read(
        self,
        app: str | None = None,
        *,
        require_cardholder: bool = True,
        authenticate: bool | None = None,
        today: dt.date | None = None,
    ) -> CardResult:
        """Read the card application the card carries, or the one named ``app``.

        ``app=None`` asks the registry (:attr:`applications`) in order: the social security card
        first — its SELECT SSSE is the read's first APDU anyway, so an SSC costs nothing extra —
        then the resident health card, then the bank application.  The result is the
        application's own (:class:`CardRead`, :class:`~sscard.bank.BankCard`,
        :class:`~sscard.health.HealthCard`), each with ``kind`` and ``to_json()``.  A card none of
        them recognises is NOT_SSC (:class:`~sscard.cardapp.NoApplication`) naming the ones tried.

        For the social security card, with the fewest APDUs the card allows: a 3rd-generation card
        refuses EF06 until the terminal authenticates (docs/card-reference.md §1, §5).  With a key service
        configured (``[keys] service``) sscard authenticates first, so the read is complete.
        Without one, by default that raises :class:`~sscard.errors.AuthRequired`; with
        ``require_cardholder=False`` the EF05 data comes back with ``locked_elements`` set and an
        ``AUTH_REQUIRED`` warning, never as if it were complete.  ``authenticate`` (default
        ``[keys] authenticate_card``) also proves the card genuine by internal authentication, in
        the same transaction; a counterfeit is :class:`~sscard.errors.CardNotGenuine` and none of
        its data is returned.

        The health card reads EF06 through the same ``[keys]`` key service when one is configured;
        without one it returns the EF05 data with ``cardholder`` None and an AUTH_REQUIRED warning
        (``require_cardholder`` does not apply: its EF05 card number is the ID number a desk needs).
        The bank read never sends a PIN.
        """
        options = ReadOptions(
            require_cardholder=require_cardholder,
            authenticate=self.config.authenticate_card if authenticate is None else authenticate,
            today=today,
        )
        recorded = self._recorded_applications()
        with self._operation() as (transport, ssc, _fresh):
            context = ReadContext(
                reader=transport.name,
                atr=transport.atr,
                connection=ssc.connection,
                authenticator=self._authenticator,
                keys_configured=self.config.key_service != "none",
                options=options,
            )
            card = read_card(context, self.applications, app, recorded)
            # PIN operations check against the SSC last read; another application's read is not one.
            self.card_identity = CardIdentity.of(card) if isinstance(card, CardRead) else None
            return card

    def _recorded_applications(self) -> tuple[str, ...] | None:
        """For a ``replay:`` reader, the applications the recorded read tried (its trace header,
        :func:`sscard.cardapp.recorded_applications`), so a strict replay asks what the recording
        asked; ``None`` (all of :attr:`applications`) for a real card."""
        header = self.reader.recorded_header
        return None if header is None else recorded_applications(header)

    @observed("auth_check")
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
            authenticator.internal(app.connection, *card_keys(transport.atr, ssse, issuer))
            self.card_identity = None  # what was read here is not a full read
            return authenticator.service.describe()

    @observed("read_photo")
    def read_photo(self, progress: Progress | None = None) -> bytes:
        """The cardholder's photo (EF08; JPEG on the cards seen, format unconfirmed, docs/card-reference.md §1).

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
            self._authenticator().external(app.connection, *card_keys(transport.atr, ssse, issuer))
            return app.read_binary_file(0x08, progress)

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

    @observed("pin_status")
    def pin_status(self) -> PinOutcome:
        """Tries left, without spending one, where the card supports the status query."""
        with self._operation() as (transport, app, fresh):
            app.select()
            self._check_same_card(transport, app, fresh)
            return app.pin_status()

    @observed("verify")
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

    @observed("change_pin")
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
