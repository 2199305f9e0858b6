"""The transport and reader interfaces every card source implements (pcsc, sim, replay, record).

The protocols name every hook the layers above use, so nothing probes for one with ``getattr``:
a source where a hook does not apply implements it as a no-op (:class:`TransportBase`,
:class:`ReaderBase`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from sscard.transports.watch import EventSource

_SelfTransport = TypeVar("_SelfTransport", bound="TransportBase")


@runtime_checkable
class Transport(Protocol):
    """A connection to one card.  Everything above this line speaks APDUs as ``bytes``."""

    @property
    def name(self) -> str:
        """The reader's name (or ``sim:PERSONA`` / ``replay:PATH``)."""
        ...

    @property
    def atr(self) -> bytes: ...

    @property
    def protocol(self) -> str:
        """``"T=0"`` or ``"T=1"``; the APDU layer adds GET RESPONSE handling either way."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU, return the response with its two status bytes."""
        ...

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Hold the card for one facade operation so no other process can interleave APDUs."""
        ...

    def control(self, code: int, data: bytes) -> bytes:
        """``SCardControl`` on the card handle (PC/SC part 10 PIN pads); the reader's answer.

        Only a PC/SC reader has one: elsewhere :class:`~sscard.errors.ControlUnsupported`.
        """
        ...

    def close(self) -> None: ...

    def reset_and_close(self) -> None:
        """Close, resetting the card as the connection ends where the transport can (the end of a
        session: the card's PIN-verified state must not outlive it); a plain :meth:`close` elsewhere."""
        ...

    def assert_finished(self) -> None:
        """Raise when a strict replay has recorded exchanges left over; nothing for a live card."""
        ...


class TransportBase:
    """Shared plumbing: context-manager support, a no-op transaction for in-process cards, and the
    hooks that do not apply to every transport (reset on close, a replay's leftovers)."""

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return _null_transaction()

    def control(self, code: int, data: bytes) -> bytes:
        from sscard.errors import ControlUnsupported

        raise ControlUnsupported(f"{type(self).__name__} has no SCardControl")

    def close(self) -> None:
        return None

    def reset_and_close(self) -> None:
        self.close()

    def assert_finished(self) -> None:
        return None

    def __enter__(self: _SelfTransport) -> _SelfTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _null_transaction() -> Iterator[None]:
    yield


@runtime_checkable
class Reader(Protocol):
    """Where cards come from: a PC/SC reader, the in-process simulator, or a recorded trace."""

    @property
    def name(self) -> str: ...

    def card_present(self) -> bool: ...

    def wait_for_card(self, timeout: float | None = None) -> None:
        """Block until a card is present; raise :class:`sscard.errors.Timeout` after ``timeout`` seconds."""
        ...

    def connect(self) -> Transport:
        """Connect to the card now in the reader; raise :class:`sscard.errors.NoCard` if there is none."""
        ...

    @property
    def last(self) -> Transport | None:
        """The transport of the last successful :meth:`connect` (diagnostics, a replay's leftovers)."""
        ...

    @property
    def accepts_pin(self) -> bool:
        """False when a PIN operation would be answered without a card checking the PIN (a replay
        not opened for tests): the terminal then refuses before asking for one."""
        ...

    def event_source(self) -> EventSource | None:
        """Card and reader events for :class:`sscard.events.Monitor`; None where there are none."""
        ...

    @property
    def recorded_header(self) -> Mapping[str, str] | None:
        """The header of the trace a reader replays (docs/trace-format.md), so a read asks what the
        recording asked; None for a reader with a card in it."""
        ...


class ReaderBase:
    """The reader hooks that do not apply to every reader, as their "does not apply" answers."""

    #: Set by :meth:`connect` in readers that keep it.
    last: Transport | None = None

    @property
    def accepts_pin(self) -> bool:
        return True

    def event_source(self) -> EventSource | None:
        return None

    @property
    def recorded_header(self) -> Mapping[str, str] | None:
        return None


def event_factory(reader: Reader) -> Callable[[], EventSource] | None:
    """``reader.event_source`` as the factory :class:`sscard.events.Monitor` calls on every
    (re)connect, or None for a reader without events (a replay): so callers test once, typed."""
    if reader.event_source() is None:
        return None

    def make() -> EventSource:
        source = reader.event_source()
        if source is None:  # no reader stops having events; if one did, the monitor retries
            from sscard.transports.watch import ServiceLost

            raise ServiceLost(f"{reader.name} has no event source")
        return source

    return make
