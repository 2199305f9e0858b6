"""Check characters of the card number and the social security number (docs/card-reference.md §3).

A mismatch is reported as a warning by the caller, not raised: a resident with a mis-personalised
card still needs to be served, and the front desk needs to know.
"""

from __future__ import annotations

import re

CARD_NUMBER_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
SSN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CARD_NUMBER = re.compile(r"^[0-9A-Z]{8}[0-9X]$")
_SSN = re.compile(r"^[0-9]{17}[0-9X]$")


def _char_value(char: str) -> int:
    """Digits count as their value, letters A=10, B=11, … (docs/card-reference.md §3)."""
    return int(char) if char.isdigit() else ord(char) - ord("A") + 10


def card_number_check_char(first8: str) -> str:
    """The 9th character of a card number: r = 11 − (Σ wᵢ·cᵢ mod 11); 10 → 'X', 11 → '0'."""
    total = sum(w * _char_value(c) for w, c in zip(CARD_NUMBER_WEIGHTS, first8, strict=True))
    r = 11 - total % 11
    return "X" if r == 10 else "0" if r == 11 else str(r)


def card_number_valid(card_number: str) -> bool:
    return bool(_CARD_NUMBER.match(card_number)) and card_number_check_char(card_number[:8]) == card_number[8]


def ssn_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of the 18-character resident ID number."""
    total = sum(w * int(c) for w, c in zip(SSN_WEIGHTS, first17, strict=True))
    return "10X98765432"[total % 11]


def ssn_valid(ssn: str) -> bool:
    return bool(_SSN.match(ssn)) and ssn_check_char(ssn[:17]) == ssn[17]
