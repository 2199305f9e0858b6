"""Shared fixtures: a real pcscd with vsmartcard's vpcd reader, and simulated cards inserted into it.

Tests that go through pcscd carry ``@pytest.mark.pcscd`` (declared in pyproject).  Every such test
gets the session-scoped ``pcscd`` fixture automatically:

* a pcscd already answering on its socket is reused and left running;
* otherwise ``pcscd -f`` is started (log in the pytest tmp dir) and stopped by PID at the end;
* if pcscd, the vpcd driver or pyscard is missing, the tests are **skipped** with the reason —
  except when the ``CI`` environment variable is set, where they **fail**: CI must not turn green
  by skipping the end-to-end tests.

``vpcd_card`` inserts simulated cards::

    @pytest.mark.pcscd
    def test_read(vpcd_card, vpcd_reader):
        link = vpcd_card("typical")                    # or vpcd_card("v3", remove_after=5)
        ...                                            # talk PC/SC to vpcd_reader

It waits until pcscd shows the card present and, at teardown, removes every card it inserted and
waits until the reader shows empty, so the next test starts clean.  Slot 0 ("Virtual PCD 00 00")
is the default; ``SSCARD_VPCD_SLOT=1`` moves both fixtures to slot 1, for two runs sharing a pcscd.
"""

from __future__ import annotations

# The fixtures live in tests/support/fixtures.py; importing them here is what makes them fixtures.
from support.fixtures import _pcscd_for_marked_tests, pcscd, vpcd_card, vpcd_reader

__all__ = ["_pcscd_for_marked_tests", "pcscd", "vpcd_card", "vpcd_reader"]
