"""The bank (financial) application: UnionPay / PBOC 3.0, i.e. EMV (docs/card-reference.md §11).

A card-application module (layer 3): it speaks APDUs through :mod:`sscard.apdu` and raises
:mod:`sscard.errors`; it never sees pyscard, the terminal facade or a front end.

* :class:`BankApplication` — SELECT (PPSE or AIDs), GET PROCESSING OPTIONS, READ RECORD;
* :class:`BankCard` — the frozen result, PAN masked unless :meth:`BankCard.clear_pan` is called;
* :mod:`sscard.bank.tlv` / :mod:`sscard.bank.emv` — the strict BER-TLV, DOL, GPO and AFL parsers;
* the ``iReadBankNumber`` output line is a front end's: :mod:`sscard.national.bank`.
"""

from sscard.bank.application import UNIONPAY_AIDS, UNIONPAY_CREDIT, UNIONPAY_DEBIT, BankApplication, Selected
from sscard.bank.card import BankCard, mask_pan

__all__ = [
    "UNIONPAY_AIDS",
    "UNIONPAY_CREDIT",
    "UNIONPAY_DEBIT",
    "BankApplication",
    "BankCard",
    "Selected",
    "mask_pan",
]
