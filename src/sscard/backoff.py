"""How long to wait between attempts to reach something that went away.

A layer-0 value with no dependencies, so the event monitor (:mod:`sscard.events`), the QR
scanner's reopen loop (:mod:`sscard.qr`) and anything else that retries share one schedule
without importing the PC/SC event source or each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Seconds between attempts to reach something that went away (pcscd, an unplugged scanner):
    first, factor, ceiling.  Exponential so a long outage costs little, capped so a return is
    noticed within ``ceiling`` seconds."""

    first: float = 0.1
    factor: float = 2.0
    ceiling: float = 2.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * self.factor, self.ceiling)
