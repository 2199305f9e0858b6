"""The HSM two-step (docs/card-reference.md §6): step 1 exports what the HSM needs, step 2 completes
the authentication with its answer; all state is in the step-1 line, so the halves may run in two
processes."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sscard.apps.ssc import CardRead, card_keys
from sscard.errors import (
    AlgorithmUnsupported,
    CardChanged,
)
from sscard.ssc.records import validate
from sscard.terminal.core import CardIdentity, CardTerminal
from sscard.terminal.observe import observed

if TYPE_CHECKING:
    from sscard.psam.hsm import HsmStep1


class HsmTerminal(CardTerminal):
    """A terminal that can read a 3rd-generation card through a remote HSM."""

    # -- the HSM two-step -------------------------------------------------------------------

    @observed("hsm_step1")
    def hsm_step1(self, terminal_id: str | None = None) -> HsmStep1:
        """Step 1 of the HSM two-step (docs/card-reference.md §6): what the HSM needs, ending with GET CHALLENGE.

        Nothing may be sent to the card between this and :meth:`hsm_step2`: the challenge is
        good for the card's next command only.
        """
        import secrets  # here: a plain read needs no random numbers (start-up, issue 11 item 14)

        from sscard.psam.auth import get_challenge
        from sscard.psam.crypto import Algorithm, build_factors
        from sscard.psam.hsm import HsmStep1
        from sscard.psam.profile import load_profile

        profile = load_profile(self.config.key_profile)
        with self._operation() as (transport, app, _fresh):
            ssse = app.select()
            issuer = app.read_issuer()
            facts, algorithm = card_keys(transport.atr, ssse, issuer)
            if algorithm is Algorithm.SSF33:
                raise AlgorithmUnsupported("SSF33", "no HSM layout is defined for SSF33 here")
            challenge = get_challenge(app.connection, profile)
            return HsmStep1(
                region_code=issuer.region_code or "",
                atr=transport.atr,
                algorithm=algorithm,
                identification_code=facts.identification_code,
                ia_factors=b"".join(build_factors(profile.ia.levels, facts)),
                ia_data=secrets.token_bytes(profile.internal_data_length),
                rk_factors=b"".join(build_factors(profile.rkssse.levels, facts)),
                challenge=challenge,
                terminal_id=self.config.terminal_id if terminal_id is None else terminal_id,
            )

    @observed("hsm_step2")
    def hsm_step2(self, step1: HsmStep1 | str, answer: str, *, today: dt.date | None = None) -> CardRead:
        """Step 2: EXTERNAL AUTHENTICATE with the HSM's cryptogram as the card's next command, then
        read everything and check the card's internal-authentication answer against the HSM's.

        ``step1`` may be the line itself, so step 2 can run in another process.  The card must be
        the one of step 1 (same ATR, same identification code) or this is CARD_CHANGED.
        """
        from sscard.psam.auth import ask_internal, check_internal, send_external
        from sscard.psam.hsm import HsmAnswer, HsmStep1
        from sscard.psam.profile import load_profile

        state = HsmStep1.parse(step1) if isinstance(step1, str) else step1
        hsm = HsmAnswer.parse(answer, state.algorithm, len(state.ia_data))
        profile = load_profile(self.config.key_profile)
        with self._operation() as (transport, app, _fresh):
            if transport.atr != state.atr:
                raise CardChanged("the ATR differs from step 1")
            send_external(app.connection, profile, hsm.external_cryptogram)
            ssse = app.select()
            issuer = app.read_issuer()
            if issuer.identification_code is None or issuer.identification_code.raw != state.identification_code:
                raise CardChanged("the card identification code differs from step 1")
            holder = app.read_cardholder(issuer.spec_version)
            _data, card_answer = ask_internal(app.connection, profile, state.ia_data)
            check_internal(card_answer, hsm.internal_result)
            warnings = validate(issuer, holder, today or dt.date.today())
            card = CardRead(transport.name, transport.atr, ssse, issuer, holder, tuple(warnings), (), "HSM")
            self.card_identity = CardIdentity.of(card)
            return card
