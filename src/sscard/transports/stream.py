"""The byte-stream interface of serial devices (QR scanners, resident ID-card readers).

Neutral on purpose: it imports nothing, so the device protocols above it (:mod:`sscard.qr`,
:mod:`sscard.idcard`) name the type without importing pyserial's adapter
(:mod:`sscard.transports.serial`, which implements it), and tests or other adapters can give them
anything that moves bytes.
"""

from __future__ import annotations

from typing import Protocol


class ByteStream(Protocol):
    """What the serial protocols need: bytes in with a timeout, bytes out, a name, close."""

    @property
    def name(self) -> str: ...

    def read(self, size: int, timeout: float | None) -> bytes:
        """Up to ``size`` bytes; fewer (or none) when ``timeout`` seconds pass first."""
        ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...
