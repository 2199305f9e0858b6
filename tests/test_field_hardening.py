"""Issue 11, card and device safety: no PIN command sent twice, PIN lifetime, replay readers and
PINs, private files, malformed traces (items 2, 3, 4, 10, 11; item 1 is in test_qr).

Every test here failed before its fix; the card-side ones read the simulated card's own command
log, in process and through pcscd + vpcd.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sscard.apdu import Command
from sscard.apdu.processors import GetResponseProcessor, ResendWithLeProcessor, TransportConnection, standard_stack
from sscard.cli import main
from sscard.errors import CardError, CardRemoved, ConfigError, NotSsc, PinFormat, ReplayPinRefused, TraceInvalid
from sscard.sim import Persona, SimulatedCard, load_persona
from sscard.ssc.application import encode_pin
from sscard.ssc.pin import Pin
from sscard.terminal import Terminal
from sscard.transports.replay import ReplayTransport
from sscard.transports.sim import SimReader
from sscard.transports.trace import Trace
from support import pcsc_env
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


@pytest.mark.parametrize("name", [*sorted(BAD_TRACES), "binary", "missing", "operation"])
def test_malformed_trace_exits_7_from_sscard_replay(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.apdu"
    if name == "operation":  # the header sscard replay acts on
        path.write_text(_with_header("operation", "format-disk"), encoding="utf-8")
    elif name == "binary":
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


# --- item 3: the PIN lives in one buffer, wiped after use, and is asked for after the read ----------

ZEROS = bytearray(len(PIN))


def _buffer(pin: str = PIN) -> bytearray:
    return bytearray(pin, "ascii")


@pytest.mark.parametrize("given", ["bytearray", "Pin"])
@pytest.mark.parametrize("case", ["verified", "wrong", "blocked", "format", "removed", "removed-during"])
def test_pin_buffer_is_wiped_after_verify(given: str, case: str) -> None:
    persona = "pin_blocked" if case == "blocked" else "typical"
    overrides: dict[str, Any] = {}
    if case == "removed":
        overrides["remove_after"] = 2  # SELECT, tries-left query, then the card is gone
    if case == "removed-during":
        overrides["remove_during"] = 3  # the card runs the VERIFY and is pulled before answering
    simulated = SimulatedCard(load_persona(persona), **overrides)
    buffer = _buffer({"wrong": "000000", "format": "12a456"}.get(case, PIN))
    pin: bytearray | Pin = buffer if given == "bytearray" else Pin(buffer)
    with Terminal(SimReader(simulated, "sim:wipe")) as terminal:
        try:
            outcome = terminal.verify(pin)
        except (CardRemoved, PinFormat) as exc:
            assert case in ("removed", "removed-during", "format"), exc
        else:
            assert outcome.state.value == {"verified": "verified", "wrong": "incorrect", "blocked": "blocked"}[case]
    assert buffer == ZEROS
    if isinstance(pin, Pin):
        assert pin.wiped and repr(pin) == "Pin(***)"


def test_change_pin_wipes_both_buffers() -> None:
    old, new = _buffer(), _buffer("654321")
    with Terminal(SimReader(SimulatedCard(load_persona("typical")), "sim:wipe")) as terminal:
        assert terminal.change_pin(old, new).ok
    assert old == ZEROS and new == bytearray(6)


def test_sign_in_wipes_the_pin_and_asks_for_it_after_the_read() -> None:
    simulated = SimulatedCard(load_persona("typical"))
    buffer = _buffer()
    asked_after: list[int] = []

    def ask() -> Pin:
        asked_after.append(simulated.apdu_count)
        return Pin(buffer)

    with Terminal(SimReader(simulated, "sim:late")) as terminal:
        session = terminal.sign_in(ask, require_pin=True)
        assert session.method.value == "card+pin"
    assert asked_after and asked_after[0] > 5  # SELECT, EF05 and EF06 were read before the question
    assert buffer == ZEROS


def test_sign_in_does_not_ask_for_a_pin_for_a_card_that_is_not_an_ssc() -> None:
    asked: list[bool] = []

    def ask() -> str:
        asked.append(True)
        return PIN

    with Terminal(SimReader(SimulatedCard(load_persona("not_ssc")), "sim:bank")) as terminal, pytest.raises(NotSsc):
        terminal.sign_in(ask, require_pin=True)
    assert not asked


def test_pin_packs_without_a_str_and_validates_once() -> None:
    pin = Pin(bytearray(b"12345"))
    assert pin.packed() == bytearray.fromhex("12345F")
    assert encode_pin("1234") == bytearray.fromhex("1234") and encode_pin(bytearray(b"987654")) == bytearray.fromhex(
        "987654"
    )
    for bad in ("123", "1234567890123", "12 34", "１２３４", ""):
        with pytest.raises(PinFormat):
            Pin.from_text(bad).validate()
    with pytest.raises(TypeError):
        Pin("1234")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(pin)
    assert "1" not in f"{pin!r} {pin}"


def test_pin_stdin_reads_one_line_from_the_descriptor_into_a_buffer() -> None:
    from sscard.cli.pin import read_pin_line as _read_pin_line

    read_end, write_end = os.pipe()
    os.write(write_end, b"123456\r\n654321\n")
    os.close(write_end)
    with os.fdopen(read_end, "r") as stream:
        first = _read_pin_line(stream)
        assert first is not None and first.packed() == bytearray.fromhex("123456")
        assert os.read(read_end, 100) == b"654321\n"  # nothing read ahead: the next PIN is still there
        assert _read_pin_line(stream) is None  # end of input


def _run_cli(args: list[str], stdin_text: str = PIN + "\n") -> tuple[int, dict[str, Any], io.StringIO]:
    stdin = io.StringIO(stdin_text)
    out, err = io.StringIO(), io.StringIO()
    status = main([*args, "--json"], out=out, err=err, stdin=stdin)
    payload = json.loads(out.getvalue().splitlines()[-1]) if out.getvalue() else {}
    return status, payload, stdin


@pytest.mark.parametrize(
    ("command", "persona", "status", "code"),
    [
        ("verify", "not_ssc", 4, "NOT_SSC"),
        ("verify", "pin_blocked", 6, "PIN_BLOCKED"),
        ("sign-in", "not_ssc", 4, "NOT_SSC"),
        ("change-pin", "not_ssc", 4, "NOT_SSC"),
        ("change-pin", "pin_blocked", 6, "PIN_BLOCKED"),
    ],
)
def test_cli_asks_for_no_pin_before_the_card_is_known(command: str, persona: str, status: int, code: str) -> None:
    """--pin-stdin: a card that cannot take a PIN leaves standard input untouched (no PIN read)."""
    got, payload, stdin = _run_cli([command, "--reader", f"sim:{persona}", "--pin-stdin"], PIN + "\n654321\n")
    assert (got, payload["error"]["code"]) == (status, code)
    assert stdin.read() == PIN + "\n654321\n"


def test_cli_still_verifies_with_pin_stdin() -> None:
    got, payload, stdin = _run_cli(["verify", "--reader", "sim:typical", "--pin-stdin"], PIN + "\nrest\n")
    assert got == 0 and payload["pin"]["state"] == "verified"
    assert stdin.read() == "rest\n"  # exactly one line consumed


@pytest.mark.pcscd
def test_cli_asks_for_no_pin_with_no_card_in_the_reader(vpcd_reader: str) -> None:
    got, payload, stdin = _run_cli(["verify", "--reader", vpcd_reader, "--pin-stdin"])
    assert (got, payload["error"]["code"]) == (3, "NO_CARD")
    assert stdin.read() == PIN + "\n"


def test_hidden_prompt_reads_the_tty_without_echo() -> None:
    """A real pty as the controlling terminal: the prompt comes, the digits are not echoed."""
    import pty
    import select
    import sys

    pid, master = pty.fork()
    if pid == 0:  # the child: sscard verify with the pty as its terminal
        os.execv(sys.executable, [sys.executable, "-m", "sscard.cli", "verify", "--reader", "sim:typical"])
    seen = b""
    try:
        seen += _read_until(master, b"PIN", select)
        os.write(master, PIN.encode() + b"\n")
        seen += _read_until(master, b"verified", select)
    finally:
        _, wait_status = os.waitpid(pid, 0)
        os.close(master)
    assert os.waitstatus_to_exitcode(wait_status) == 0, seen
    assert PIN.encode() not in seen, seen  # echo was off


def _read_until(fd: int, marker: bytes, select: Any, timeout: float = 20.0) -> bytes:
    import time

    data, deadline = b"", time.monotonic() + timeout
    while marker not in data:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {marker!r} within {timeout} s: {data!r}"
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


# --- item 4: replay readers refuse PIN operations unless a test opts in ---------------------------


def test_replay_reader_refuses_pin_operations() -> None:
    path = FIXTURES / "typical-verify.apdu"
    buffer = _buffer()
    with Terminal.open(f"replay:{path}") as terminal:
        with pytest.raises(ReplayPinRefused) as caught:
            terminal.verify(buffer)
        assert buffer == ZEROS
        with pytest.raises(ReplayPinRefused):
            terminal.change_pin(PIN, "654321")
        with pytest.raises(ReplayPinRefused):
            terminal.sign_in(PIN, require_pin=True)
        assert terminal.reader.last is None or terminal.reader.last.position == 0  # type: ignore[attr-defined]
        assert terminal.pin_status().tries_left == 3  # the status query carries no PIN: allowed
    error = caught.value.to_dict()
    assert error["code"] == "REPLAY_PIN_REFUSED" and "回放" in error["message_zh"]
    with Terminal.open(f"replay:{path}", accept_any_pin=True) as terminal:
        assert terminal.verify(PIN).ok


def test_replay_transport_refuses_a_pin_command_at_the_wire() -> None:
    trace = Trace.load(FIXTURES / "typical-verify.apdu")
    transport = ReplayTransport(trace)
    for exchange in trace.exchanges:
        if "**" in exchange.command:
            with pytest.raises(ReplayPinRefused):
                transport.transmit(bytes.fromhex(exchange.command.replace("**", "31")))
            break
        transport.transmit(bytes.fromhex(exchange.command))
    else:
        pytest.fail("the fixture has no VERIFY")


def test_sscard_replay_refuses_a_pin_unless_told() -> None:
    path = str(FIXTURES / "typical-verify.apdu")
    got, payload, stdin = _run_cli(["replay", path, "--pin-stdin"])
    assert (got, payload["error"]["code"]) == (2, "REPLAY_PIN_REFUSED")
    assert stdin.read() == PIN + "\n"  # refused before the PIN was read
    got, payload, _ = _run_cli(["replay", path, "--pin-stdin", "--accept-any-pin"])
    assert got == 0 and payload["pin"]["state"] == "verified"
    got, payload, _ = _run_cli(["verify", "--reader", f"replay:{path}", "--pin-stdin"])
    assert (got, payload["error"]["code"]) == (2, "REPLAY_PIN_REFUSED")


def test_sscard_serve_refuses_a_replay_reader(tmp_path: Path) -> None:
    path = FIXTURES / "typical-read.apdu"
    out, err = io.StringIO(), io.StringIO()
    assert main(["serve", "--reader", f"replay:{path}"], out=out, err=err) == 2
    assert "USAGE_ERROR" in err.getvalue()
    config = tmp_path / "sscard.toml"
    config.write_text(f'[reader]\nname = "replay:{path}"\n', encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert main(["--config", str(config), "serve"], out=out, err=err) == 7
    assert "CONFIG_ERROR" in err.getvalue()


# --- item 10: files of personal data are created 0600; no symlink followed; no FIFO hangs ------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which a plain open() makes a file every local user can read."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def no_chmod(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mode must come from the open itself: a chmod afterwards leaves a window (and is refused here)."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("chmod after creating a private file")

    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(os, "fchmod", refuse)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


PRIVATE_OUTPUTS = {
    "record": lambda out: ["record", str(out), "--reader", "sim:typical"],
    "photo": lambda out: ["read", "--reader", "sim:typical", "--photo", str(out)],
    "hsm-step1": lambda out: ["read", "--reader", "sim:typical", "--hsm-step1", "--output", str(out)],
    "read-output": lambda out: ["read", "--reader", "sim:typical", "--json", "--output", str(out)],
}


@pytest.mark.usefixtures("umask_022", "no_chmod")
@pytest.mark.parametrize("what", sorted(PRIVATE_OUTPUTS))
def test_files_of_personal_data_are_created_0600(what: str, tmp_path: Path) -> None:
    out = tmp_path / f"{what}.out"
    assert main(PRIVATE_OUTPUTS[what](out), out=io.StringIO(), err=io.StringIO()) == 0
    assert out.stat().st_size > 0 and _mode(out) == 0o600
    # An existing world-readable file is replaced by a new private one, not rewritten in its old mode.
    out.write_bytes(b"old")
    _chmod_for_test(out, 0o644)
    assert main(PRIVATE_OUTPUTS[what](out), out=io.StringIO(), err=io.StringIO()) == 0
    assert _mode(out) == 0o600 and out.read_bytes() != b"old"


def _chmod_for_test(path: Path, mode: int) -> None:
    """The test's own chmod (the code under test may not use one): straight to the syscall."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.chmod(str(path).encode(), mode) == 0
    assert _mode(path) == mode


