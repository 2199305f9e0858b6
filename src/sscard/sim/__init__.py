"""The simulated social security card: the card on the other side of the wire.

Not part of the middleware stack.  It imports only :mod:`sscard.errors`, the APDU command parser
and status words, and never :mod:`sscard.ssc`: the card encodes its records independently
(:mod:`sscard.sim.encoding`), so tests that read it through the middleware genuinely test the
parsers.

* :class:`SimulatedCard` answers APDUs for a :class:`Persona` (data + quirks, a TOML file);
* :mod:`sscard.transports.sim` puts it behind the in-process ``Transport`` interface;
* :class:`VpcdLink` inserts it into pcscd's vpcd virtual reader, so it is a real PC/SC card.
"""

from sscard.sim.card import CardGone, SecurityState, SimulatedCard
from sscard.sim.persona import Persona, list_personas, load_persona
from sscard.sim.vpcd import VpcdLink

__all__ = ["CardGone", "Persona", "SecurityState", "SimulatedCard", "VpcdLink", "list_personas", "load_persona"]
