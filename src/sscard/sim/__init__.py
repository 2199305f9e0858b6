"""The simulated social security card: the card on the other side of the wire.

Not part of the middleware stack.  It imports only :mod:`sscard.errors`, the APDU command parser
and status words, and never :mod:`sscard.ssc`: the card encodes its records independently
(:mod:`sscard.sim.encoding`), so tests that read it through the middleware genuinely test the
parsers.

* :class:`SimulatedCard` answers APDUs for a :class:`Persona` (data + quirks, a TOML file);
* :mod:`sscard.transports.sim` puts it behind the in-process ``Transport`` interface;
* :class:`VpcdLink` inserts it into pcscd's vpcd virtual reader, so it is a real PC/SC card;
* :class:`SimulatedPsam` is the PSAM of docs/card-auth.md for the SAM slot (:func:`load_psam`), and
  the card answers INTERNAL/EXTERNAL AUTHENTICATE with keys from the published test keys
  (``sim/data/test-keys.toml``, :func:`sscard.sim.keys.load_test_keys`), computed by
  :mod:`sscard.sim.crypto` independently of :mod:`sscard.psam`;
* :mod:`sscard.sim.health` is the resident health card's DDF1 on personas with a ``[health]`` section.
"""

from sscard.sim.card import CardGone, SecurityState, SimulatedCard
from sscard.sim.persona import Persona, list_personas, load_persona
from sscard.sim.psam import PsamPersona, SimulatedPsam, list_psams, load_psam
from sscard.sim.vpcd import VpcdLink

__all__ = [
    "CardGone",
    "Persona",
    "PsamPersona",
    "SecurityState",
    "SimulatedCard",
    "SimulatedPsam",
    "VpcdLink",
    "list_personas",
    "list_psams",
    "load_persona",
    "load_psam",
]
