"""One terminal, any credential (issue 5 item 5): whichever of card, QR and ID card comes first.

Real pseudo-terminals for the serial devices (the simulated scanner and ID-card reader), pyserial
on the other end, and the simulated SSC card in process — or through pcscd for the last test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sscard.config import Config
from sscard.credentials import CredentialKind
from sscard.errors import Timeout
from sscard.events import Event, EventKind
from sscard.session import Method
from sscard.sim import SimulatedCard, load_persona
from sscard.sim.serial_idcard import SimulatedIdCardReader, load_idcard
from sscard.sim.serial_qr import SimulatedQrScanner
from sscard.terminal import Terminal
from sscard.tokens import load_public_key, verify_token, write_terminal_key
from sscard.transports.sim import SimReader
from support import pcsc_env

EVOUCHER = "4243754826492874240001130000"  # docs/card-reference.md §9


@pytest.fixture
def qr(tmp_path: Path) -> Iterator[SimulatedQrScanner]:
    with SimulatedQrScanner(link=tmp_path / "sscard-qr") as scanner:
        yield scanner


@pytest.fixture
def idcard(tmp_path: Path) -> Iterator[SimulatedIdCardReader]:
    with SimulatedIdCardReader(link=tmp_path / "sscard-idcard") as reader:
        yield reader


def empty_reader() -> SimReader:
    reader = SimReader(SimulatedCard(load_persona("typical")), "sim:kiosk")
    reader.remove()
    return reader


def kiosk(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader, **changes: object) -> Config:
    values: dict[str, object] = {
        "qr_port": str(qr.path),
        "idcard_port": str(idcard.path),
        "terminal_id": "410100813475",
        "require_pin": False,
    }
    values.update(changes)
    return Config(**values)  # type: ignore[arg-type]


def later(seconds: float, action: object) -> threading.Timer:
    timer = threading.Timer(seconds, action)  # type: ignore[arg-type]
    timer.start()
    return timer


def test_a_qr_scan_wins_when_it_comes_first(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    reader = empty_reader()
    terminal = Terminal(reader, config=kiosk(qr, idcard))
    events: list[Event] = []

    def scan_when_ready() -> None:
        assert qr.wait_for_reader(5)
        qr.scan(EVOUCHER)

    timer = later(0.2, scan_when_ready)
    credential = terminal.wait_for_credential(timeout=10, on_event=events.append)
    timer.join()
    assert credential.kind is CredentialKind.QR and credential.qr is not None
    assert credential.qr.kind.value == "medical_insurance_evoucher" and credential.qr.code == EVOUCHER
    assert credential.source == str(qr.path)
    assert any(e.kind is EventKind.QR_SCANNED and (e.data or {}).get("code") == EVOUCHER for e in events)


def test_an_id_card_wins_when_it_comes_first(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    terminal = Terminal(empty_reader(), config=kiosk(qr, idcard))
    timer = later(0.4, lambda: idcard.place(load_idcard("zhangsan")))
    credential = terminal.wait_for_credential(timeout=10)
    timer.join()
    assert credential.kind is CredentialKind.ID_CARD and credential.id_card is not None
    assert credential.id_card.id_number == "110101198503071235" and credential.id_card.name == "张三"
    assert credential.to_json()["id_card"]["name"] == "张三"


def test_an_ssc_card_wins_when_it_comes_first(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    reader = empty_reader()
    terminal = Terminal(reader, config=kiosk(qr, idcard))
    timer = later(0.3, lambda: reader.insert(SimulatedCard(load_persona("long_name"))))
    credential = terminal.wait_for_credential(timeout=10)
    timer.join()
    assert credential.kind is CredentialKind.SSC_CARD and credential.card is not None
    assert credential.card.cardholder.full_name and credential.source == "sim:kiosk"
    assert idcard.card is None


def test_all_three_offered_in_turn_each_is_returned(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    """The issue's done-when: one test offers all three; each wait returns the one offered."""
    reader = empty_reader()
    terminal = Terminal(reader, config=kiosk(qr, idcard))
    got = []
    timer = later(0.2, lambda: qr.wait_for_reader(5) and qr.scan(EVOUCHER))
    got.append(terminal.wait_for_credential(timeout=10).kind)
    timer.join()
    timer = later(0.2, lambda: idcard.place(load_idcard("lisi_long_term")))
    got.append(terminal.wait_for_credential(timeout=10).kind)
    timer.join()
    idcard.take_card()
    timer = later(0.2, lambda: reader.insert(SimulatedCard(load_persona("typical"))))
    got.append(terminal.wait_for_credential(timeout=10).kind)
    timer.join()
    assert got == [CredentialKind.QR, CredentialKind.ID_CARD, CredentialKind.SSC_CARD]


