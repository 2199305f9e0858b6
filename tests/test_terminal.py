"""The terminal facade over the in-process simulated card: every persona, every PIN path.

Expected values come straight from the persona TOML files, not from the simulator's Python
objects, so a bug shared by the simulator's encoder and our parser cannot hide.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from sscard.errors import AuthRequired, CardLocked, NotSsc, PinFormat
from sscard.ssc.application import PinState
from sscard.terminal import Terminal

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PERSONA_DIR = Path(__file__).resolve().parents[1] / "src" / "sscard" / "sim" / "personas"
TODAY = dt.date(2026, 11, 22)


def persona_data(name: str) -> dict[str, Any]:
    return tomllib.loads((PERSONA_DIR / f"{name}.toml").read_text(encoding="utf-8"))


def ssc_personas() -> list[str]:
    names = sorted(p.stem for p in PERSONA_DIR.glob("*.toml"))
    return [n for n in names if persona_data(n).get("ssc", True) and n != "locked"]


class Wire:
    """Collects the redacted exchanges the terminal puts on the wire."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, command: str, response: str, seconds: float) -> None:
        self.lines.append((command, response))

    def commands(self, prefix: str = "") -> list[str]:
        return [c for c, _ in self.lines if c.startswith(prefix)]


def open_sim(persona: str, wire: Wire | None = None) -> Terminal:
    return Terminal.open(f"sim:{persona}", trace_sink=wire)


def _date(value: Any) -> str | None:
    if value in (None, ""):
        return None
    return value.isoformat() if isinstance(value, dt.date) else str(value)


@pytest.mark.parametrize("persona", ssc_personas())
def test_read_matches_persona_file(persona: str) -> None:
    data = persona_data(persona)
    with open_sim(persona) as terminal:
        card = terminal.read(require_cardholder=False, today=TODAY)
    out = card.to_json()
    ef05 = data["ef05"]
    assert out["card"]["card_number"] == ef05["card_number"]
    assert out["card"]["spec_version"] == ef05["spec_version"]
    assert out["card"]["identification_code"] == ef05["identification_code"].upper()
    assert out["card"]["region_code"] == ef05["identification_code"][:6]
    assert out["card"]["issue_date"] == _date(ef05["issue_date"])
    assert out["card"]["expiry_date"] == _date(ef05["expiry_date"])
    assert out["card"]["atr"] == data["atr"].upper()
    if card.locked_elements:
        assert out["cardholder"]["name"] is None
        assert [w["code"] for w in out["warnings"]][-1] == "AUTH_REQUIRED"
        return
    ef06 = data["ef06"]
    assert out["cardholder"]["ssn"] == ef06["ssn"]
    assert out["cardholder"]["name"] == ef06["name"]
    assert out["cardholder"]["gender_code"] == ef06["gender"]
    assert out["cardholder"]["nation_code"] == ef06["nation"]
    assert out["cardholder"]["birthplace_code"] == ef06["birthplace"]
    assert out["cardholder"]["birth_date"] == _date(ef06["birth_date"])
    assert out["cardholder"]["gender"] and out["cardholder"]["nation"]


def test_typical_read_uses_the_minimum_apdus() -> None:
    """One SELECT SSSE, then one SFI-addressed READ RECORD per element (docs/card-reference.md §2)."""
    wire = Wire()
    with open_sim("typical", wire) as terminal:
        card = terminal.read(today=TODAY)
    assert card.warnings == ()
    assert len(wire.lines) == 1 + 7 + 7
    assert wire.lines[0][0].startswith("00A40400")
    assert not wire.commands("00A40200")  # no SELECT EF
    assert all(c[4:6] in "01020304050607084E090A0B0C0D" for c in wire.commands("00B2"))


def test_card_refusing_sfi_falls_back_to_select_ef() -> None:
    wire = Wire()
    with open_sim("no_sfi", wire) as terminal:
        card = terminal.read(today=TODAY)
    assert card.cardholder.ssn == persona_data("no_sfi")["ef06"]["ssn"]
    assert len(wire.commands("00A40200")) == 2  # SELECT EF05, SELECT EF06, once each
    assert len(wire.lines) == 1 + 1 + 1 + 7 + 1 + 7  # select, refused SFI read, EF05, EF06


