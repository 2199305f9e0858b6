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
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sscard.apdu.processors import TraceSink, standard_stack
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
    TransportFailure,
)
from sscard.ssc.application import PinOutcome, PinState, SscApplication, SsseInfo, validate_pin
from sscard.ssc.records import CardholderData, IssuerData, RecordWarning, validate
from sscard.transports.base import Reader, Transport

IDENTIFICATION_CODE_TAG = 0x01  # EF05 tag 01, 卡识别码 (reference §3)


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

    def to_json(self) -> dict[str, Any]:
        """The JSON contract of ``sscard read --json`` (docs/cli.md); keys never change meaning."""
        issuer, holder = self.issuer, self.cardholder
        return {
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

    @classmethod
    def open(
        cls,
        reader: str | None = None,
        *,
        config: Config | None = None,
        trace_sink: TraceSink | None = None,
        transport_wrapper: Callable[[Transport], Transport] | None = None,
    ) -> Terminal:
        """Open a terminal on ``reader``: a PC/SC reader-name substring, ``sim:PERSONA`` or ``replay:PATH``.

        ``None`` takes the reader from configuration (``SSCARD_READER``, the config file), else the
        first PC/SC reader with a card.
        """
        from sscard.readers import open_reader

        config = config or load_config()
        spec = reader if reader is not None else config.reader
        return cls(
            open_reader(spec, config=config),
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
        """Drop the connection and forget the card; the terminal can be used again afterwards."""
        self._drop()
        self.card_identity = None

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> Transport:
        transport = self.reader.connect()
        self._transport = self.transport_wrapper(transport) if self.transport_wrapper else transport
        return self._transport

    def _drop(self) -> None:
        """Forget the connection (not the card identity) after the card or the service went away."""
        transport, self._transport = self._transport, None
        if transport is not None:
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
        with contextlib.ExitStack() as stack:
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

    def read(self, *, require_cardholder: bool = True, today: dt.date | None = None) -> CardRead:
        """Read card (EF05) and cardholder (EF06) data with the fewest APDUs the card allows.

        A 3rd-generation card refuses EF06 until the terminal authenticates (reference §1, §5):
        by default that raises :class:`~sscard.errors.AuthRequired`; with
        ``require_cardholder=False`` the EF05 data comes back with ``locked_elements`` set and an
        ``AUTH_REQUIRED`` warning, never as if it were complete.
        """
        with self._operation() as (transport, app, _fresh):
            ssse = app.select()
            issuer = app.read_issuer()
            locked: tuple[str, ...] = ()
            try:
                holder = app.read_cardholder(issuer.spec_version)
            except AuthRequired as exc:
                if require_cardholder:
                    raise AuthRequired("cardholder data (EF06)", exc.detail) from None
                holder, locked = CardholderData(), ("ssn", "name", "gender", "nation", "birthplace", "birth_date")
            warnings = validate(issuer, None if locked else holder, today or dt.date.today())
            if locked:
                warnings.append(
                    RecordWarning(
                        "AUTH_REQUIRED",
                        "Cardholder data needs terminal authentication (PSAM or HSM): " + ", ".join(locked),
                        "持卡人信息需要终端认证（PSAM或加密机）后才能读取。",
                    )
                )
            card = CardRead(transport.name, transport.atr, ssse, issuer, holder, tuple(warnings), locked)
            self.card_identity = CardIdentity.of(card)
            return card

    def pin_status(self) -> PinOutcome:
        """Tries left, without spending one, where the card supports the status query."""
        with self._operation() as (transport, app, fresh):
            app.select()
            self._check_same_card(transport, app, fresh)
            return app.pin_status()

    def verify(self, pin: str) -> PinOutcome:
        """Verify the cardholder's PIN once.  Never retried: a retry could block the card.

        The PIN format is checked before anything reaches the card, and a blocked PIN is reported
        from the status query without sending a VERIFY that could change the card.
        """
        validate_pin(pin)
        with self._operation() as (transport, app, fresh):
            app.select()
            self._check_same_card(transport, app, fresh)
            status = app.pin_status()
            if status.state is PinState.BLOCKED:
                return status
            with _pin_in_flight():
                return app.verify(pin)

    def change_pin(self, old: str, new: str) -> PinOutcome:
        """CHANGE PIN; both PINs checked for format first; a blocked PIN is not touched."""
        validate_pin(old)
        validate_pin(new)
        with self._operation() as (transport, app, fresh):
            app.select()
            self._check_same_card(transport, app, fresh)
            status = app.pin_status()
            if status.state is PinState.BLOCKED:
                return status
            with _pin_in_flight():
                return app.change_pin(old, new)