def test_nothing_offered_is_a_timeout(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    terminal = Terminal(empty_reader(), config=kiosk(qr, idcard))
    with pytest.raises(Timeout):
        terminal.wait_for_credential(timeout=0.8)


def test_an_unplugged_scanner_does_not_stop_the_other_sources(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader
) -> None:
    config = kiosk(qr, idcard, qr_port=str(qr.link))
    terminal = Terminal(empty_reader(), config=config)
    events: list[Event] = []
    assert qr.link is not None

    def unplug_then_offer_id_card() -> None:
        assert qr.wait_for_reader(5)
        qr.unplug()
        idcard.place(load_idcard("zhangsan"))

    timer = later(0.3, unplug_then_offer_id_card)
    credential = terminal.wait_for_credential(timeout=10, on_event=events.append)
    timer.join()
    assert credential.kind is CredentialKind.ID_CARD
    assert any(e.kind is EventKind.DEVICE_REMOVED and e.reader == str(qr.link) for e in events)

    # Plugged back in (same udev-style link): the next wait reads it without any restart.
    qr.plug()
    idcard.take_card()
    timer = later(0.3, lambda: qr.wait_for_reader(5) and qr.scan("4243754826492874240001130001"))
    again = terminal.wait_for_credential(timeout=10)
    timer.join()
    assert again.kind is CredentialKind.QR and again.qr is not None and again.qr.code.endswith("0001")


def test_a_missing_id_card_reader_is_reported_and_waited_for(qr: SimulatedQrScanner, tmp_path: Path) -> None:
    config = Config(qr_port=str(qr.path), idcard_port=str(tmp_path / "not-plugged-in"))
    terminal = Terminal(empty_reader(), config=config)
    events: list[Event] = []
    timer = later(0.3, lambda: qr.wait_for_reader(5) and qr.scan(EVOUCHER))
    credential = terminal.wait_for_credential(timeout=10, on_event=events.append)
    timer.join()
    assert credential.kind is CredentialKind.QR
    removed = [e for e in events if e.kind is EventKind.DEVICE_REMOVED]
    assert removed and removed[0].reader == str(tmp_path / "not-plugged-in")


def test_sign_in_with_each_kind_of_credential(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader, tmp_path: Path
) -> None:
    private, public = tmp_path / "t.key", tmp_path / "t.pub"
    write_terminal_key(private, public)
    reader = empty_reader()
    terminal = Terminal(reader, config=kiosk(qr, idcard, session_key=str(private)))

    timer = later(0.2, lambda: qr.wait_for_reader(5) and qr.scan(EVOUCHER))
    session = terminal.sign_in_with(terminal.wait_for_credential(timeout=10))
    timer.join()
    assert session.method is Method.QR and session.credential == {
        "kind": "medical_insurance_evoucher",
        "code": EVOUCHER,
    }
    assert session.token and verify_token(session.token, load_public_key(public)).ssn == EVOUCHER
    terminal.sign_out()

    timer = later(0.2, lambda: idcard.place(load_idcard("zhangsan")))
    session = terminal.sign_in_with(terminal.wait_for_credential(timeout=10))
    timer.join()
    assert session.method is Method.IDCARD and session.ssn == "110101198503071235" and session.name == "张三"
    assert session.token and verify_token(session.token, load_public_key(public)).method == "idcard"
    terminal.sign_out()
    idcard.take_card()

    timer = later(0.2, lambda: reader.insert(SimulatedCard(load_persona("typical"))))
    session = terminal.sign_in_with(terminal.wait_for_credential(timeout=10))
    timer.join()
    assert session.method is Method.CARD and session.name == "张三"
    terminal.close()


@pytest.mark.pcscd
def test_card_through_pcscd_against_a_waiting_scanner(
    vpcd_card: pcsc_env.InsertCard, vpcd_reader: str, qr: SimulatedQrScanner, idcard: SimulatedIdCardReader
) -> None:
    config = kiosk(qr, idcard, reader=vpcd_reader)
    with Terminal.open(config=config) as terminal:
        timer = later(0.3, lambda: vpcd_card("typical"))
        credential = terminal.wait_for_credential(timeout=15)
        timer.join()
    assert credential.kind is CredentialKind.SSC_CARD and credential.source == vpcd_reader


def test_sscard_watch_reports_scans_in_the_event_stream(qr: SimulatedQrScanner) -> None:
    """``sscard watch --qr-port``: scans arrive as ``qr_scanned`` lines among the PC/SC events."""
    import json
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "sscard.cli", "watch", "--qr-port", str(qr.path), "--timeout", "30"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    watch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert qr.wait_for_reader(10), "watch never opened the scanner"
        qr.scan(EVOUCHER)
        assert watch.stdout is not None
        while True:
            line = watch.stdout.readline()
            assert line, "watch ended before the scan arrived"
            event = json.loads(line)
            if event["event"] == "qr_scanned":
                break
    finally:
        watch.terminate()
        watch.communicate(timeout=10)
    assert event["kind"] == "medical_insurance_evoucher" and event["code"] == EVOUCHER
    assert event["reader"] == str(qr.path) and event["time"][10] == "T"
    assert watch.returncode == 0


def test_the_sources_that_lost_are_stopped_without_an_error_logged(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 14: closing the losing QR source's port under its reading thread made pyserial raise
    (a TypeError on the closed descriptor) and the wait logged "credential source qr failed" with a
    traceback about every other time: a service log full of errors after ordinary waits."""
    terminal = Terminal(SimReader(SimulatedCard(load_persona("typical")), "sim:kiosk"), config=kiosk(qr, idcard))
    with caplog.at_level("DEBUG", logger="sscard.credentials"):
        for _ in range(10):
            assert terminal.wait_for_credential(timeout=10).kind is CredentialKind.SSC_CARD
            time.sleep(0.2)  # the stopped threads finish (and would log) before the next wait
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert errors == []


def test_a_scanner_follower_yields_the_port_to_a_wait_and_takes_it_back(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader
) -> None:
    """Issue 14: the service follows [qr] port while /v1/medical/credential waits on the same port.
    Two readers of one serial port each get part of the bytes; the follower closes the port for
    the wait and opens it again afterwards, so every scan is read whole by exactly one of them."""
    from sscard.credentials import follow_scanner, qr_config

    config = kiosk(qr, idcard)
    followed: list[str] = []
    stop = threading.Event()
    follower = threading.Thread(
        target=follow_scanner,
        args=(str(qr.path), qr_config(config), stop, lambda e: followed.append((e.data or {}).get("code", ""))),
        daemon=True,
    )
    follower.start()
    assert qr.wait_for_reader(5)
    scanned: list[str] = []
    done = threading.Event()

    def keep_scanning() -> None:
        n = 0
        while not done.wait(0.3):
            if qr.reader_connected:
                scanned.append(f"{EVOUCHER[:-4]}{n:04d}")
                qr.scan(scanned[-1])
                n += 1

    scanner = threading.Thread(target=keep_scanning, daemon=True)
    scanner.start()
    try:
        credential = Terminal(empty_reader(), config=config).wait_for_credential(timeout=10, idcard=False)
    finally:
        done.set()
        scanner.join(timeout=5)
    assert credential.qr is not None and credential.qr.code in scanned
    assert credential.qr.code not in followed  # read by the wait alone
    assert qr.wait_for_reader(5)  # the follower has the port again
    time.sleep(0.3)
    qr.scan(EVOUCHER)
    deadline = time.monotonic() + 5
    while EVOUCHER not in followed and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    follower.join(timeout=5)
    assert EVOUCHER in followed and not follower.is_alive()
    assert set(followed) <= {*scanned, EVOUCHER}  # whole codes only: no scan split between readers
