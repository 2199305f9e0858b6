"""Personal data in logs and traces (PIPL, issue 11 item 12): masked by default, lengths and tags
kept; ``--show-personal-data`` or ``[logging] show_personal_data`` show it, with one warning."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sscard import privacy
from sscard.apdu.command import Command
from sscard.apdu.processors import TracingProcessor, standard_stack
from sscard.config import Config
from sscard.sim import SimulatedCard, load_persona
from sscard.ssc.records import ELEMENTS
from sscard.terminal import Terminal
from sscard.transports.sim import SimReader
from sscard.transports.trace import MASK, PUBLIC_RECORD_TAGS, ResponseMask

# The typical persona (src/sscard/sim/personas/typical.toml), in clear and as the card sends it.
SSN, NAME, BIRTH, CARD_NUMBER = "110101198503071235", "张三", "1985-03-07", "102307185"
PERSONAL = (
    SSN,
    SSN.encode().hex().upper(),
    NAME,
    NAME.encode("gb18030").hex().upper(),
    BIRTH,
    "19850307",
    CARD_NUMBER,
    CARD_NUMBER.encode().hex().upper(),
)
#: What stays: the READ RECORD commands, the tag and length of each answer, the status word.
KEPT = (
    "00B2083014 -> 0812" + MASK * 18 + "9000",  # SSN: 18 bytes
    "00B2093020 -> 091E" + MASK * 30 + "9000",  # name: 30 bytes
    "00B20D3006 -> 0D04" + MASK * 4 + "9000",  # birth date: 4 bytes BCD
    "00B207280B -> 0709" + MASK * 9 + "9000",  # card number: 9 bytes
    "00B2052806 -> 05042015061890",  # issue date: not personal, in clear
    "00B2012812 -> 0110110100D15600000500A3C1E52B7D9F409000",  # card identification code: the chip's
)


@pytest.fixture(autouse=True)
def _masked() -> Iterator[None]:
    """Every test starts (and leaves the process) with the default: masked."""
    privacy.show_personal_data(False)
    yield
    privacy.show_personal_data(False)


def sscard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sscard.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SSCARD_CONFIG": "", **(env or {})},
    )


def assert_masked(text: str) -> None:
    for value in PERSONAL:
        assert value not in text, f"{value} in clear in:\n{text}"
    for line in KEPT:
        assert line in text, f"{line} missing from:\n{text}"


def test_vv_read_masks_personal_data_in_the_apdu_trace() -> None:
    run = sscard("-vv", "read", "--reader", "sim:typical")
    assert run.returncode == 0, run.stderr
    assert_masked(run.stderr)
    assert "WARNING" not in run.stderr
    assert SSN in run.stdout and NAME in run.stdout  # the output itself is the point of the command


def test_show_personal_data_option_shows_it_with_one_warning() -> None:
    run = sscard("--show-personal-data", "-vv", "read", "--reader", "sim:typical")
    assert run.returncode == 0, run.stderr
    assert SSN.encode().hex().upper() in run.stderr and NAME.encode("gb18030").hex().upper() in run.stderr
    assert run.stderr.count("WARNING sscard.privacy: personal data") == 1
    assert "--show-personal-data" in run.stderr


def test_show_personal_data_config_key(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text("[logging]\nshow_personal_data = true\n", encoding="utf-8")
    run = sscard("--config", str(config), "--show-personal-data", "-vv", "read", "--reader", "sim:typical")
    assert run.returncode == 0, run.stderr
    assert SSN.encode().hex().upper() in run.stderr
    assert run.stderr.count("WARNING sscard.privacy: personal data") == 1  # once, though asked twice
    quiet = sscard("--config", str(config), "read", "--reader", "sim:typical")
    assert "[logging] show_personal_data in " + str(config) in quiet.stderr  # warned even without -v


@pytest.mark.pcscd
def test_vv_read_through_pcscd_masks_personal_data(vpcd_card: Any, vpcd_reader: str) -> None:
    vpcd_card("typical")
    run = sscard("-vv", "read", "--reader", vpcd_reader)
    assert run.returncode == 0, run.stderr
    assert_masked(run.stderr)


def test_get_response_continuations_and_read_binary_are_masked() -> None:
    mask = ResponseMask()
    ssn = bytes.fromhex("0812") + SSN.encode()
    assert mask.response(bytes.fromhex("00B2083014"), bytes.fromhex("6114")) == "6114"
    assert mask.response(bytes.fromhex("00C0000014"), ssn + b"\x90\x00") == "0812" + MASK * 18 + "9000"
    # A split answer: the first piece shows the tag and length, the second nothing.
    assert mask.response(bytes.fromhex("00B2093020"), bytes.fromhex("6120")) == "6120"
    first = bytes.fromhex("091E") + NAME.encode("gb18030") + bytes(10)
    assert mask.response(bytes.fromhex("00C0000010"), first + b"\x61\x10") == "091E" + MASK * 14 + "6110"
    assert mask.response(bytes.fromhex("00C0000010"), bytes(16) + b"\x90\x00") == MASK * 16 + "9000"
    # The next plain command is not personal; a READ BINARY (the photo) is masked whole.
    select = bytes.fromhex("6F0284009000")
    assert mask.response(bytes.fromhex("00C0000006"), select) == "6F0284009000"
    assert mask.response(bytes.fromhex("00B0000004"), b"\xff\xd8\xff\xe0\x90\x00") == MASK * 4 + "9000"
    assert mask.response(bytes.fromhex("00B2052806"), bytes.fromhex("0504201506189000")) == "0504201506189000"
    assert mask.response(bytes.fromhex("00B2083014"), bytes.fromhex("6A83")) == "6A83"
    privacy.show_personal_data(True)
    assert mask.response(bytes.fromhex("00B2083014"), ssn + b"\x90\x00") == (ssn + b"\x90\x00").hex().upper()


def test_public_record_tags_are_the_issuing_metadata_only() -> None:
    """Kept in step with the record table: only EF05 tags 01..06 are in clear, never 07 or EF06."""
    chip = {"identification_code", "card_type", "spec_version", "issuer_id"}
    public = {tag for tag, spec in ELEMENTS.items() if spec.key in chip}
    public |= {tag for tag, spec in ELEMENTS.items() if spec.key in {"issue_date", "expiry_date"}}
    assert public == PUBLIC_RECORD_TAGS
    assert all(ELEMENTS[tag].ef == 0x05 for tag in PUBLIC_RECORD_TAGS)


def test_the_trace_sink_still_gets_whole_responses() -> None:
    """Recording (``sscard record``, trace sinks) keeps its rules: responses in full."""
    seen: list[str] = []
    reader = SimReader(SimulatedCard(load_persona("typical")), "sim:typical")
    with Terminal(reader, config=Config(), trace_sink=lambda c, r, _: seen.append(f"{c} -> {r}")) as terminal:
        terminal.read()
    assert any(SSN.encode().hex().upper() in line for line in seen)


def test_masked_log_records_hide_id_numbers_for_every_handler() -> None:
    """Whoever logs and whichever handler writes (here one like uvicorn's: its own formatter, not
    propagating), messages, arguments and tracebacks have ID numbers masked."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("uvicorn.test_privacy")
    logger.addHandler(handler)
    logger.propagate = False
    previous = logging.getLogRecordFactory()
    privacy.mask_log_records()
    privacy.mask_log_records()  # idempotent: one wrapper, not two
    try:
        logger.warning("resident %s, old id 110101850307123, ref 0x%s", SSN, "4201011985030712351")
        try:
            raise ValueError(f"bad record for 11010119850307123X at {SSN}")
        except ValueError:
            logger.exception("failed")
        privacy.show_personal_data(True)
        logger.warning("shown %s", SSN)
    finally:
        logging.setLogRecordFactory(previous)
        logger.removeHandler(handler)
    lines = stream.getvalue()
    assert f"resident {'*' * 18}, old id {'*' * 15}, ref 0x4201011985030712351" in lines
    assert "ValueError: bad record for " + "*" * 18 + " at " + "*" * 18 in lines
    assert lines.count(SSN) == 1 and lines.rstrip().endswith(f"shown {SSN}")


