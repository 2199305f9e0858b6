"""Issue 11, card and device safety: no PIN command sent twice, PIN lifetime, replay readers and
PINs, private files, malformed traces (items 2, 3, 4, 10, 11; item 1 is in test_qr).

Every test here failed before its fix; the card-side ones read the simulated card's own command
log, in process and through pcscd + vpcd.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest

import pcsc_env
from sscard.apdu import Command
from sscard.apdu.processors import GetResponseProcessor, ResendWithLeProcessor, TransportConnection, standard_stack
from sscard.cli import main
from sscard.errors import CardError, ConfigError, TraceInvalid
from sscard.sim import Persona, SimulatedCard, load_persona
from sscard.terminal import Terminal
from sscard.transports.sim import SimReader
from sscard.transports.trace import Trace
from test_apdu import card
from test_terminal import Wire

PIN = "123456"
VERIFY = b"\x00\x20\x00\x00"
CHANGE_PIN = b"\x80\x5e\x01\x00"


# --- item 2: no PIN-bearing command is ever sent twice -----------------------------------------


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        ("0020000003******", "6C00"),
        ("0020000003******", "6C03"),
        ("805E01000B**********************", "6C04"),
        ("0082000A08****************", "6C08"),
    ],
)
def test_resend_processor_never_resends_a_pin_command(command: str, answer: str) -> None:
    transport = card((command, answer))  # strict: a second exchange would be TRACE_MISMATCH
    apdu = Command.from_bytes(bytes.fromhex(command.replace("**", "12")))
    with pytest.raises(CardError) as caught:
        ResendWithLeProcessor(TransportConnection(transport)).send(apdu)
    assert caught.value.sw == int(answer, 16)
    assert caught.value.to_dict()["sw"] == answer
    transport.assert_finished()


@pytest.mark.parametrize(("command", "answer"), [("0020000003******", "6104"), ("805E01000B" + "**" * 11, "6100")])
def test_get_response_processor_never_continues_a_pin_command(command: str, answer: str) -> None:
    transport = card((command, answer))
    apdu = Command.from_bytes(bytes.fromhex(command.replace("**", "12")))
    with pytest.raises(CardError) as caught:
        standard_stack(transport).send(apdu)
    assert caught.value.sw == int(answer, 16)
    transport.assert_finished()
    with pytest.raises(CardError):
        GetResponseProcessor(TransportConnection(card((command, answer)))).send(apdu)


def test_other_commands_are_still_resent() -> None:
    transport = card(("00B2080020", "6C14"), ("00B2080014", "0812" + "31" * 18 + "9000"))
    assert standard_stack(transport).send(Command(0x00, 0xB2, 0x08, 0x00, le=0x20)).ok
    transport.assert_finished()


def persona_answering_pins(sw: int, base: str = "typical") -> Persona:
    persona = load_persona(base)
    return dataclasses.replace(persona, behaviour=dataclasses.replace(persona.behaviour, pin_sw=sw))


def test_persona_file_sets_the_pin_answer(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[1] / "src/sscard/sim/personas/typical.toml").read_text("utf-8")
    path = tmp_path / "verify_6c.toml"
    path.write_text(text.replace("[behaviour]\n", '[behaviour]\npin_sw = "6C00"\n', 1), encoding="utf-8")
    assert load_persona(str(path)).behaviour.pin_sw == 0x6C00
    path.write_text(text.replace("[behaviour]\n", '[behaviour]\npin_sw = "9000"\n', 1), encoding="utf-8")
    with pytest.raises(ConfigError):
        load_persona(str(path))


def _check_one_pin_command(card_: SimulatedCard, wire: Wire, header: bytes, sw: int, error: CardError) -> None:
    assert error.sw == sw
    log = list(card_.command_log)
    # The card saw the tries-left query (VERIFY without data, header only in its log), then the
    # PIN command once: a resend or a GET RESPONSE would add an entry.
    assert log.count(VERIFY) == (2 if header == VERIFY else 1), log
    assert log.count(CHANGE_PIN) == (1 if header == CHANGE_PIN else 0), log
    assert b"\x00\xc0\x00\x00" not in log, log
    with_pin = [command for command in wire.commands(header.hex().upper()) if "**" in command]
    assert len(with_pin) == 1, wire.lines
    assert card_.tries_left == 3


@pytest.mark.parametrize("sw", [0x6C00, 0x6C03, 0x6104, 0x6100])
@pytest.mark.parametrize("operation", ["verify", "change_pin"])
def test_card_sees_one_pin_command_in_process(sw: int, operation: str) -> None:
    simulated = SimulatedCard(persona_answering_pins(sw))
    wire = Wire()
    with Terminal(SimReader(simulated, "sim:pin-sw"), trace_sink=wire) as terminal, pytest.raises(CardError) as caught:
        if operation == "verify":
            terminal.verify(PIN)
        else:
            terminal.change_pin(PIN, "654321")
    _check_one_pin_command(simulated, wire, VERIFY if operation == "verify" else CHANGE_PIN, sw, caught.value)


@pytest.mark.pcscd
@pytest.mark.parametrize("sw", [0x6C00, 0x6104])
def test_card_sees_one_verify_through_pcscd(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str, sw: int) -> None:
    link = vpcd_card(persona_answering_pins(sw))
    wire = Wire()
    with Terminal.open(vpcd_reader, trace_sink=wire) as terminal, pytest.raises(CardError) as caught:
        terminal.verify(PIN)
    _check_one_pin_command(link.card, wire, VERIFY, sw, caught.value)


# --- item 11: a malformed trace is TRACE_INVALID, never INTERNAL ---------------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOOD = (FIXTURES / "typical-read.apdu").read_text(encoding="utf-8")


def _with_header(key: str, value: str) -> str:
    lines = [f"# {key}: {value}" if line.startswith(f"# {key}:") else line for line in GOOD.splitlines()]
    return "\n".join(lines) + "\n"


BAD_TRACES = {
    "atr-not-hex": _with_header("atr", "3B6DXX000000814E43238697150100E1D2C3"),
    "atr-odd-length": _with_header("atr", "3B6D0"),
    "atr-too-long": _with_header("atr", "3B" * 34),
    "protocol": _with_header("protocol", "T=2"),
    "version": _with_header("sscard-trace", "2"),
    "body-line": GOOD.replace(" -> ", " => ", 1),
    "odd-hex-response": GOOD.replace("9000\n", "900\n", 1),
    "short-response": GOOD.replace("0201319000\n", "02\n", 1),
}


@pytest.mark.parametrize("name", sorted(BAD_TRACES))
def test_malformed_trace_is_trace_invalid_in_the_api(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.apdu"
    path.write_text(BAD_TRACES[name], encoding="utf-8")
    with pytest.raises(TraceInvalid):
        Trace.load(path)
    with pytest.raises(TraceInvalid) as caught:
        Terminal.open(f"replay:{path}").read()
    assert caught.value.code == "TRACE_INVALID" and "回放" not in caught.value.message_zh


@pytest.mark.parametrize("name", [*sorted(BAD_TRACES), "binary", "missing"])
def test_malformed_trace_exits_7_from_sscard_replay(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.apdu"
    if name == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage\x80")
    elif name != "missing":
        path.write_text(BAD_TRACES[name], encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert main(["replay", str(path), "--json"], out=out, err=err) == 7
    assert json.loads(out.getvalue())["error"]["code"] == "TRACE_INVALID"


def test_trace_built_in_code_with_a_bad_atr_is_typed() -> None:
    with pytest.raises(TraceInvalid):
        _ = Trace({"atr": "ZZ"}).atr
    with pytest.raises(TraceInvalid):
        _ = Trace({"protocol": "T=15"}).protocol
