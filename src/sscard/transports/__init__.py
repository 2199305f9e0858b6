"""Transports: the one narrow boundary to a card (docs/design.md §1).

A :class:`~sscard.transports.base.Transport` moves bytes: ``transmit(bytes) -> bytes``, ``atr``,
``transaction()``, ``close()``.  A :class:`~sscard.transports.base.Reader` finds or waits for a card
and hands out transports.  The pyscard adapter (:mod:`sscard.transports.pcsc`) is the only module of
sscard that imports pyscard, and it is imported lazily.
"""

from sscard.transports.base import Reader, Transport, TransportBase

__all__ = ["Reader", "Transport", "TransportBase"]
