"""Health and metrics (issue 15 items 1–2): ``/healthz``, ``/readyz``, ``/metrics``, ``--metrics-port``.

In process through Starlette's test client with the simulated card (``sim:``), the national
socket through a real Unix-domain socket, the QR scanner through a real pty, ``--metrics-port``
through a real ``sscard serve`` process.  The pcscd half (the same counters through pcscd, and
``/readyz`` while pcscd is killed and restarted) is tests/test_metrics_pcscd.py.  Every scrape is
parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import os
import pty
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from sscard.config import Config
from sscard.service.app import create_app
from sscard.sim import SimulatedCard, load_persona
from sscard.terminal import Terminal
from sscard.terminal.observe import observed
from sscard.transports.sim import SimReader

OWN = "http://127.0.0.1:8765"
LOOPBACK = ("127.0.0.1", 50000)
PIN, WRONG_PIN = "123456", "654321"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient) -> Samples:
    """Every sample of ``GET /metrics``, parsed by prometheus_client's parser: (name, labels) → value."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def make_client(
    config: Config | None = None, reader: SimReader | None = None, **kwargs: object
) -> tuple[TestClient, SimReader]:
    config = config or Config(reader="sim:typical")
    reader = reader or SimReader(SimulatedCard(load_persona("typical")), "sim:typical")
    kwargs.setdefault("allowed_hosts", ["testserver"])
    app = create_app(config, Terminal(reader, config=config), **kwargs)  # type: ignore[arg-type]
    return TestClient(app, headers={"Origin": OWN}, client=LOOPBACK), reader


@pytest.fixture
def client() -> Iterator[TestClient]:
    test_client, _ = make_client()
    with test_client:
        yield test_client


# -- /metrics ----------------------------------------------------------------------------------


def test_each_read_moves_the_read_counter_by_exactly_one(client: TestClient) -> None:
    before = scrape(client)
    for n in range(1, 4):
        assert client.post("/v1/read", json={}).status_code == 200
        now = scrape(client)
        assert value(now, "sscard_card_operations_total", operation="read", outcome="ok") == n
        assert value(now, "sscard_card_operation_seconds_count", operation="read") == n
        assert value(now, "sscard_queue_wait_seconds_count") == n
    assert value(before, "sscard_card_operations_total", operation="read", outcome="ok") == 0
    assert value(now, "sscard_card_operations_in_progress") == 0
    assert value(now, "sscard_build_info", version=__import__("sscard").__version__) == 1


def test_outcomes_are_stable_error_codes_and_pin_outcomes_are_counted_by_kind(client: TestClient) -> None:
    assert client.post("/v1/verify", json={"pin": WRONG_PIN}).json()["state"] == "incorrect"
    assert client.post("/v1/verify", json={"pin": "12"}).status_code == 400
    assert client.post("/v1/verify", json={"pin": PIN}).json()["state"] == "verified"
    assert client.post("/v1/sign-in", json={"pin": WRONG_PIN}).status_code != 200
    samples = scrape(client)
    assert value(samples, "sscard_card_operations_total", operation="verify", outcome="PIN_INCORRECT") == 1
    assert value(samples, "sscard_card_operations_total", operation="verify", outcome="PIN_FORMAT") == 1
    assert value(samples, "sscard_card_operations_total", operation="verify", outcome="ok") == 1
    # sign-in is one operation; the VERIFY inside it is a PIN outcome, not another operation
    assert value(samples, "sscard_card_operations_total", operation="sign_in", outcome="PIN_INCORRECT") == 1
    assert value(samples, "sscard_card_operations_total", operation="read", outcome="ok") == 0
    assert value(samples, "sscard_pin_outcomes_total", operation="verify", outcome="incorrect") == 2
    assert value(samples, "sscard_pin_outcomes_total", operation="verify", outcome="format") == 1
    assert value(samples, "sscard_pin_outcomes_total", operation="verify", outcome="verified") == 1


