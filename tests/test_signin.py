"""Sign-in (issue 4): sessions that end the moment the card leaves, PIN policy, tokens.

In process the card sits in a simulated reader whose removal is an event (``SimEventSource``);
through pcscd the card is in vpcd slot 0 and the PSAM in slot 1, and the session's end comes from
the real ``SCardGetStatusChange`` monitor.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
from pathlib import Path

import pytest

from sscard.cli import main
from sscard.config import Config
from sscard.errors import CardNotGenuine, NotSignedIn, PinBlocked, PinIncorrect, SessionActive, UsageError
from sscard.session import EndReason, Method, SessionEvent
from sscard.sim import SimulatedCard, load_persona
from sscard.terminal import Terminal
from sscard.tokens import TokenInvalid, TokenWrongTerminal, load_public_key, verify_token, write_terminal_key
from sscard.transports.sim import SimReader
from support import pcsc_env

PIN, WRONG = "123456", "654321"
TERMINAL_ID = "410100813475"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "terminal.key", tmp_path / "terminal.pub"
    write_terminal_key(private, public)
    return private, public


def kiosk(keys: tuple[Path, Path] | None = None, **changes: object) -> Config:
    config = Config(
        key_service="psam",
        sam_reader="sim:psam",
        authenticate_card=True,
        terminal_id=TERMINAL_ID,
        session_idle=60,
        session_key=str(keys[0]) if keys else None,
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


class Ended:
    """Collects a terminal's session events and waits for the end."""

    def __init__(self, terminal: Terminal) -> None:
        self.events: list[SessionEvent] = []
        self._done = threading.Event()
        terminal.sessions.subscribe(self._on)

    def _on(self, event: SessionEvent) -> None:
        self.events.append(event)
        if event.kind == "ended":
            self._done.set()

    def wait(self, timeout: float = 10.0) -> SessionEvent:
        assert self._done.wait(timeout), f"session did not end within {timeout} s: {self.events}"
        return self.events[-1]


def sim_terminal(persona: str, config: Config) -> tuple[Terminal, SimReader]:
    reader = SimReader(SimulatedCard(load_persona(persona)), f"sim:{persona}")
    return Terminal(reader, config=config), reader


# -- in process ---------------------------------------------------------------------------------


def test_sign_in_a_v3_card_with_pin_and_token(keys: tuple[Path, Path]) -> None:
    terminal, reader = sim_terminal("v3", kiosk(keys))
    ended = Ended(terminal)
    session = terminal.sign_in(PIN)
    assert (session.ssn, session.name, session.card_number) == ("540102198208080012", "次仁·旺堆", "540001637")
    assert session.method is Method.CARD_PIN and session.terminal_id == TERMINAL_ID
    assert session.card_id == "540100D15600000500E8B4F01C2D3E4F" and "PSAM" in (session.authenticated_by or "")
    assert session.expires > session.started and terminal.session == session
    assert [e.kind for e in ended.events] == ["started"]

    assert session.token is not None
    claims = verify_token(session.token, load_public_key(keys[1]), terminal_id=TERMINAL_ID)
    assert (claims.session_id, claims.ssn, claims.method) == (session.id, session.ssn, "card+pin")
    tampered = session.token[:-6] + ("A" if session.token[-6] != "A" else "B") + session.token[-5:]
    with pytest.raises(TokenInvalid):
        verify_token(tampered, load_public_key(keys[1]))
    with pytest.raises(TokenWrongTerminal):
        verify_token(session.token, load_public_key(keys[1]), terminal_id="999999999999")

    reader.remove()  # the resident takes the card
    event = ended.wait()
    assert event.reason is EndReason.CARD_REMOVED and event.session.id == session.id
    assert terminal.session is None
    assert [e.kind for e in ended.events] == ["started", "ended"], "ended within one event"


def test_a_wrong_pin_reports_tries_and_starts_nothing() -> None:
    terminal, _ = sim_terminal("typical", kiosk())
    with pytest.raises(PinIncorrect) as caught:
        terminal.sign_in(WRONG)
    assert caught.value.to_dict()["tries_left"] == 2
    assert terminal.session is None
    assert terminal.sign_in(PIN).name == "张三"  # the resident's own next try, never ours


def test_a_blocked_pin_starts_nothing() -> None:
    terminal, _ = sim_terminal("pin_blocked", kiosk(authenticate_card=False))
    with pytest.raises(PinBlocked):
        terminal.sign_in(PIN)
    assert terminal.session is None


def test_the_counterfeit_is_refused_before_any_pin() -> None:
    terminal, reader = sim_terminal("counterfeit", kiosk())
    with pytest.raises(CardNotGenuine):
        terminal.sign_in(PIN)
    card = reader.card
    assert card is not None and all(header[:2] != b"\x00\x20" for header in card.command_log)  # type: ignore[attr-defined]
    assert terminal.session is None


def test_pin_policy() -> None:
    terminal, _ = sim_terminal("typical", kiosk())
    with pytest.raises(UsageError):
        terminal.sign_in()  # required by default
    card_only, _ = sim_terminal("typical", kiosk(require_pin=False))
    session = card_only.sign_in()
    assert session.method is Method.CARD and session.token is None


