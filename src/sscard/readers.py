"""Turn a reader specification into a :class:`~sscard.transports.base.Reader`.

``sim:PERSONA``  the built-in simulated card, in process (no pcscd needed)
``replay:PATH``  a recorded trace, replayed strictly
anything else    a substring of a PC/SC reader name (``None``: the first reader with a card)

pyscard and the simulator are imported only when asked for, so ``sscard --help`` and replay-only
use never pay for them.
"""

from __future__ import annotations

from sscard.transports.base import Reader

SIM_PREFIX = "sim:"
REPLAY_PREFIX = "replay:"


def open_reader(spec: str | None, busy_wait: float = 0.0) -> Reader:
    if spec and spec.startswith(SIM_PREFIX):
        from sscard.sim import SimulatedCard, load_persona
        from sscard.transports.sim import SimReader

        persona = spec[len(SIM_PREFIX) :] or "typical"
        return SimReader(SimulatedCard(load_persona(persona)), name=f"{SIM_PREFIX}{persona}")
    if spec and spec.startswith(REPLAY_PREFIX):
        from sscard.transports.replay import ReplayReader

        return ReplayReader(spec[len(REPLAY_PREFIX) :])
    from sscard.transports.pcsc import PcscReader, find_reader

    return PcscReader(find_reader(spec), busy_wait=busy_wait)
