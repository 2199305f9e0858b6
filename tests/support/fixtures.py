"""The pcscd + vpcd fixtures (``pcscd``, ``vpcd_reader``, ``vpcd_card``), documented in tests/conftest.py,
which imports them so that pytest finds them for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from sscard.sim import Persona, SimulatedCard, VpcdLink, load_persona
from support import pcsc_env


def _unavailable(reason: str) -> NoReturn:
    """Skip locally; fail under CI, where a skipped end-to-end test would hide a broken setup."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"pcscd tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"pcscd tests need pcscd + vsmartcard-vpcd: {reason}")


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pcsc_env.Pcscd]:
    """A pcscd with the vpcd reader: the running one, or one started (and later stopped) here."""
    problem = pcsc_env.missing_prerequisites()
    if problem:
        _unavailable(problem)
    if pcsc_env.pcscd_answers():
        daemon = pcsc_env.Pcscd()
    else:
        try:
            daemon = pcsc_env.start_pcscd(tmp_path_factory.mktemp("pcscd") / "pcscd.log")
        except pcsc_env.PcscEnvironmentError as exc:
            _unavailable(str(exc))
    reader = pcsc_env.reader_name()
    if reader not in pcsc_env.list_readers():
        daemon.stop()
        _unavailable(f"pcscd runs but has no reader {reader!r} (is vpcd in /etc/reader.conf.d?)")
    yield daemon
    daemon.stop()


@pytest.fixture(autouse=True)
def _pcscd_for_marked_tests(request: pytest.FixtureRequest) -> None:
    """Give every ``@pytest.mark.pcscd`` test the ``pcscd`` fixture, and with it the skip/fail rule."""
    if request.node.get_closest_marker("pcscd") is not None:
        request.getfixturevalue("pcscd")


@pytest.fixture
def vpcd_reader(pcscd: pcsc_env.Pcscd) -> str:
    """The PC/SC name of the vpcd reader the tests use ("Virtual PCD 00 00" unless SSCARD_VPCD_SLOT)."""
    return pcsc_env.reader_name()


@pytest.fixture
def vpcd_card(pcscd: pcsc_env.Pcscd) -> Iterator[pcsc_env.InsertCard]:
    """``insert(persona="typical", slot=DEFAULT, reconnect=False, **card_overrides) -> VpcdLink``.

    ``reconnect=True`` keeps the card in across a pcscd restart (:class:`~sscard.sim.VpcdLink`).

    ``card_overrides`` are :class:`~sscard.sim.SimulatedCard` keyword arguments (``remove_after``,
    ``rng``).  Returns once pcscd shows the card present (or once the card is already pulled, for a
    ``remove_after`` that ends before pcscd looked).
    """
    inserted: list[tuple[VpcdLink, str]] = []

    def insert(
        persona: str | Persona = "typical",
        slot: int = pcsc_env.DEFAULT_SLOT,
        *,
        reconnect: bool = False,
        **card_overrides: Any,
    ) -> VpcdLink:
        loaded = persona if isinstance(persona, Persona) else load_persona(persona)
        reader = pcsc_env.reader_name(slot)
        if pcsc_env.card_present(reader):
            # Someone else's card (another test run?) would make ours queue behind it unseen.
            pcsc_env.wait_for_reader(reader, present=False)
        link = VpcdLink(SimulatedCard(loaded, **card_overrides), port=VpcdLink.port_for_slot(slot), reconnect=reconnect)
        link.insert()
        inserted.append((link, reader))
        pcsc_env.wait_for_reader(reader, present=True, give_up=lambda: not link.connected)
        return link

    yield insert
    for link, _ in inserted:
        link.remove()
    for _, reader in inserted:
        pcsc_env.wait_for_reader(reader, present=False)
