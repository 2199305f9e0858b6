"""The ``sim:`` reader scheme: simulated cards and PSAMs in process, and the simulator's test keys.

The one production module that imports the simulator (:mod:`sscard.sim`): :mod:`sscard.readers`
reaches it only through the ``sim:`` entry of its scheme registry, and only when a ``sim:`` reader
(or the published test keys, the software key service's default) is asked for, so a kiosk on a
PC/SC reader never loads the simulator.
"""

from __future__ import annotations

from pathlib import Path

from sscard.transports.base import Reader

PREFIX = "sim:"


def open_card(persona: str) -> Reader:
    """A simulated card of ``persona`` (a bundled name or a ``.toml`` path; default ``typical``)."""
    from sscard.sim import SimulatedCard, load_persona
    from sscard.transports.sim import SimReader

    persona = persona or "typical"
    return SimReader(SimulatedCard(load_persona(persona)), name=f"{PREFIX}{persona}")


def open_sam(name: str) -> Reader:
    """A simulated PSAM (``sscard sim psams``; default ``psam``) in an in-process reader."""
    from sscard.sim.psam import SimulatedPsam, load_psam
    from sscard.transports.sim import SimReader

    return SimReader(SimulatedPsam(load_psam(name or "psam")), name=f"{PREFIX}{name}")


def test_keys_path() -> Path:
    """The simulator's published test keys (docs/card-auth.md): software keys for tests only."""
    from importlib import resources  # here: a read never needs it (start-up, issue 11 item 14)

    return Path(str(resources.files("sscard.sim").joinpath("data").joinpath("test-keys.toml")))