def test_a_card_pulled_mid_read_is_counted_and_no_card_is_its_own_outcome() -> None:
    reader = SimReader(SimulatedCard(load_persona("typical"), remove_after=3), "sim:typical")
    test_client, _ = make_client(reader=reader)
    with test_client:
        assert test_client.post("/v1/read", json={}).json()["error"]["code"] == "CARD_REMOVED"
        assert test_client.post("/v1/read", json={}).json()["error"]["code"] == "NO_CARD"
        samples = scrape(test_client)
    assert value(samples, "sscard_card_operations_total", operation="read", outcome="CARD_REMOVED") == 1
    assert value(samples, "sscard_cards_pulled_total", operation="read") == 1
    assert value(samples, "sscard_card_operations_total", operation="read", outcome="NO_CARD") == 1


def test_no_label_or_value_carries_personal_data_or_the_pin(client: TestClient) -> None:
    persona = load_persona("typical")
    card = client.post("/v1/read", json={}).json()
    client.post("/v1/sign-in", json={"pin": PIN})
    client.post("/v1/verify", json={"pin": WRONG_PIN})
    text = client.get("/metrics").text
    secrets = {PIN, WRONG_PIN, card["cardholder"]["ssn"], card["cardholder"]["name"], card["card"]["card_number"]}
    secrets.add(SimulatedCard(persona).atr.hex().upper())
    for secret in secrets:
        assert secret and secret not in text and secret.lower() not in text
    labels = {key for family in text_string_to_metric_families(text) for s in family.samples for key in s.labels}
    assert labels <= {"operation", "outcome", "reason", "device", "function", "code", "version", "le"}


def test_refusals_are_counted_by_reason_even_when_their_log_line_is_suppressed(client: TestClient) -> None:
    for _ in range(3):
        assert client.post("/v1/read", json={}, headers={"Origin": "https://evil.example"}).status_code == 403
    bare = TestClient(client.app, client=LOOPBACK)
    assert bare.get("/v1/status", headers={"Host": "evil.example"}).status_code == 403
    samples = scrape(client)
    assert value(samples, "sscard_request_refusals_total", reason="origin") == 3
    assert value(samples, "sscard_request_refusals_total", reason="host") == 1


def test_websocket_subscribers_are_a_gauge(client: TestClient) -> None:
    assert value(scrape(client), "sscard_websocket_subscribers") == 0
    with client.websocket_connect("/v1/events") as first, client.websocket_connect("/v1/events") as second:
        first.receive_json(), second.receive_json()  # hello: both subscribed
        assert value(scrape(client), "sscard_websocket_subscribers") == 2
    deadline = time.monotonic() + 5
    while value(scrape(client), "sscard_websocket_subscribers") != 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_reader_and_card_gauges_follow_the_monitors_events() -> None:
    test_client, reader = make_client()
    with test_client:

        def wait_for(name: str, want: float) -> None:
            deadline = time.monotonic() + 5
            while value(scrape(test_client), name) != want:
                assert time.monotonic() < deadline, f"{name} never became {want}"
                time.sleep(0.02)

        wait_for("sscard_reader_up", 1)
        wait_for("sscard_card_present", 1)
        reader.remove()
        wait_for("sscard_card_present", 0)
        reader.insert(SimulatedCard(load_persona("typical")))
        wait_for("sscard_card_present", 1)


def test_native_socket_calls_are_counted_with_the_card_operation_they_ran(tmp_path: Path) -> None:
    path = str(tmp_path / "native.sock")
    test_client, reader = make_client(socket_path=path)
    with test_client:
        assert _native_call(path, "iReadCardBas", "3").startswith(b"0\t")
        reader.remove()
        assert _native_call(path, "iReadCardBas", "3").startswith(b"-")
        assert _native_call(path, "iNoSuchFunction", "3").startswith(b"-13\t")
        samples = scrape(test_client)
    assert value(samples, "sscard_native_calls_total", function="iReadCardBas", code="0") == 1
    assert value(samples, "sscard_native_calls_total", function="other", code="-13") == 1
    failed = [k for k in samples if k[0] == "sscard_native_calls_total" and ("code", "0") not in k[1]]
    assert len(failed) == 2, failed
    # the socket's read is the terminal's read: counted once, with its typed outcome
    assert value(samples, "sscard_card_operations_total", operation="read", outcome="ok") == 1
    assert value(samples, "sscard_card_operations_total", operation="read", outcome="NO_CARD") == 1


def _native_call(path: str, function: str, *args: str) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(path)
        conn.sendall("\t".join(("SSCARD1", function, "utf-8", "2048", "0", *args)).encode() + b"\n")
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
        return answer


