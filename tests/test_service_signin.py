"""``POST /v1/sign-in`` with every credential (issue 16 item 1): the card (+PIN), the electronic
SSC QR, the medical e-voucher QR, the resident ID card, and ``any`` — whichever comes first.

The service follows its own devices: the simulated QR scanner and ID-card reader on real ptys
(pyserial on the other end, as on a kiosk), the card in process (``sim:``) or through pcscd +
vpcd for the last tests.  A sign-in uses only what the service's devices saw (sscard.offers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from sscard.config import Config
from sscard.offers import CredentialInbox
from sscard.service.app import create_app
from sscard.sim import SimulatedCard, load_persona
from sscard.sim.serial_idcard import SimulatedIdCardReader, load_idcard
from sscard.sim.serial_qr import SimulatedQrScanner
from sscard.terminal import Terminal
from sscard.tokens import load_public_key, verify_token, write_terminal_key
from sscard.transports.sim import SimReader
from support import pcsc_env

OWN = "http://127.0.0.1:8765"
LOOPBACK = ("127.0.0.1", 50000)
EVOUCHER = "4243754826492874240001130000"  # docs/card-reference.md §9
ESSC = "ESSCsim0TestToken0NotReal0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4"  # qr_formats.toml


@pytest.fixture
def qr(tmp_path: Path) -> Iterator[SimulatedQrScanner]:
    with SimulatedQrScanner(link=tmp_path / "sscard-qr") as scanner:
        yield scanner


@pytest.fixture
def idcard(tmp_path: Path) -> Iterator[SimulatedIdCardReader]:
    with SimulatedIdCardReader(link=tmp_path / "sscard-idcard") as reader:
        yield reader


def kiosk(qr: SimulatedQrScanner | None, idcard: SimulatedIdCardReader | None, **changes: Any) -> Config:
    values: dict[str, Any] = {
        "reader": "sim:kiosk",
        "terminal_id": "410100813475",
        "qr_port": str(qr.path) if qr else None,
        "idcard_port": str(idcard.path) if idcard else None,
    }
    values.update(changes)
    return Config(**values)


def client_for(config: Config, card: bool = False) -> tuple[TestClient, SimReader]:
    reader = SimReader(SimulatedCard(load_persona("typical")), "sim:kiosk")
    if not card:
        reader.remove()
    app = create_app(config, Terminal(reader, config=config), allowed_hosts=["testserver"])
    return TestClient(app, headers={"Origin": OWN}, client=LOOPBACK), reader


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def ready(qr: SimulatedQrScanner) -> None:
    """The service has the scanner open, and pyserial has emptied its input buffer (it does so
    right after opening: a scan in between is lost, as on hardware)."""
    assert qr.wait_for_reader(10), "the service never opened the scanner"
    time.sleep(0.3)


def later(seconds: float, action: Any) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_each_qr_kind_and_the_id_card_sign_in_with_their_own_method(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader, tmp_path: Path
) -> None:
    private, public = tmp_path / "t.key", tmp_path / "t.pub"
    write_terminal_key(private, public)
    client, _ = client_for(kiosk(qr, idcard, session_key=str(private)))
    with client:
        ready(qr)
        qr.scan(ESSC)
        signed = client.post("/v1/sign-in", json={"method": "qr", "timeout": 10})
        assert signed.status_code == 200, signed.text
        session = signed.json()["session"]
        assert session["method"] == "qr"
        assert session["credential"] == {"kind": "electronic_ssc", "code": ESSC}
        assert verify_token(session["token"], load_public_key(public)).ssn == ESSC  # the same token rules
        assert client.post("/v1/sign-out").status_code == 200

        qr.scan(EVOUCHER)
        session = client.post("/v1/sign-in", json={"method": "evoucher", "timeout": 10}).json()["session"]
        assert session["method"] == "qr" and session["credential"]["kind"] == "medical_insurance_evoucher"
        assert client.post("/v1/sign-out").status_code == 200

        idcard.place(load_idcard("zhangsan"))
        session = client.post("/v1/sign-in", json={"method": "idcard", "timeout": 10}).json()["session"]
        assert session["method"] == "idcard" and session["name"] == "张三"
        assert session["ssn"] == "110101198503071235"
        assert verify_token(session["token"], load_public_key(public)).method == "idcard"
        # One session at a time, whatever the credential.
        again = client.post("/v1/sign-in", json={"method": "card", "pin": "123456"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "SESSION_ACTIVE"
        assert client.post("/v1/sign-out").status_code == 200

        # The ID card still lies on the reader: it was one offer, not one per poll.
        time.sleep(1.0)
        left = client.post("/v1/sign-in", json={"method": "idcard", "timeout": 0.1})
        assert left.status_code == 504 and left.json()["error"]["code"] == "TIMEOUT"
        # Lifted and laid down again: a new offer.
        idcard.take_card()
        time.sleep(0.8)
        idcard.place(load_idcard("lisi_long_term"))
        session = client.post("/v1/sign-in", json={"method": "idcard", "timeout": 10}).json()["session"]
        assert session["method"] == "idcard" and session["name"] != "张三"


def test_a_scan_of_the_other_kind_does_not_sign_in_and_is_not_lost(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader
) -> None:
    client, _ = client_for(kiosk(qr, idcard))
    with client:
        ready(qr)
        qr.scan(EVOUCHER)
        wait_for(lambda: any(o.method == "evoucher" for o in client.app.state.service.inbox.pending()))  # type: ignore[attr-defined]
        refused = client.post("/v1/sign-in", json={"method": "qr", "timeout": 0.5})
        assert refused.status_code == 504 and refused.json()["error"]["code"] == "TIMEOUT"
        session = client.post("/v1/sign-in", json={"method": "evoucher", "timeout": 1}).json()["session"]
        assert session["credential"]["code"] == EVOUCHER
        # A scan signs in once.
        client.post("/v1/sign-out")
        once = client.post("/v1/sign-in", json={"method": "evoucher", "timeout": 0.1})
        assert once.json()["error"]["code"] == "TIMEOUT"


def test_any_waits_for_whichever_comes_first(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    client, _ = client_for(kiosk(qr, idcard, require_pin=False))
    with client:
        ready(qr)
        timer = later(0.5, lambda: idcard.place(load_idcard("zhangsan")))
        started = time.monotonic()
        session = client.post("/v1/sign-in", json={"method": "any", "timeout": 10}).json()["session"]
        timer.join()
        assert session["method"] == "idcard" and time.monotonic() - started >= 0.4
        client.post("/v1/sign-out")

        timer = later(0.3, lambda: qr.scan(ESSC))
        session = client.post("/v1/sign-in", json={"method": "any", "timeout": 10}).json()["session"]
        timer.join()
        assert session["method"] == "qr" and session["credential"]["kind"] == "electronic_ssc"
        client.post("/v1/sign-out")


def test_any_with_the_card_first_uses_the_pin_and_nothing_else_is_lost(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader
) -> None:
    """The card goes in before the scan (offered as the service's monitor does on card_inserted)."""
    client, _ = client_for(kiosk(qr, idcard), card=True)
    service = client.app.state.service  # type: ignore[attr-defined]
    with client:
        ready(qr)
        service.inbox.offer("card", "sim:kiosk")  # what the monitor does on card_inserted
        time.sleep(0.05)
        qr.scan(EVOUCHER)
        wait_for(lambda: len(service.inbox.pending()) == 2)
        wrong = client.post("/v1/sign-in", json={"method": "any", "pin": "654321", "timeout": 1})
        assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "PIN_INCORRECT"
        # The card's offer was taken by the failed attempt; the scan is still there.
        session = client.post("/v1/sign-in", json={"method": "any", "timeout": 1}).json()["session"]
        assert session["method"] == "qr" and session["credential"]["code"] == EVOUCHER


def test_methods_need_their_device_and_bodies_are_checked(qr: SimulatedQrScanner) -> None:
    client, _ = client_for(kiosk(qr, None))
    with client:
        no_device = client.post("/v1/sign-in", json={"method": "idcard"})
        assert no_device.status_code == 400 and no_device.json()["error"]["code"] == "USAGE_ERROR"
        assert "设备" in no_device.json()["error"]["message_zh"]
        for body in (
            {"method": "face"},
            {"method": "qr", "timeout": "5"},
            {"method": "qr", "timeout": True},
            {"method": "qr", "timeout": -1},
            {"method": "qr", "timeout": 0},
            {"method": "qr", "timeout": 301},
        ):
            bad = client.post("/v1/sign-in", json=body)
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "BAD_REQUEST", body
        with client.websocket_connect("/v1/events") as events:
            hello = events.receive_json()
        assert hello["kiosk"] == {"idle_timeout": 60.0, "methods": ["card", "qr", "evoucher"]}


def test_the_card_method_is_unchanged(qr: SimulatedQrScanner) -> None:
    client, _ = client_for(kiosk(qr, None), card=True)
    with client:
        session = client.post("/v1/sign-in", json={"pin": "123456"}).json()["session"]
        assert session["method"] == "card+pin" and session["name"] == "张三"
        client.post("/v1/sign-out")
        session = client.post("/v1/sign-in", json={"method": "card", "pin": "123456"}).json()["session"]
        assert session["method"] == "card+pin"


def test_an_offer_goes_stale() -> None:
    now = [100.0]
    inbox = CredentialInbox(max_age=60, clock=lambda: now[0])
    inbox.offer("card", "r")
    inbox.offer("card", "r")  # the same card again: one offer
    assert len(inbox.pending()) == 1
    now[0] += 61
    assert inbox.pending() == []
    inbox.offer("card", "r")
    inbox.withdraw("card", "r")
    assert inbox.pending() == []


@pytest.mark.pcscd
def test_every_credential_through_sscard_serve_over_pcscd(
    vpcd_card: pcsc_env.InsertCard, vpcd_reader: str, qr: SimulatedQrScanner, idcard: SimulatedIdCardReader
) -> None:
    """The card through pcscd + vpcd (its insertion seen by the service's event monitor), the QR
    codes and the ID card on ptys: ``any`` signs in with whichever came first."""
    config = kiosk(qr, idcard, reader=vpcd_reader)
    terminal = Terminal.open(config=config)
    app = create_app(config, terminal, allowed_hosts=["testserver"])
    client = TestClient(app, headers={"Origin": OWN}, client=LOOPBACK)
    with client:
        ready(qr)
        links = []
        timer = later(0.3, lambda: links.append(vpcd_card("typical")))
        answer = client.post("/v1/sign-in", json={"method": "any", "pin": "123456", "timeout": 15}).json()
        timer.join()
        assert answer["session"]["method"] == "card+pin", answer
        assert answer["session"]["reader"] == vpcd_reader and answer["session"]["name"] == "张三"
        # Pulled: the session ends, as a card sign-in's always did.
        links[0].remove()
        wait_for(lambda: client.get("/v1/session").json()["session"] is None)

        # A card left in the reader for the QR code: the scan that came after it is not taken for
        # the card, and "evoucher" takes the scan.
        links.append(vpcd_card("typical"))
        qr.scan(EVOUCHER)
        session = client.post("/v1/sign-in", json={"method": "evoucher", "timeout": 10}).json()["session"]
        assert session["method"] == "qr" and session["credential"]["code"] == EVOUCHER
        client.post("/v1/sign-out")
        idcard.place(load_idcard("zhangsan"))
        session = client.post("/v1/sign-in", json={"method": "idcard", "timeout": 10}).json()["session"]
        assert session["method"] == "idcard" and session["name"] == "张三"
        client.post("/v1/sign-out")
        # The card offered when it went in is still the first: "any" signs in with it.
        session = client.post("/v1/sign-in", json={"method": "any", "pin": "123456", "timeout": 1}).json()["session"]
        assert session["method"] == "card+pin"


def test_a_one_off_read_takes_the_id_card_port_from_the_follower(idcard: SimulatedIdCardReader) -> None:
    """ReadSFZ and a bridge's read_idcard read the ID card themselves (sscard.credentials.claim_port):
    the service's follower lets go of the port meanwhile, so no frame is shared between the two,
    and the card the read took is not offered again when the follower takes the port back."""
    from sscard.credentials import claim_port, follow_idcard
    from sscard.idcard import IdCardReader
    from sscard.transports.serial import SerialPort

    offered: list[Any] = []
    stop = threading.Event()
    follower = threading.Thread(
        target=follow_idcard, args=(str(idcard.path), 115200, stop, lambda _event: None, offered.append), daemon=True
    )
    follower.start()
    try:
        idcard.place(load_idcard("zhangsan"))
        wait_for(lambda: len(offered) == 1)  # the follower read it once
        for _ in range(5):
            with claim_port(str(idcard.path)), SerialPort(str(idcard.path), 115200) as port:
                assert IdCardReader(port).read_card().name == "张三"
        time.sleep(1.0)  # the follower has the port again, the card still lies there
        assert len(offered) == 1
    finally:
        stop.set()
        follower.join(5)
