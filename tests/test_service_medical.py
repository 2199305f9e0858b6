"""``POST /v1/medical/credential`` (issue 14 item 4): any credential → the medical insurance
platform's person-query fields, through the service.

In process through Starlette's test client with the simulated card and the simulated QR scanner
and ID-card reader on real pseudo-terminals; then through a real ``sscard serve`` with the card in
pcscd's vpcd reader and a QR code on a pty (marked ``pcscd``: run under the lock).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from sscard.config import Config
from sscard.service.app import create_app
from sscard.sim import SimulatedCard, load_persona
from sscard.sim.serial_idcard import SimulatedIdCardReader, load_idcard
from sscard.sim.serial_qr import SimulatedQrScanner
from sscard.terminal import Terminal
from sscard.transports.sim import SimReader
from support import pcsc_env
from support.ec_platform import EVOUCHER, PERSON, Platform, answer, send, serve

OWN = "http://127.0.0.1:8765"
LOOPBACK = ("127.0.0.1", 50000)
ZHANGSAN_ID = "110101198503071235"
PATH = "/v1/medical/credential"


@pytest.fixture
def qr(tmp_path: Path) -> Iterator[SimulatedQrScanner]:
    with SimulatedQrScanner(link=tmp_path / "sscard-qr") as scanner:
        yield scanner


@pytest.fixture
def idcard(tmp_path: Path) -> Iterator[SimulatedIdCardReader]:
    with SimulatedIdCardReader(link=tmp_path / "sscard-idcard") as reader:
        yield reader


def make_client(
    qr: SimulatedQrScanner,
    idcard: SimulatedIdCardReader,
    *,
    card: bool = False,
    persona: str = "typical",
    **changes: Any,
) -> tuple[TestClient, SimReader]:
    values: dict[str, Any] = {"reader": "sim:desk", "qr_port": str(qr.path), "idcard_port": str(idcard.path)}
    values.update(changes)
    config = Config(**values)
    reader = SimReader(SimulatedCard(load_persona("typical")), "sim:desk")
    if not card:
        reader.remove()
    app = create_app(config, Terminal(reader, config=config), allowed_hosts=["testserver"])
    return TestClient(app, headers={"Origin": OWN}, client=LOOPBACK), reader


def later(seconds: float, action: object) -> threading.Timer:
    timer = threading.Timer(seconds, action)  # type: ignore[arg-type]
    timer.start()
    return timer


class KeepScanning:
    """Scan a new e-voucher code every ``interval`` until stopped: the service's scanner follower
    and the credential wait take turns on the port, and a code scanned in the moment between them
    goes to the follower (an event) rather than to the wait; the next one reaches the wait."""

    def __init__(self, qr: SimulatedQrScanner, interval: float = 0.4) -> None:
        self.qr, self.interval = qr, interval
        self.codes: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.wait(self.interval):
            if self.qr.reader_connected:
                code = f"{EVOUCHER[:-4]}{n:04d}"
                self.codes.append(code)
                self.qr.scan(code)
                n += 1

    def __enter__(self) -> KeepScanning:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def test_an_ssc_answers_03(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    client, _ = make_client(qr, idcard, card=True)
    with client:
        response = client.post(PATH, json={"timeout": 10})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["mdtrt_cert_type"] == "03" and data["mdtrt_cert_no"] == ZHANGSAN_ID and data["certno"] == ZHANGSAN_ID
    assert len(data["card_sn"]) == 32 and data["psn_cert_type"] == "01" and data["psn_name"] == "张三"
    assert data["resolved"] is True and data["kind"] == "ssc_card"
    assert response.headers["cache-control"] == "no-store"


def test_an_id_card_answers_02(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    client, _ = make_client(qr, idcard)
    with client:
        timer = later(0.3, lambda: idcard.place(load_idcard("zhangsan")))
        response = client.post(PATH, json={"timeout": 10})
        timer.join()
    assert response.json() == {
        "mdtrt_cert_type": "02",
        "mdtrt_cert_no": ZHANGSAN_ID,
        "card_sn": "",
        "psn_cert_type": "01",
        "certno": ZHANGSAN_ID,
        "psn_name": "张三",
        "resolved": True,
        "kind": "id_card",
        "also_presented": [],
    }


def _events(client: TestClient, into: queue.Queue[dict[str, Any]], stop: threading.Event) -> None:
    with client.websocket_connect("/v1/events") as socket:
        while not stop.is_set():
            message = socket.receive_json()
            into.put(message)
            if message.get("event") == "stop-marker":
                return


def _next_scan(messages: queue.Queue[dict[str, Any]], timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = messages.get(timeout=max(deadline - time.monotonic(), 0.01))
        if message.get("event") == "qr_scanned":
            return message


def test_an_evoucher_answers_01_unresolved_and_the_scanner_follower_comes_back(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader
) -> None:
    """The wait reads the scanner itself (the follower paused); its scan still reaches /v1/events,
    and once it is over the follower publishes the next scan again."""
    client, _ = make_client(qr, idcard)
    messages: queue.Queue[dict[str, Any]] = queue.Queue()
    stop = threading.Event()
    with client:
        listener = threading.Thread(target=_events, args=(client, messages, stop), daemon=True)
        listener.start()
        with KeepScanning(qr) as scanning:
            response = client.post(PATH, json={"timeout": 10})
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["mdtrt_cert_no"] in scanning.codes
        assert data == {
            "mdtrt_cert_type": "01",
            "mdtrt_cert_no": data["mdtrt_cert_no"],
            "card_sn": "",
            "psn_cert_type": "",
            "certno": "",
            "psn_name": "",
            "resolved": False,
            "kind": "qr",
            "also_presented": [],
        }
        seen = []
        while data["mdtrt_cert_no"] not in seen:
            seen.append(_next_scan(messages)["code"])  # the wait's scan reached the event stream too
        assert qr.wait_for_reader(5)  # the follower has the port again
        other = EVOUCHER[:-1] + "7"
        qr.scan(other)
        while _next_scan(messages)["code"] != other:  # published by the follower, back again
            pass
        stop.set()
        qr.scan(EVOUCHER[:-1] + "8")  # one more event, so the listener wakes and sees stop
        listener.join(timeout=10)


def test_an_evoucher_is_resolved_through_the_platform(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    for platform in serve(Platform(lambda handler, _body: send(handler, answer(data=PERSON)))):
        client, _ = make_client(qr, idcard, medical_ec_url=platform.url, medical_org_id="H41010000001")
        with client, KeepScanning(qr):
            response = client.post(PATH, json={"timeout": 10})
    data = response.json()
    assert (data["mdtrt_cert_type"], data["mdtrt_cert_no"], data["certno"], data["psn_name"], data["resolved"]) == (
        "01",
        PERSON["ecToken"],
        PERSON["idNo"],
        "张三",
        True,
    )
    assert json.loads(platform.requests[0][1])["orgId"] == "H41010000001"


@pytest.mark.parametrize(
    ("behave", "status", "code"),
    [
        (lambda handler, _body: send(handler, answer(code=1001, message="电子凭证已失效")), 409, "EC_REFUSED"),
        (lambda handler, _body: send(handler, b"<html>oops</html>"), 502, "EC_BAD_ANSWER"),
    ],
    ids=["refused", "garbage"],
)
def test_the_platforms_errors_reach_the_page(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader, behave: Any, status: int, code: str
) -> None:
    for platform in serve(Platform(behave)):
        client, _ = make_client(qr, idcard, medical_ec_url=platform.url)
        with client, KeepScanning(qr):
            response = client.post(PATH, json={"timeout": 10})
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert len(platform.requests) == 1


def test_an_unreachable_platform_is_502(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    client, _ = make_client(qr, idcard, medical_ec_url="http://127.0.0.1:9/ec", medical_timeout=2.0)
    with client, KeepScanning(qr):
        response = client.post(PATH, json={"timeout": 10})
    error = response.json()["error"]
    assert response.status_code == 502 and error["code"] == "EC_UNREACHABLE" and error["sent"] is False


def test_the_pin_with_card_passtype_1(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    client, _ = make_client(qr, idcard, card=True, medical_card_passtype="1")
    with client:
        missing = client.post(PATH, json={"timeout": 10})
        wrong = client.post(PATH, json={"timeout": 10, "pin": "000000"})
        right = client.post(PATH, json={"timeout": 10, "pin": "123456"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "USAGE_ERROR"
    assert wrong.status_code == 409 and wrong.json()["error"] == {**wrong.json()["error"], "code": "PIN_INCORRECT"}
    assert wrong.json()["error"]["tries_left"] == 2  # one VERIFY, not retried
    assert right.status_code == 200 and right.json()["mdtrt_cert_type"] == "03"
    assert "123456" not in right.text + wrong.text


def test_a_pin_is_not_used_for_an_id_card_nor_with_card_passtype_2(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader
) -> None:
    client, reader = make_client(qr, idcard, card=True)  # card_passtype 2 (the default): no VERIFY
    with client:
        response = client.post(PATH, json={"timeout": 10, "pin": "000000"})
    assert response.status_code == 200 and reader.card is not None and reader.card.tries_left == 3


def test_bad_bodies_are_refused_before_the_wait(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    client, _ = make_client(qr, idcard)
    with client:
        for body in ({"timeout": "10"}, {"timeout": 0}, {"timeout": 1000}, {"timeout": True}, {"app": "ssc"}):
            response = client.post(PATH, json=body)
            assert response.status_code == 400 and response.json()["error"]["code"] == "BAD_REQUEST", body
        started = time.monotonic()
        timed_out = client.post(PATH, json={"timeout": 0.5})
        assert timed_out.status_code == 504 and timed_out.json()["error"]["code"] == "TIMEOUT"
        assert time.monotonic() - started < 5
        assert client.get(PATH).status_code == 405


def test_origin_rules_as_everywhere(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    client, _ = make_client(qr, idcard, card=True)
    with client:
        refused = client.post(PATH, json={"timeout": 1}, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ORIGIN_REFUSED"


def test_one_card_operation_at_a_time(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    """While the desk waits for a credential, another request queues, then is SERVICE_BUSY."""
    client, _ = make_client(qr, idcard, service_queue_timeout=0.3)
    results: list[int] = []
    with client:
        service = client.app.state.service  # type: ignore[attr-defined]
        waiting = threading.Thread(target=lambda: results.append(client.post(PATH, json={"timeout": 3}).status_code))
        waiting.start()
        deadline = time.monotonic() + 5
        while not service.lock.locked() and time.monotonic() < deadline:
            time.sleep(0.02)  # the wait holds the reader
        busy = client.post("/v1/read", json={})
        waiting.join(timeout=10)
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "SERVICE_BUSY"
    assert results == [504]


# --- through a real sscard serve: pcscd + vpcd, and a QR code on a pty ---------------------------


def _post(port: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{PATH}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def served(vpcd_reader: str, qr: SimulatedQrScanner, idcard: SimulatedIdCardReader, tmp_path: Path) -> Iterator[int]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = tmp_path / "sscard.toml"
    config.write_text(
        f'[qr]\nport = "{qr.path}"\n\n[idcard]\nport = "{idcard.path}"\n\n[medical]\ncard_passtype = "1"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_") or k == "SSCARD_VPCD_SLOT"}
    env["SSCARD_CONFIG"] = str(config)
    process = subprocess.Popen(
        [sys.executable, "-m", "sscard.cli", "serve", "--reader", vpcd_reader, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2):
                break
        except OSError:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.2)
    try:
        yield port
    finally:
        process.terminate()
        _, err = process.communicate(timeout=15)
        assert ZHANGSAN_ID not in err and "张三" not in err and EVOUCHER not in err  # no personal data logged


@pytest.mark.pcscd
def test_through_pcscd_an_ssc_with_its_pin_then_a_qr_code(
    vpcd_card: pcsc_env.InsertCard, vpcd_reader: str, served: int, qr: SimulatedQrScanner
) -> None:
    inserted: list[Any] = []
    timer = later(0.5, lambda: inserted.append(vpcd_card("typical")))
    status, data = _post(served, {"timeout": 20, "pin": "123456"})
    timer.join()
    assert status == 200, data
    assert data["mdtrt_cert_type"] == "03" and data["mdtrt_cert_no"] == ZHANGSAN_ID and len(data["card_sn"]) == 32
    assert data["kind"] == "ssc_card" and data["psn_name"] == "张三"
    inserted[0].remove()
    pcsc_env.wait_for_reader(vpcd_reader, present=False)
    with KeepScanning(qr) as scanning:
        status, data = _post(served, {"timeout": 20})
    assert status == 200, data
    assert (data["mdtrt_cert_type"], data["resolved"], data["kind"]) == ("01", False, "qr")
    assert data["mdtrt_cert_no"] in scanning.codes