# -- /healthz and /readyz ----------------------------------------------------------------------


def test_healthz_and_readyz_name_their_checks_and_hold_no_personal_data(client: TestClient) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"pcscd", "reader", "serial", "operations"}
    assert all(check["ok"] for check in body["checks"].values())
    assert "110101198503071235" not in ready.text and "张三" not in ready.text


def test_health_endpoints_are_guarded_like_every_other_path(client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        refused = client.get(path, headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "ORIGIN_REFUSED"
    remote = TestClient(client.app, client=("192.0.2.7", 4000))
    assert remote.get("/readyz").status_code == 401
    token_client, _ = make_client(config=Config(reader="sim:typical", service_token="s3cret-token"))
    with token_client:
        bare = TestClient(token_client.app, client=LOOPBACK)
        assert bare.get("/metrics").status_code == 401
        assert bare.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


class _StuckReader(SimReader):
    """A reader whose connect() waits until released: a card operation that hangs."""

    def __init__(self) -> None:
        super().__init__(SimulatedCard(load_persona("typical")), "sim:typical")
        self.release = threading.Event()
        self.entered = threading.Event()

    def connect(self):  # type: ignore[no-untyped-def]
        self.entered.set()
        self.release.wait(30)
        return super().connect()


def test_readyz_fails_while_a_card_operation_runs_past_the_queue_timeout() -> None:
    reader = _StuckReader()
    config = Config(reader="sim:typical", service_queue_timeout=0.3)
    test_client, _ = make_client(config=config, reader=reader)
    with test_client:
        worker = threading.Thread(target=lambda: test_client.post("/v1/read", json={}))
        worker.start()
        try:
            assert reader.entered.wait(10)
            running = test_client.get("/readyz").json()["checks"]["operations"]
            assert running["running"] == "read"  # running, but not yet past the limit
            time.sleep(0.4)
            stuck = test_client.get("/readyz")
            assert stuck.status_code == 503
            check = stuck.json()["checks"]["operations"]
            assert check == {**check, "ok": False, "running": "read", "code": "SERVICE_BUSY", "timeout": 0.3}
        finally:
            reader.release.set()
            worker.join(10)
        again = test_client.get("/readyz")
        assert again.status_code == 200 and again.json()["checks"]["operations"]["running"] is None


def test_serial_devices_readiness_follows_a_real_pty_and_a_missing_device(tmp_path: Path) -> None:
    controller, device = pty.openpty()
    try:
        present = os.ttyname(device)
        missing = str(tmp_path / "ttyNOSUCH")
        config = Config(reader="sim:typical", qr_port=present, idcard_port=missing)
        test_client, _ = make_client(config=config)
        with test_client:
            ready = test_client.get("/readyz")
            assert ready.status_code == 503
            serial = ready.json()["checks"]["serial"]
            assert serial == {"ok": False, "devices": {"qr": True, "idcard": False}, "code": "DEVICE_NOT_FOUND"}
            assert missing not in ready.text and present not in ready.text  # devices by role, not path
            samples = scrape(test_client)
            assert value(samples, "sscard_serial_device_up", device="qr") == 1
            assert value(samples, "sscard_serial_device_up", device="idcard") == 0
    finally:
        os.close(controller)
        os.close(device)


def test_a_qr_scanner_unplugged_and_plugged_back_turns_readiness_and_its_gauge(tmp_path: Path) -> None:
    from sscard.sim.serial_qr import SimulatedQrScanner

    with SimulatedQrScanner(link=tmp_path / "sscard-qr") as scanner:
        config = Config(reader="sim:typical", qr_port=str(tmp_path / "sscard-qr"))
        test_client, _ = make_client(config=config)
        with test_client:

            def wait_for(status: int, up: float) -> None:
                deadline = time.monotonic() + 10
                while True:
                    ready = test_client.get("/readyz")
                    gauge = value(scrape(test_client), "sscard_serial_device_up", device="qr")
                    if ready.status_code == status and gauge == up:
                        return
                    assert time.monotonic() < deadline, (ready.json(), gauge)
                    time.sleep(0.05)

            assert scanner.wait_for_reader(10)  # the service's follower has the port open
            wait_for(200, 1)
            scanner.unplug()
            wait_for(503, 0)
            scanner.plug()
            assert scanner.wait_for_reader(10)
            wait_for(200, 1)


# -- the observer seam -------------------------------------------------------------------------


class _Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, bool]] = []
        self.fail = fail

    def started(self, operation: str, nested: bool) -> None:
        self.calls.append(("started", operation, nested))

    def finished(
        self, operation: str, nested: bool, seconds: float, result: object, error: BaseException | None
    ) -> None:
        self.calls.append(("finished", operation, nested))
        if self.fail:
            raise RuntimeError("observer bug")