def test_service_and_session_debug_logs_carry_no_personal_data(caplog: pytest.LogCaptureFixture) -> None:
    from starlette.testclient import TestClient

    from sscard.service.app import create_app

    config = Config(reader="sim:typical", terminal_id="410100813475", device_id="MT170701000006")
    reader = SimReader(SimulatedCard(load_persona("typical")), "sim:typical")
    terminal = Terminal(reader, config=config)
    app = create_app(config, terminal, allowed_hosts=["testserver"])
    client = TestClient(app, headers={"Origin": "http://127.0.0.1:8765"}, client=("127.0.0.1", 50000))
    with caplog.at_level(logging.DEBUG), client:
        assert client.post("/v1/read").status_code == 200
        signed = client.post("/v1/sign-in", json={"pin": "123456"})
        assert signed.status_code == 200 and signed.json()["session"]["name"] == NAME
        assert client.post("/v1/sign-out").status_code == 200
        reader.remove()
    text = "\n".join(f"{record.name} {record.getMessage()}" for record in caplog.records)
    assert "sscard.apdu" in text and "sscard.session" in text, text
    for value in PERSONAL:
        assert value not in text, f"{value} in the service's logs:\n{text}"


def test_tracing_processor_masks_whatever_handler_formats_it(caplog: pytest.LogCaptureFixture) -> None:
    """The APDU line is masked where it is made, so a Python API user's own handler gets it masked."""
    reader = SimReader(SimulatedCard(load_persona("typical")), "sim:typical")
    transport = reader.connect()
    stack = standard_stack(transport)
    with caplog.at_level(logging.DEBUG, logger="sscard.apdu"):
        stack.send(Command(0x00, 0xA4, 0x04, 0x00, bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF"), le=256))
        stack.send(Command(0x00, 0xB2, 0x08, 0x30, le=0x14))
    assert SSN.encode().hex().upper() not in caplog.text and "0812" + MASK * 18 + "9000" in caplog.text
    assert isinstance(stack.inner.inner, TracingProcessor)  # type: ignore[attr-defined]


def test_id_card_reader_logs_no_text_block(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The ID-card reader over a real pty at DEBUG: frame headers and lengths, never the text block
    (UCS-2 name, ID number, address) or the photo -- unless shown."""
    from sscard.idcard import IdCardReader
    from sscard.sim.serial_idcard import SimulatedIdCardReader, load_idcard
    from sscard.transports.serial import SerialPort

    persona = load_idcard("zhangsan")
    ucs2 = [value.encode("utf-16-le").hex().upper() for value in ("张三", "110101198503071235", "北京市")]
    with SimulatedIdCardReader(persona, link=tmp_path / "idcard") as sim, SerialPort(sim.path) as port:
        reader = IdCardReader(port, timeout=2.0)
        with caplog.at_level(logging.DEBUG, logger="sscard.idcard"):
            reader.read_card()
        masked = caplog.text
        caplog.clear()
        privacy.show_personal_data(True)
        with caplog.at_level(logging.DEBUG, logger="sscard.idcard"):
            reader.read_card()
    assert " < AAAAAA9669" in masked and "data bytes)" in masked  # each answer's header and its length
    for value in ucs2:
        assert value not in masked
        assert value in caplog.text


def test_a_record_that_is_not_its_tlv_is_masked_whole() -> None:
    mask = ResponseMask()
    raw_ssn = SSN.encode() + b"\x90\x00"  # a broken card: the value without tag and length
    assert mask.response(bytes.fromhex("00B2083012"), raw_ssn) == MASK * 18 + "9000"
    assert mask.response(bytes.fromhex("00B2083014"), bytes.fromhex("6C14")) == "6C14"
    assert mask.response(bytes.fromhex("00C0000001"), bytes.fromhex("0F9000")) == "0F9000"  # nothing pending


def _apdu_log(caplog: pytest.LogCaptureFixture, read: Any) -> str:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="sscard.apdu"):
        read()
    return "\n".join(record.getMessage() for record in caplog.records if record.name == "sscard.apdu")


@pytest.mark.parametrize("persona", ["v3_bank", "bank_only"])
def test_bank_application_trace_masks_pan_track2_and_name(persona: str, caplog: pytest.LogCaptureFixture) -> None:
    """EMV records (READ RECORD by record number, template 70) and a format-2 GPO answer (77,
    track 2) are masked whole but for their template header: the PAN is nowhere in the trace."""
    from sscard.bank import BankApplication

    loaded = load_persona(persona)
    transport = SimReader(SimulatedCard(loaded), f"sim:{persona}").connect()
    card: list[Any] = []
    text = _apdu_log(caplog, lambda: card.append(BankApplication(standard_stack(transport)).read()))
    pan = card[0].clear_pan() if hasattr(card[0], "clear_pan") else card[0].pan
    assert len(pan) >= 16 and "00B2" in text
    for value in (pan, pan.encode().hex().upper(), pan[:16], pan[4:16]):  # ASCII, BCD (5A, track 2)
        assert value not in text, f"{value} in clear in:\n{text}"
    for line in text.splitlines():
        if line.startswith("00B2") and "9000" in line:
            assert " -> 70" in line and MASK in line, line


def test_health_card_trace_masks_its_id_number_and_ef06(caplog: pytest.LogCaptureFixture) -> None:
    from sscard.health import HealthApplication

    transport = SimReader(SimulatedCard(load_persona("health")), "sim:health").connect()
    text = _apdu_log(caplog, lambda: HealthApplication(standard_stack(transport)).read(transport.atr))
    for value in ("11010519491231002X", b"11010519491231002X".hex().upper(), "李四".encode("gb18030").hex()):
        assert value.upper() not in text, f"{value} in clear in:\n{text}"
    assert "00B2" in text


def test_reprs_of_reads_sessions_and_id_cards_carry_no_personal_data(tmp_path: Path) -> None:
    """An object in a log line, an f-string or a traceback's locals shows no personal data."""
    from sscard.idcard import IdCardReader
    from sscard.sim.serial_idcard import SimulatedIdCardReader, load_idcard
    from sscard.transports.serial import SerialPort

    reader = SimReader(SimulatedCard(load_persona("typical")), "sim:typical")
    with Terminal(reader, config=Config()) as terminal:
        shown = repr(terminal.read())
        shown += repr(terminal.sign_in("123456"))
    with SimulatedIdCardReader(load_idcard("zhangsan"), link=tmp_path / "id") as sim, SerialPort(sim.path) as port:
        shown += repr(IdCardReader(port, timeout=2.0).read_card())
    for value in (SSN, NAME, CARD_NUMBER, "1985, 3, 7", "景山前街", "110101"):
        assert value not in shown, f"{value} in {shown}"
    assert "CardholderData(gender_code='1')" in shown and "Session(id=" in shown
