"""The in-process transport: a simulated card behind the same interface as a PC/SC reader.

This module knows the card only through the small :class:`CardLike` protocol, never
:mod:`sscard.sim` itself, so the transport layer stays independent of the simulator (and any
object that answers APDUs — a test double, a scripted card — can sit behind it).

A card says it has been pulled by its ``present`` property turning false (the simulator's
``remove_after``); from then on the reader is empty: ``transmit`` raises
:class:`~sscard.errors.CardRemoved` and ``connect`` raises :class:`~sscard.errors.NoCard`, as a
PC/SC reader would after the card was yanked mid-operation.  Any other exception from the card is a
bug in the card and propagates unchanged.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Protocol

from sscard.errors import CardRemoved, NoCard, Timeout, TransportFailure
from sscard.transports.base import ReaderBase, TransportBase
from sscard.transports.watch import Cancelled, ReaderSnapshot


class CardLike(Protocol):
    """What a transport needs from a card: ATR, protocol, presence, power, and APDU in → APDU out."""

    @property
    def atr(self) -> bytes: ...

    @property
    def protocol(self) -> str: ...

    @property
    def present(self) -> bool:
        """False once the card has been pulled; it then answers nothing any more."""
        ...

    def power_on(self) -> None: ...

    def process(self, apdu: bytes) -> bytes: ...


class Insertion:
    """One stay of one card in a reader.  Once it ends, transports opened during it fail."""

    def __init__(self, card: CardLike, on_end: Callable[[Insertion], None] | None = None) -> None:
        self.card = card
        self.present = True
        self._on_end = on_end

    def end(self) -> None:
        if self.present:
            self.present = False
            if self._on_end is not None:
                self._on_end(self)


class SimTransport(TransportBase):
    """One connection to an in-process card, valid while the card stays inserted."""

    def __init__(self, card: CardLike, name: str, insertion: Insertion | None = None) -> None:
        self._card = card
        self._name = name
        self._insertion = insertion if insertion is not None else Insertion(card)
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def atr(self) -> bytes:
        return self._card.atr

    @property
    def protocol(self) -> str:
        return self._card.protocol

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Like SCardBeginTransaction on a handle whose card left: fail before anything is sent."""
        if not self._closed and not (self._insertion.present and self._card.present):
            self._insertion.end()
            raise CardRemoved(f"{self._name}: the card is no longer in the reader")
        return super().transaction()

    def transmit(self, apdu: bytes) -> bytes:
        if self._closed:
            raise TransportFailure(f"{self._name}: connection already closed")
        if not (self._insertion.present and self._card.present):
            self._insertion.end()
            raise CardRemoved(f"{self._name}: the card is no longer in the reader", command_sent=False)
        try:
            return self._card.process(apdu)
        except Exception:
            if self._card.present:
                raise
            self._insertion.end()
            raise CardRemoved(f"{self._name}: the card was pulled during the command") from None

    def close(self) -> None:
        self._closed = True

    def reset_and_close(self) -> None:
        """Like SCARD_RESET_CARD: the card's security state (a verified PIN) goes."""
        if not self._closed and self._insertion.present and self._card.present:
            self._card.power_on()
        self.close()


class SimReader(ReaderBase):
    """A reader with an in-process card in it: present until the card is pulled or :meth:`remove`."""

    def __init__(self, card: CardLike, name: str) -> None:
        self._name = name
        self._changed = threading.Condition()
        self._insertion: Insertion | None = None
        self.insert(card)

    @property
    def name(self) -> str:
        return self._name

    @property
    def card(self) -> CardLike | None:
        insertion = self._insertion
        if insertion is None or not insertion.present:
            return None
        if not insertion.card.present:
            insertion.end()
            return None
        return insertion.card

    def card_present(self) -> bool:
        return self.card is not None

    def wait_for_card(self, timeout: float | None = None) -> None:
        with self._changed:
            if not self._changed.wait_for(self.card_present, timeout):
                raise Timeout("a card", what_zh="插卡", detail=f"{self._name} stayed empty for {timeout} s")

    def connect(self) -> SimTransport:
        insertion = self._insertion
        card = self.card
        if card is None or insertion is None:
            raise NoCard(f"{self._name} is empty")
        card.power_on()
        self.last = SimTransport(card, self._name, insertion)
        return self.last

    def remove(self) -> None:
        """Pull the card (tests); a transport still open on it then raises ``CardRemoved``."""
        insertion = self._insertion
        if insertion is not None:
            insertion.end()

    def insert(self, card: CardLike) -> None:
        """Put a card (back) in, pulling any card already there; wakes :meth:`wait_for_card`."""
        self.remove()
        with self._changed:
            self._insertion = Insertion(card, self._ended)
            self._changed.notify_all()

    def _ended(self, insertion: Insertion) -> None:
        with self._changed:
            if self._insertion is insertion:
                self._insertion = None
            self._changed.notify_all()

    def event_source(self) -> SimEventSource:
        """Card events of this reader, for :class:`sscard.events.Monitor` (sessions end on removal)."""
        return SimEventSource(self)


class SimEventSource:
    """Events of one in-process reader: insertions and removals through :meth:`SimReader.insert`
    and :meth:`SimReader.remove` (a ``remove_after`` card is seen gone when next looked at)."""

    def __init__(self, reader: SimReader) -> None:
        self._reader = reader
        self._cancelled = False
        self._generation = 0
        self._last: tuple[bool, int] | None = None

    def open(self) -> None:
        return None

    def _state(self) -> tuple[bool, int]:
        insertion = self._reader._insertion
        return (self._reader.card_present(), id(insertion) if insertion is not None else 0)

    def snapshot(self) -> dict[str, ReaderSnapshot]:
        state = self._state()
        if state != self._last:
            self._generation += 1
            self._last = state
        card = self._reader.card
        atr = card.atr if card is not None else b""
        return {self._reader.name: ReaderSnapshot(self._reader.name, state[0], atr, self._generation)}

    def wait(self) -> dict[str, ReaderSnapshot]:
        with self._reader._changed:
            self._reader._changed.wait_for(lambda: self._cancelled or self._state() != self._last)
            if self._cancelled:
                raise Cancelled
        return self.snapshot()

    def cancel(self) -> None:
        with self._reader._changed:
            self._cancelled = True
            self._reader._changed.notify_all()

    def close(self) -> None:
        return None