def test_one_session_per_terminal_and_sign_out() -> None:
    terminal, _ = sim_terminal("typical", kiosk())
    ended = Ended(terminal)
    first = terminal.sign_in(PIN)
    with pytest.raises(SessionActive):
        terminal.sign_in(PIN)
    assert terminal.sign_out() == first
    assert ended.wait().reason is EndReason.SIGNED_OUT
    with pytest.raises(NotSignedIn):
        terminal.sign_out()
    assert terminal.sign_in(PIN).id != first.id


def test_sign_out_resets_the_card_so_the_verified_pin_does_not_outlive_the_session() -> None:
    terminal, reader = sim_terminal("typical", kiosk())
    terminal.sign_in(PIN)
    card = reader.card
    assert card is not None and card.pin_verified  # type: ignore[attr-defined]
    terminal.sign_out()
    assert not card.pin_verified  # type: ignore[attr-defined]
    assert terminal.transport is None


def test_idle_timeout_ends_the_session_and_activity_extends_it() -> None:
    terminal, _ = sim_terminal("typical", kiosk(session_idle=0.6))
    ended = Ended(terminal)
    session = terminal.sign_in(PIN)
    time.sleep(0.3)
    terminal.read()  # activity pushes the expiry back
    assert terminal.session is not None and terminal.session.expires > session.expires
    event = ended.wait(5)
    assert event.reason is EndReason.IDLE_TIMEOUT


def test_a_failing_session_listener_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    terminal, reader = sim_terminal("typical", kiosk())
    terminal.sessions.subscribe(lambda event: 1 / 0)
    ended = Ended(terminal)
    terminal.sign_in(PIN)
    reader.remove()
    assert ended.wait().reason is EndReason.CARD_REMOVED
    assert any("session listener failed" in r.message for r in caplog.records)


def test_cli_sign_in_prints_the_session_and_token(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    config = tmp_path / "sscard.toml"
    config.write_text(
        f'[terminal]\nid = "{TERMINAL_ID}"\n[session]\nkey = "{keys[0]}"\n'
        '[keys]\nservice = "psam"\nauthenticate_card = true\n[reader]\nsam = "sim:psam"\n',
        encoding="utf-8",
    )
    out, err = io.StringIO(), io.StringIO()
    argv = ["--config", str(config), "sign-in", "--reader", "sim:v3", "--pin-stdin", "--json"]
    status = main(argv, out=out, err=err, stdin=io.StringIO(PIN + "\n"))
    assert status == 0, err.getvalue()
    session = json.loads(out.getvalue())["session"]
    assert session["name"] == "次仁·旺堆" and session["method"] == "card+pin"
    assert PIN not in out.getvalue() + err.getvalue()
    verified = io.StringIO()
    args = ["token", "verify", session["token"], "--public-key", str(keys[1]), "--terminal-id", TERMINAL_ID, "--json"]
    assert main(args, out=verified, err=io.StringIO()) == 0
    assert json.loads(verified.getvalue())["session"]["sid"] == session["id"]


# -- through pcscd --------------------------------------------------------------------------------

SLOT0, SLOT1 = pcsc_env.reader_name(0), pcsc_env.reader_name(1)


@pytest.mark.pcscd
def test_sign_in_through_pcscd_ends_on_removal(vpcd_card: pcsc_env.InsertCard, keys: tuple[Path, Path]) -> None:
    """Done-when of issue 4: v3 card in slot 0, PSAM in slot 1, signed in, removal ends it."""
    from sscard.sim import SimulatedPsam, VpcdLink, load_psam

    psam = VpcdLink(SimulatedPsam(load_psam("psam")), port=VpcdLink.port_for_slot(1))
    psam.insert()
    try:
        pcsc_env.wait_for_reader(SLOT1, present=True)
        card = vpcd_card("v3")
        config = kiosk(keys, reader=SLOT0, sam_reader=SLOT1)
        with Terminal.open(config=config) as terminal:
            ended = Ended(terminal)
            session = terminal.sign_in(PIN)
            assert session.reader == SLOT0 and session.name == "次仁·旺堆"
            assert card.card.pin_verified
            assert session.token and verify_token(session.token, load_public_key(keys[1])).ssn == session.ssn
            card.remove()
            event = ended.wait(10)
            assert event.reason is EndReason.CARD_REMOVED
            assert [e.kind for e in ended.events] == ["started", "ended"]
            assert terminal.transport is None

            second = vpcd_card("v3")  # the next resident, same terminal, nothing restarted
            pcsc_env.wait_for_reader(SLOT0, present=True)
            terminal.sign_in(PIN)
            assert second.card.pin_verified
            terminal.sign_out()
            assert not second.card.pin_verified, "sign-out resets the card (SCARD_RESET_CARD)"
    finally:
        psam.remove()
        pcsc_env.wait_for_reader(SLOT1, present=False)


@pytest.mark.pcscd
def test_counterfeit_refused_at_sign_in_through_pcscd(vpcd_card: pcsc_env.InsertCard) -> None:
    from sscard.sim import SimulatedPsam, VpcdLink, load_psam

    with VpcdLink(SimulatedPsam(load_psam("psam")), port=VpcdLink.port_for_slot(1)):
        pcsc_env.wait_for_reader(SLOT1, present=True)
        vpcd_card("counterfeit")
        with Terminal.open(config=kiosk(reader=SLOT0, sam_reader=SLOT1)) as terminal, pytest.raises(CardNotGenuine):
            terminal.sign_in(PIN)
    pcsc_env.wait_for_reader(SLOT1, present=False)
