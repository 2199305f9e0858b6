"""Replay every recorded fixture through the public facade, strictly (docs/design.md §6).

The fixtures were recorded with fixtures/record.sh: the simulator in pcscd's vpcd reader, read
through pyscard + pcscd with `sscard record`.  Replaying them checks that today's code sends
exactly the APDUs it sent then, in the same order, and decodes the same answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sscard.errors import AuthRequired, CardLocked, NotSsc, TraceMismatch
from sscard.ssc.application import PinState
from sscard.terminal import Terminal
from sscard.transports.trace import Trace
from test_terminal import TODAY, persona_data

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ALL = sorted(FIXTURES.glob("*.apdu"))
READS = [p for p in ALL if p.stem.endswith("-read")]
ERRORS = {"not_ssc": NotSsc, "v3": AuthRequired, "locked": CardLocked}


def replay(path: Path, *, accept_any_pin: bool = False) -> Terminal:
    """A replay terminal; PIN traces opt in explicitly, as a test must (REPLAY_PIN_REFUSED otherwise)."""
    return Terminal.open(f"replay:{path}", accept_any_pin=accept_any_pin)


def finish(terminal: Terminal) -> None:
    terminal.reader.last.assert_finished()  # type: ignore[attr-defined]


def test_there_are_fixtures() -> None:
    assert len(READS) >= 10


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_header_says_where_it_came_from(path: Path) -> None:
    trace = Trace.load(path)
    assert trace.header["source"] and ("simulator" in trace.header["source"] or "real card" in trace.header["source"])
    assert trace.header["date"] and trace.atr and trace.header["protocol"] in ("T=0", "T=1")
    assert trace.header["operation"] in ("read", "verify", "pin-status")
    assert trace.exchanges


@pytest.mark.parametrize("path", READS, ids=lambda p: p.stem)
def test_replay_read(path: Path) -> None:
    persona = path.stem.removesuffix("-read")
    with replay(path) as terminal:
        if persona in ERRORS:
            with pytest.raises(ERRORS[persona]):
                terminal.read(today=TODAY)
        else:
            card = terminal.read(today=TODAY)
            data = persona_data(persona)
            assert card.cardholder.full_name == data["ef06"]["name"]
            assert card.cardholder.ssn == data["ef06"]["ssn"]
            assert card.issuer.card_number == data["ef05"]["card_number"]
            assert card.atr.hex().upper() == data["atr"].upper()
        finish(terminal)


def test_replay_verify_outcomes() -> None:
    cases = {
        "typical-verify": (PinState.VERIFIED, None),
        "typical-verify-wrong": (PinState.INCORRECT, 2),
        "pin_blocked-verify": (PinState.BLOCKED, 0),
        "no_sfi-verify": (PinState.VERIFIED, None),
    }
    for name, (state, left) in cases.items():
        with replay(FIXTURES / f"{name}.apdu", accept_any_pin=True) as terminal:
            outcome = terminal.verify("123456")  # redacted in the trace: any well-formed PIN matches
            assert (outcome.state, outcome.tries_left) == (state, left), name
            finish(terminal)


def test_pin_status_fixture() -> None:
    with replay(FIXTURES / "typical-pin-status.apdu") as terminal:
        assert terminal.pin_status().tries_left == 3
        finish(terminal)


def test_fixtures_hold_no_pin() -> None:
    for path in ALL:
        for exchange in Trace.load(path).exchanges:
            if exchange.command.startswith(("0020", "805E")) and len(exchange.command) > 8:
                assert set(exchange.command[10:]) == {"*"}, path.name


def test_replay_is_strict_about_the_operation() -> None:
    with replay(FIXTURES / "typical-read.apdu", accept_any_pin=True) as terminal, pytest.raises(TraceMismatch):
        terminal.verify("123456")


def test_replay_reports_leftover_exchanges() -> None:
    with replay(FIXTURES / "typical-verify.apdu") as terminal:
        terminal.pin_status()
        with pytest.raises(TraceMismatch):
            finish(terminal)


def test_replay_rejects_a_different_pin_length() -> None:
    with replay(FIXTURES / "typical-verify.apdu", accept_any_pin=True) as terminal, pytest.raises(TraceMismatch):
        terminal.verify("1234")


# -- the resident health card, recorded through the facade (fixtures/health/) -------------------------
#
# Recorded by tests/test_cardapp.py through pcscd + vpcd with Terminal.open(...).read(): the header
# names the applications the read tried (ssc, health, bank), and the replay asks exactly those.

HEALTH = sorted((FIXTURES / "health").glob("*.apdu"))


def test_there_are_health_fixtures() -> None:
    assert {p.stem for p in HEALTH} == {"health-read", "health_locked_ef06-read", "health_bad_record-read"}


@pytest.mark.parametrize("path", HEALTH, ids=lambda p: p.stem)
def test_replay_health_read(path: Path) -> None:
    from sscard.health import HealthCard, RecordFlaggedInvalid

    persona = path.stem.removesuffix("-read")
    trace = Trace.load(path)
    assert trace.header["operation"] == "read" and trace.header["applications"] == "ssc health bank"
    assert "vpcd" in trace.header["source"]
    assert trace.exchanges[0].command.startswith("00A404000F7378312E")  # the SSC was asked first
    with replay(path) as terminal:
        if persona == "health_bad_record":
            with pytest.raises(RecordFlaggedInvalid):
                terminal.read()
        else:
            card = terminal.read()
            assert isinstance(card, HealthCard) and card.kind == "health"
            ef05 = persona_data(persona)["health"]["ef05"]
            assert card.card_number == ef05["card_number"] and card.issuer_name == ef05["issuer_name"]
            if persona == "health":
                assert (
                    card.cardholder is not None
                    and card.cardholder.name == persona_data(persona)["health"]["ef06"]["name"]
                )
            else:
                assert card.cardholder is None and [w.code for w in card.warnings] == ["AUTH_REQUIRED"]
        finish(terminal)


def test_a_health_replay_is_strict_about_the_applications_tried() -> None:
    """Pinned to the health application, the recorded SELECT SSSE is not sent: a mismatch at once."""
    with replay(FIXTURES / "health" / "health-read.apdu") as terminal, pytest.raises(TraceMismatch):
        terminal.read("health")


def test_a_trace_from_before_the_seam_replays_the_ssc_alone() -> None:
    """not_ssc-read.apdu (one SELECT SSSE → 6A82) has no applications header: NOT_SSC, nothing left over."""
    with replay(FIXTURES / "not_ssc-read.apdu") as terminal:
        with pytest.raises(NotSsc) as caught:
            terminal.read()
        assert caught.value.to_dict()["applications"] == ["ssc"]
        finish(terminal)
