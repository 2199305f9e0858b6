"""The transport and reader interfaces every card source implements (pcsc, sim, replay, record)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol, TypeVar, runtime_checkable

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

    def close(self) -> None: ...


class TransportBase:
    """Shared plumbing: context-manager support and a no-op transaction for in-process cards."""

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return _null_transaction()

    def close(self) -> None:
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
