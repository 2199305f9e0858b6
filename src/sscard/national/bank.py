"""The national-interface output of the bank application: ``iReadBankNumber`` (docs/card-reference.md §6.6).

Vendor reader libraries for the 3rd-generation card add ``int iReadBankNumber(int iType, char*
pOutInfo)`` beside the standard functions: it writes the card's bank card number (the PAN of the
financial application) into ``pOutInfo``; kiosk programs copy that text into their own "bank
number" field.  The line is built here in the style of :func:`sscard.national.ireadcardbas` —
fields each followed by ``|`` — and is the one place the clear PAN leaves :class:`BankCard`,
because that is what this call exists to hand over.  Whether vendors end the number with ``|`` is
**(unconfirmed)**; ``separator=""`` gives the bare number.

This module formats only; the return codes and the ``(code, text)`` calling convention are those
of :mod:`sscard.national` (a front end, like this module), which will call :func:`ireadbanknumber`.
"""

from __future__ import annotations

from sscard.bank.card import BankCard

#: iReadBankNumber field order.
IREADBANKNUMBER_FIELDS = ("银行卡号",)


def ireadbanknumber(card: BankCard, *, separator: str = "|") -> str:
    """The ``iReadBankNumber`` output: the clear PAN, followed by ``separator``."""
    return f"{card.clear_pan()}{separator}"


def parse_ireadbanknumber(text: str) -> dict[str, str]:
    """Split an ``iReadBankNumber`` line back into its named field (with or without the trailing ``|``)."""
    number = text[:-1] if text.endswith("|") else text
    if not number.isdigit() or "|" in number:
        raise ValueError("expected one field of digits, optionally ending in '|'")
    return dict(zip(IREADBANKNUMBER_FIELDS, (number,), strict=True))