def test_the_terminal_reports_nested_operations_as_nested() -> None:
    reader = SimReader(SimulatedCard(load_persona("typical")), "sim:typical")
    terminal = Terminal(reader, config=Config(reader="sim:typical"))
    recorder = _Recorder()
    terminal.observer = recorder
    terminal.sign_in(PIN)
    assert recorder.calls == [
        ("started", "sign_in", False),
        ("started", "read", True),
        ("finished", "read", True),
        ("started", "verify", True),
        ("finished", "verify", True),
        ("finished", "sign_in", False),
    ]
    terminal.close()


def test_an_observer_that_fails_never_fails_the_card_operation(caplog: pytest.LogCaptureFixture) -> None:
    reader = SimReader(SimulatedCard(load_persona("typical")), "sim:typical")
    terminal = Terminal(reader, config=Config(reader="sim:typical"))
    terminal.observer = _Recorder(fail=True)
    assert terminal.read().kind == "ssc"
    assert "operation observer failed" in caplog.text


def test_every_public_card_operation_of_the_facade_is_observed() -> None:
    """A new card operation that forgets ``@observed`` would be missing from the metrics."""
    names = {"read", "auth_check", "read_photo", "pin_status", "verify", "change_pin"}
    names |= {"hsm_step1", "hsm_step2", "sign_in", "sign_out"}
    for name in names:
        method = getattr(Terminal, name)
        assert hasattr(method, "__wrapped__"), f"Terminal.{name} is not @observed"
    assert observed("x")(lambda self: 1).__name__ == "<lambda>"


# -- --metrics-port ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _websocket_refused(port: int) -> bool:
    """Whether the event WebSocket's handshake is refused on ``port``."""
    import asyncio

    import websockets

    async def attempt() -> bool:
        try:
            origin = f"http://127.0.0.1:{port}"
            url = f"ws://127.0.0.1:{port}/v1/events"
            async with websockets.connect(url, origin=origin, open_timeout=10) as ws:  # type: ignore[arg-type]
                await ws.recv()
                return False
        except websockets.exceptions.InvalidStatus:
            return True

    return asyncio.run(attempt())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--port", "8765", "--metrics-port", "8765"], "is the service's own port"),
        (["--metrics-port", "9465", "--metrics-host", "0.0.0.0"], "--allow-remote"),
    ],
)
def test_metrics_port_is_refused_on_the_service_port_and_beyond_loopback_without_allow_remote(
    extra: list[str], message: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_")}
    command = [sys.executable, "-m", "sscard.cli", "serve", "--reader", "sim:typical", *extra]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_metrics_port_is_a_scraper_only_listener_of_the_same_service(tmp_path: Path) -> None:
    port, scrape_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_")}
    command = [sys.executable, "-m", "sscard.cli", "serve", "--reader", "sim:typical", "--port", str(port)]
    command += ["--metrics-port", str(scrape_port)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if _get(scrape_port, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.2)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/read", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        status, text = _get(scrape_port, "/metrics")
        assert status == 200
        families = {family.name: family for family in text_string_to_metric_families(text.decode())}
        reads = [s for s in families["sscard_card_operations"].samples if s.labels.get("operation") == "read"]
        assert [s.value for s in reads] == [1.0]  # the read on the main port, seen on the scrape port
        assert _get(scrape_port, "/readyz")[0] == 200
        for path in ("/v1/status", "/v1/read", "/"):
            assert _get(scrape_port, path)[0] == 404
        assert _get(port, "/metrics")[0] == 200  # the main port has them too
        assert _websocket_refused(scrape_port) and not _websocket_refused(port)
    finally:
        process.terminate()
        process.communicate(timeout=15)
