"""The resident health card through the card-application seam (docs/health-card.md).

Recognised by SELECT DDF1 (by FID); read with the terminal's ``[keys]`` wiring: with a key service
configured EF06 is unlocked by external authentication (the key service the social security card
uses, with the health card's own profile); without one the read still succeeds with the EF05 data,
``cardholder: null`` and an AUTH_REQUIRED warning.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from sscard.health.application import Ddf1Info, HealthApplication, HealthCard

if TYPE_CHECKING:
    from sscard.cardapp import ReadContext


class HealthCardApp:
    """DDF1 as a :class:`~sscard.cardapp.CardApplication`."""

    def __init__(self, context: ReadContext) -> None:
        self.context = context
        self.app = HealthApplication(context.connection)
        self._ddf1: Ddf1Info | None = None

    def select(self) -> None:
        """SELECT DDF1; ``6A82`` is NOT_SSC, the seam's "not here"."""
        self._ddf1 = self.app.select()

    def read(self) -> HealthCard:
        assert self._ddf1 is not None, "select() first"
        context = self.context
        key_service = context.authenticator().service if context.keys_configured else None
        card = self.app.read_selected(self._ddf1, context.atr, key_service)
        return dataclasses.replace(card, reader=context.reader)
