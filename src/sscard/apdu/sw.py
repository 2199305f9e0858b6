"""Status words (docs/card-reference.md §4) and the one raw APDU error.

``ApduError`` is deliberately raw: it carries the SW and data and nothing else.  The card
application layer maps it to domain errors (``PinIncorrect``, ``NotSsc`` …) because only that
layer knows what a given SW means for a given command (docs/design.md §3).
"""

from __future__ import annotations

from enum import IntEnum


class SW(IntEnum):
    """Status words this card family uses (docs/card-reference.md §4) plus the ISO 7816-4 ones we answer with."""

    OK = 0x9000
    WRONG_LENGTH = 0x6700
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCE_DATA_NOT_USABLE = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED_NO_EF = 0x6986
    WRONG_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    INCORRECT_P1P2 = 0x6A86
    REFERENCE_NOT_FOUND = 0x6A88
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00
    APPLICATION_LOCKED = 0x9303

    @staticmethod
    def describe(sw: int) -> str:
        """A short English name for any SW, including the parameterised families."""
        sw1, sw2 = sw >> 8, sw & 0xFF
        if sw1 == 0x61:
            return f"{sw2} more bytes available"
        if sw1 == 0x6C:
            return f"wrong Le, use {sw2}"
        if sw & 0xFFF0 == 0x63C0:
            return f"verification failed, {sw2 & 0x0F} tries left"
        try:
            return SW(sw).name.lower().replace("_", " ")
        except ValueError:
            return "unknown status"


def tries_left(sw: int) -> int | None:
    """Tries left from a ``63Cx`` status word (docs/card-reference.md §4), else None."""
    return sw & 0x0F if sw & 0xFFF0 == 0x63C0 else None


class ApduError(Exception):
    """The card answered with a status word other than ``9000``."""

    def __init__(self, sw: int, data: bytes = b"") -> None:
        self.sw = sw
        self.data = data
        super().__init__(f"SW {sw:04X} ({SW.describe(sw)})")