@pytest.mark.parametrize("what", sorted(PRIVATE_OUTPUTS))
def test_private_outputs_never_write_through_a_symlink(what: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "out"
    out.symlink_to(victim)
    got, payload, _ = _run_cli(PRIVATE_OUTPUTS[what](out), "")
    assert (got, payload["error"]["code"]) == (7, "FILE_REFUSED")
    assert victim.read_bytes() == b"precious" and out.is_symlink()


def test_private_output_refuses_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    results: list[tuple[int, dict[str, Any], io.StringIO]] = []
    assert _finishes(lambda: results.append(_run_cli(["record", str(fifo), "--reader", "sim:typical"], ""))) is None
    got, payload, _ = results[0]
    assert (got, payload["error"]["code"]) == (7, "FILE_REFUSED")


def test_keygen_force_never_follows_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    private, public = tmp_path / "key.pem", tmp_path / "key.pub"
    private.symlink_to(victim)
    for extra in ([], ["--force"]):
        got, payload, _ = _run_cli(["token", "keygen", "--private", str(private), "--public", str(public), *extra], "")
        assert (got, payload["error"]["code"]) == (7, "TOKEN_KEY_ERROR"), extra
        assert victim.read_bytes() == b"precious" and private.is_symlink()
    private.unlink()
    with umask(0o022):
        assert main(["token", "keygen", "--private", str(private), "--public", str(public)], out=io.StringIO()) == 0
        assert (
            main(["token", "keygen", "--private", str(private), "--public", str(public), "--force"], out=io.StringIO())
            == 0
        )
    assert _mode(private) == 0o600 and _mode(public) == 0o644


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _finishes(call: Any, timeout: float = 10.0) -> BaseException | None:
    """Run ``call`` on a thread; fail if it is still blocked after ``timeout`` (the FIFO hang)."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "blocked on the key path"
    return caught[0] if caught else None


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_key_paths_that_are_fifos_or_devices_are_refused(kind: str, tmp_path: Path) -> None:
    from sscard.config import Config
    from sscard.psam.keys import SoftwareKeyService
    from sscard.tokens import TokenKeyError, load_private_key, load_public_key

    if kind == "fifo":
        path = tmp_path / "key"
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    error = _finishes(lambda: load_private_key(path))
    assert isinstance(error, TokenKeyError) and "regular file" in error.message
    error = _finishes(lambda: load_public_key(path))
    assert isinstance(error, TokenKeyError) and "regular file" in error.message
    error = _finishes(lambda: SoftwareKeyService.from_file(path, allowed=True))
    assert isinstance(error, ConfigError)
    error = _finishes(lambda: Trace.load(path))
    assert isinstance(error, TraceInvalid)
    # [session] key: a sign-in that issues a token
    config = Config(session_key=str(path), terminal_id="410100813475")
    terminal = Terminal(SimReader(SimulatedCard(load_persona("typical")), "sim:key"), config=config)
    error = _finishes(lambda: terminal.sign_in(require_pin=False))
    assert isinstance(error, TokenKeyError), error
    terminal.close()


def test_token_verify_with_a_fifo_public_key_exits_instead_of_hanging(tmp_path: Path) -> None:
    import subprocess
    import sys

    fifo = tmp_path / "key.pub"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "sscard.cli", "token", "verify", "x.y.z", "--public-key", str(fifo), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 7 and json.loads(done.stdout)["error"]["code"] == "TOKEN_KEY_ERROR"