def test_t0_card_with_get_response_and_strict_le() -> None:
    wire = Wire()
    with open_sim("v1_t0", wire) as terminal:
        card = terminal.read(today=TODAY)
    assert card.issuer.spec_version == "1.00"
    assert card.cardholder.name == persona_data("v1_t0")["ef06"]["name"]
    assert wire.commands("00C0")  # GET RESPONSE was exercised
    assert not [c for c in wire.commands("00B2") if c[4:6] == "4E"]  # no 姓名扩展 on a 1.00 card


def test_not_ssc() -> None:
    with open_sim("not_ssc") as terminal, pytest.raises(NotSsc) as info:
        terminal.read()
    assert info.value.code == "NOT_SSC"


def test_locked_application() -> None:
    with open_sim("locked") as terminal, pytest.raises(CardLocked):
        terminal.read()


def test_third_generation_card_needs_authentication() -> None:
    with open_sim("v3") as terminal:
        with pytest.raises(AuthRequired):
            terminal.read()
        card = terminal.read(require_cardholder=False, today=TODAY)
    assert card.locked_elements and card.cardholder.ssn is None
    assert card.issuer.spec_version == "3.00"


def test_expired_card_warns() -> None:
    with open_sim("expired") as terminal:
        card = terminal.read(today=TODAY)
    assert "CARD_EXPIRED" in [w.code for w in card.warnings]


def test_letter_card_number_survives() -> None:
    with open_sim("letter_card_number") as terminal:
        card = terminal.read(today=TODAY)
    number = persona_data("letter_card_number")["ef05"]["card_number"]
    assert card.issuer.card_number == number and not number.isdigit()
    assert "CARD_NUMBER_CHECK" not in [w.code for w in card.warnings]


# --- PIN -----------------------------------------------------------------------------------------


def test_verify_counts_down_and_never_retries() -> None:
    wire = Wire()
    with open_sim("typical", wire) as terminal:
        assert terminal.pin_status().tries_left == 3
        wrong = terminal.verify("000000")
        assert (wrong.state, wrong.tries_left) == (PinState.INCORRECT, 2)
        assert len(wire.commands("0020000003")) == 1  # exactly one VERIFY with data
        assert terminal.pin_status().tries_left == 2  # the status query spent nothing
        right = terminal.verify(persona_data("typical")["pin"]["value"])
        assert right.ok
        assert terminal.pin_status().state is PinState.VERIFIED


def test_verify_until_blocked() -> None:
    with open_sim("typical") as terminal:
        states = [terminal.verify("999999") for _ in range(3)]
        assert [(s.state, s.tries_left) for s in states] == [
            (PinState.INCORRECT, 2),
            (PinState.INCORRECT, 1),
            (PinState.BLOCKED, 0),
        ]
        assert terminal.verify(persona_data("typical")["pin"]["value"]).state is PinState.BLOCKED


def test_blocked_card_gets_no_verify_with_data() -> None:
    wire = Wire()
    with open_sim("pin_blocked", wire) as terminal:
        outcome = terminal.verify("123456")
    assert outcome.state is PinState.BLOCKED
    assert wire.commands("00200000")  # the status query
    assert not [c for c in wire.commands("00200000") if len(c) > 8]


@pytest.mark.parametrize("pin", ["123", "1234567890123", "12a456", "", "１２３４５６", "12 34"])
def test_bad_pin_format_sends_nothing(pin: str) -> None:
    wire = Wire()
    with open_sim("typical", wire) as terminal, pytest.raises(PinFormat) as info:
        terminal.verify(pin)
    assert wire.lines == []
    assert pin not in str(info.value) or pin == ""


def test_change_pin() -> None:
    with open_sim("typical") as terminal:
        assert terminal.change_pin("123456", "2468").ok
        assert terminal.verify("123456").state is PinState.INCORRECT
        assert terminal.verify("2468").ok


def test_card_without_pin_status_still_verifies() -> None:
    with open_sim("no_sfi") as terminal:
        assert terminal.pin_status().state is PinState.UNKNOWN
        assert terminal.verify(persona_data("no_sfi")["pin"]["value"]).ok


def test_pin_never_reaches_trace_or_log(caplog: pytest.LogCaptureFixture) -> None:
    wire = Wire()
    caplog.set_level(logging.DEBUG)
    with open_sim("typical", wire) as terminal:
        terminal.verify("135799")
        terminal.change_pin("123456", "864200")
    text = repr(wire.lines) + caplog.text
    for secret in ("135799", "864200", "123456"):
        assert secret not in text
    assert "0020000003******" in text
    assert caplog.records  # the APDU log did run at DEBUG
