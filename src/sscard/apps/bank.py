"""The bank (UnionPay / PBOC 3.0 = EMV) application through the card-application seam.

Recognised as a payment terminal selects (docs/card-reference.md §11.2): the PPSE's entries or the
UnionPay AIDs, and an application whose GET PROCESSING OPTIONS answers ``6985`` is eliminated and
the next one tried (:meth:`~sscard.bank.BankApplication.select_usable`), so a card whose bank
application cannot be used is NOT_SSC here rather than a CARD_ERROR.  Never a VERIFY: the bank
module cannot build one.  The PAN stays masked in the result's JSON.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from sscard.bank.application import BankApplication, Selected
from sscard.bank.card import BankCard
from sscard.bank.emv import ProcessingOptions

if TYPE_CHECKING:
    from sscard.cardapp import ReadContext


class BankCardApp:
    """The UnionPay application as a :class:`~sscard.cardapp.CardApplication`."""

    def __init__(self, context: ReadContext) -> None:
        self.context = context
        self.app = BankApplication(context.connection)
        self._started: tuple[Selected, ProcessingOptions] | None = None

    def select(self) -> None:
        """SELECT (PPSE, then the AIDs) and GPO; NOT_SSC when no application is there and usable."""
        self._started = self.app.select_usable()

    def read(self) -> BankCard:
        assert self._started is not None, "select() first"
        card = self.app.read_selected(*self._started)
        return dataclasses.replace(card, reader=self.context.reader, atr=self.context.atr)
