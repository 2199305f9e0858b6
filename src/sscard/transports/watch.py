"""The interface of event sources: what readers hold now, and a blocking wait for the next change.

:mod:`sscard.events` turns two successive snapshots into events and survives a source whose service
goes away; a source only has to report states.  The PC/SC source is
:class:`sscard.transports.pcsc_events.PcscEventSource`; :class:`sscard.transports.sim.SimEventSource`
watches an in-process simulated reader.  This module imports no third-party library, so the facade
can name these types without loading pyscard.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from sscard.errors import NoService


@dataclass(frozen=True)
class ReaderSnapshot:
    """One reader as its source last described it."""

    name: str
    present: bool
    atr: bytes = b""
    #: A count of card events (pcsc-lite keeps one per reader); a change with the card still
    #: present means it was pulled and a card pushed in between two looks.
    counter: int = 0
    #: Another program holds the card exclusively.
    exclusive: bool = False
    #: The card is in but does not answer.
    mute: bool = False


class Cancelled(Exception):
    """The source's ``cancel()`` was called; the wait ends and the monitor stops."""


class ServiceLost(NoService):
    """The service behind the source (pcscd) went away or is not there; try again later."""


class EventSource(Protocol):
    """Reader states, and a wait for the next change.  ``cancel`` may be called from any thread."""

    def open(self) -> None:
        """(Re)connect to the service; :class:`ServiceLost` when it does not answer."""
        ...

    def snapshot(self) -> Mapping[str, ReaderSnapshot]:
        """Every reader's state now, without waiting."""
        ...

    def wait(self) -> Mapping[str, ReaderSnapshot]:
        """Block until something changes, then return every reader's state.

        Raises :class:`ServiceLost` when the service goes away, :class:`Cancelled` after ``cancel()``.
        """
        ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...
