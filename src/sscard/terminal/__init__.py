"""The terminal facade: what kiosk software calls.  ``read``, ``verify``, ``change_pin``.

    from sscard.terminal import Terminal

    with Terminal.open("sim:typical") as terminal:      # or a PC/SC reader name, or "replay:PATH"
        terminal.wait_for_card(timeout=30)
        card = terminal.read()
        print(card.cardholder.full_name, card.issuer.card_number)
        outcome = terminal.verify(pin)                  # PinOutcome: verified / incorrect (tries left) / blocked

``read()`` reads whichever card application the card carries, asking the registry of
:mod:`sscard.cardapp` (the social security card first; ``read(app="bank")`` pins one); the PIN
operations are the social security card's.

Each public operation runs inside one PC/SC transaction (docs/design.md §4), so another process cannot
interleave APDUs, and starts with its own SELECT SSSE, so it never depends on what a previous
operation (or another program) left selected.  A card pulled out mid-operation surfaces as
:class:`~sscard.errors.CardRemoved`; the terminal drops the connection and the next operation
connects to whatever card is then in the reader.

The facade is split by responsibility, each room building on the one before: connection life
and card operations (:mod:`.core`), the key-service wiring (:mod:`.keys`), the HSM two-step
(:mod:`.hsm`), sign-in and sessions (:mod:`.signin`), any credential (:mod:`.facade`).
"""

from sscard.apps.ssc import CardRead
from sscard.terminal.core import CardIdentity, CardTerminal, PinSource
from sscard.terminal.facade import Terminal
from sscard.terminal.keys import open_key_service

__all__ = ["CardIdentity", "CardRead", "CardTerminal", "PinSource", "Terminal", "open_key_service"]
