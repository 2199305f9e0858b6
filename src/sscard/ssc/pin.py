"""A PIN held in one mutable buffer that is wiped after use (issue 11, docs/architecture.md "PIN handling").

Python strings are immutable: a PIN typed into a ``str`` stays in memory, unwiped, until the
interpreter reuses that memory.  :class:`Pin` keeps the digits in one ``bytearray`` instead, is
validated once, packs itself into the BCD of a VERIFY or CHANGE PIN without making a ``str``, and
is zeroed by :meth:`Pin.wipe` — which the terminal facade calls when a PIN operation returns or
raises, whatever the outcome.  The CLI reads PINs straight into such a buffer; the public API
still takes ``str`` (and plain ``bytearray``) for compatibility, wrapping it in a Pin.

What Python cannot guarantee is written down in docs/architecture.md: this module keeps the
number of copies small, it cannot make it one.
"""

from __future__ import annotations

import hmac
from typing import NoReturn, TypeAlias

from sscard.errors import PinFormat

PIN_MIN, PIN_MAX = 4, 12
#: Padding nibble for odd-length PINs in packed BCD.  (Unconfirmed across vendors; kept as data.)
PIN_PAD_NIBBLE = 0x0F
_ZERO, _NINE = 0x30, 0x39


class Pin:
    """The digits of one PIN as ASCII in a ``bytearray`` this object owns; never printed.

    ``Pin(buffer)`` takes the buffer itself (no copy): whoever filled it hands it over, and
    :meth:`wipe` zeroes that very buffer.  ``repr``/``str`` never show a digit, and a Pin cannot
    be pickled or compared, so it cannot leak through a log line, a traceback or a cache key.
    """

    __slots__ = ("_digits", "_valid")

    def __init__(self, digits: bytearray) -> None:
        if not isinstance(digits, bytearray):
            raise TypeError("Pin takes a bytearray (use Pin.from_text for a str)")
        self._digits = digits
        self._valid = False

    @classmethod
    def from_text(cls, text: str) -> Pin:
        """A Pin from a ``str`` (the compatible API): the ``str`` itself cannot be wiped."""
        if not isinstance(text, str):
            raise PinFormat()
        try:
            return cls(bytearray(text, "ascii"))
        except UnicodeEncodeError:
            raise PinFormat() from None

    @classmethod
    def of(cls, pin: PinLike) -> Pin:
        """A Pin for whatever a caller passed: the same Pin, a ``bytearray`` taken over, a ``str`` copied."""
        if isinstance(pin, Pin):
            return pin
        if isinstance(pin, bytearray):
            return cls(pin)
        return cls.from_text(pin)

    def validate(self) -> None:
        """Raise :class:`~sscard.errors.PinFormat` unless 4–12 ASCII digits; checked once per Pin."""
        if self._valid:
            return
        digits = self._digits
        if not PIN_MIN <= len(digits) <= PIN_MAX or any(not _ZERO <= b <= _NINE for b in digits):
            raise PinFormat()
        self._valid = True

    def packed(self) -> bytearray:
        """The PIN as packed BCD (odd length padded with ``F``), in a new buffer the caller wipes."""
        self.validate()
        digits = self._digits
        out = bytearray((len(digits) + 1) // 2)
        for i, byte in enumerate(digits):
            nibble = byte - _ZERO
            out[i // 2] |= nibble << 4 if i % 2 == 0 else nibble
        if len(digits) % 2:
            out[-1] |= PIN_PAD_NIBBLE
        return out

    def matches(self, other: Pin) -> bool:
        """Whether two PINs hold the same digits (the "new PIN again" check), in constant time."""
        return hmac.compare_digest(self._digits, other._digits)

    def wipe(self) -> None:
        """Zero the buffer and forget it; the Pin can no longer be used (PIN_FORMAT)."""
        wipe(self._digits)
        self._digits = bytearray()
        self._valid = False

    @property
    def wiped(self) -> bool:
        return not self._digits

    def __len__(self) -> int:
        return len(self._digits)

    def __repr__(self) -> str:
        return "Pin(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return self is other  # never compares digits (no timing or hashing of a PIN)

    __hash__ = object.__hash__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Pin cannot be pickled")

    def __enter__(self) -> Pin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.wipe()


#: What the PIN-taking calls accept.
PinLike: TypeAlias = str | bytearray | Pin


def wipe(buffer: bytearray) -> None:
    """Overwrite a buffer with zeros in place (it keeps its length)."""
    buffer[:] = bytes(len(buffer))
