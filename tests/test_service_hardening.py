"""Field hardening of the kiosk service (issue 11, items 5–8).

* 5: remote clients (``--allow-remote``) are admitted by the bearer token alone, and the service
  refuses to start beyond loopback without one.  "Not loopback" is tested in process, with an ASGI
  scope whose client is 192.0.2.10 (TEST-NET-1): no traffic may be sent to a non-loopback address
  from this machine, and the whole 127.0.0.0/8 is loopback (the service treats it so too).
* 6: connection limits, through a real uvicorn on 127.0.0.1 with the service's own protocol classes
  (both parsers): stalled connections are closed after the header and body timeouts, and a read
  still answers while hundreds of stalled connections are held, at and above the cap.
* 7: every request error in the JSON error form; log lines escaped and refusals rate-limited.
* 8: the status codes in docs/service.md's table are those the service sends; body types checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import sscard.errors
from sscard.config import Config
from sscard.service.app import (
    DEFAULT_STATUS,
    HTTP_STATUS,
    ServiceError,
    check_remote,
    client_is_loopback,
    create_app,
    http_status,
)
from sscard.service.logs import RefusalLog, clean
from sscard.service.server import MAX_HEADER_BYTES, Limits, h11_protocol, protocol_classes
from sscard.sim import SimulatedCard, load_persona
from sscard.terminal import Terminal
from sscard.transports.sim import SimReader

ROOT = Path(__file__).resolve().parents[1]
OWN = BASE = "http://127.0.0.1:8765"
LOOPBACK = ("127.0.0.1", 50000)
REMOTE = ("192.0.2.10", 50000)  # TEST-NET-1: only ever an ASGI scope value, never an address we talk to


def make_app(token: str | None = None, port: int = 8765, **config_values: Any) -> Starlette:
    """The service on the simulated card; its own page's origin and Host are those of port 8765
    (and of ``port`` when it really listens there)."""
    config = Config(reader="sim:typical", service_token=token, **config_values)
    terminal = Terminal(SimReader(SimulatedCard(load_persona("typical")), "sim:typical"), config=config)
    hosts = ["127.0.0.1:8765", f"127.0.0.1:{port}", "testserver"]  # (the test client's WebSocket Host)
    return create_app(config, terminal, port=port, allowed_origins=[OWN], allowed_hosts=hosts)


def ok_body(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def error_of(response: Any) -> dict[str, Any]:
    """The JSON error form, checked whole: code, English and Chinese message, no-store."""
    assert response.headers["content-type"] == "application/json", response.text
    assert response.headers.get("cache-control") == "no-store"
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] and error["message"] and error["message_zh"]
    assert response.status_code == http_status(error["code"])
    return error


# -- item 5: remote clients ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_allow_remote_without_a_token_is_refused_at_start(tmp_path: Path) -> None:
    """Before: the service started (here: tried to bind 192.0.2.10 and failed with status 1).

    192.0.2.10 is not an address of this machine; nothing is ever bound or sent there, the refusal
    comes first."""
    (tmp_path / "sscard.toml").write_text("", encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "sscard.cli", "serve", "--reader", "sim:typical"]
    command += ["--host", "192.0.2.10", "--port", str(_free_port()), "--allow-remote"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "[service] token" in result.stderr and "USAGE_ERROR" in result.stderr
    assert "Uvicorn running" not in result.stderr and "sscard service on" not in result.stderr


def test_check_remote_needs_the_opt_in_and_then_the_token() -> None:
    from sscard.errors import UsageError

    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        check_remote(host, allow_remote=False, token=None)
    with pytest.raises(UsageError, match="--allow-remote"):
        check_remote("0.0.0.0", allow_remote=False, token="t")
    with pytest.raises(UsageError, match=r"\[service\] token"):
        check_remote("0.0.0.0", allow_remote=True, token=None)
    check_remote("0.0.0.0", allow_remote=True, token="t")


def test_client_is_loopback() -> None:
    for address in ("127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"):
        assert client_is_loopback({"client": (address, 1)}), address
    for address in ("192.0.2.10", "::ffff:192.0.2.10", "2001:db8::1", "testclient", ""):
        assert not client_is_loopback({"client": (address, 1)}), address
    assert not client_is_loopback({"client": None}) and not client_is_loopback({})


def test_a_remote_client_is_refused_without_a_token_even_with_a_loopback_host() -> None:
    """Before: Host 127.0.0.1 and the service's own Origin let a LAN client read the card."""
    with TestClient(make_app(), base_url=BASE, client=REMOTE) as lan:
        for headers in ({"Host": "127.0.0.1:8765"}, {"Host": "127.0.0.1:8765", "Origin": OWN}):
            refused = lan.post("/v1/read", headers=headers)
            assert refused.status_code == 401 and error_of(refused)["code"] == "UNAUTHORIZED"
            assert lan.post("/v1/verify", json={"pin": "123456"}, headers=headers).status_code == 401
        with pytest.raises(WebSocketDisconnect) as closed, lan.websocket_connect("/v1/compat", headers={"Origin": OWN}):
            pass
        assert closed.value.code == 4403


def test_a_remote_client_needs_the_token_whatever_its_origin_and_host_say() -> None:
    with TestClient(make_app(token="s3cret"), base_url=BASE, client=REMOTE) as lan:
        spoofed = {"Host": "127.0.0.1:8765", "Origin": OWN}
        assert lan.get("/v1/status", headers=spoofed).status_code == 401, "an allowed Origin is no token"
        assert lan.get("/v1/status", headers={**spoofed, "Authorization": "Bearer wrong"}).status_code == 401
        granted = {"Host": "kiosk-7.lan:8765", "Authorization": "Bearer s3cret"}
        assert ok_body(lan.get("/v1/status", headers=granted))["service"] == "sscard"
        foreign = lan.get("/v1/status", headers={**granted, "Origin": "https://evil.example"})
        assert foreign.status_code == 403, "a token does not make a foreign page's request acceptable"
    with TestClient(make_app(token="s3cret"), base_url=BASE, client=LOOPBACK, headers={"Origin": OWN}) as page:
        assert page.get("/v1/status").status_code == 200, "loopback pages still need no token"


# -- item 6: connection limits, through a real uvicorn ---------------------------------------------


@dataclass
class Running:
    port: int
    server: uvicorn.Server
    app: Starlette

    def connections(self) -> int:
        return len(self.server.server_state.connections)


@contextlib.contextmanager
def _serve(app: Starlette, protocol: type[asyncio.Protocol], port: int) -> Iterator[Running]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=protocol,
        ws="websockets",
        log_config=None,  # leave logging alone so caplog sees uvicorn's records too
        access_log=False,
        timeout_keep_alive=5,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Running(port, server, app)
    finally:
        server.should_exit = True
        thread.join(15)


LIMITS = Limits(header_timeout=1.0, body_timeout=1.0, max_connections=64)


@pytest.fixture(params=["httptools", "h11"])
def running(request: pytest.FixtureRequest) -> Iterator[Running]:
    port = _free_port()
    app = make_app(port=port)
    factory = protocol_classes if request.param == "httptools" else h11_protocol
    with _serve(app, factory(LIMITS, app.state.service.refusals), port) as running:
        yield running


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def _request(port: int, method: str, path: str, body: bytes = b"", timeout: float = 10) -> tuple[int, bytes]:
    """One request on a fresh connection (Connection: close), the status and the body."""
    with _connect(port) as sock:
        sock.settimeout(timeout)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:8765\r\nOrigin: {OWN}\r\nConnection: close\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (EOF or reset), None if it stayed open."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def _stall(port: int, count: int) -> list[socket.socket]:
    """``count`` connections: a third silent, a third with half a request line, a third mid-headers."""
    held = []
    for i in range(count):
        sock = _connect(port)
        if i % 3 == 1:
            sock.sendall(b"GET /v1/sta")
        elif i % 3 == 2:
            sock.sendall(b"POST /v1/read HTTP/1.1\r\nHost: 127.0.0.1:8765\r\nX-Slow: ")
        held.append(sock)
    return held


def test_a_stalled_connection_is_closed_after_the_header_timeout(running: Running) -> None:
    """Before: uvicorn waited for ever for the rest of the headers."""
    with _connect(running.port) as silent, _connect(running.port) as trickling:
        trickling.sendall(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:8765\r\n")
        for sock in (silent, trickling):
            closed = _closed_within(sock, LIMITS.header_timeout + 5)
            assert closed is not None, "still open after the header timeout"


def test_an_unfinished_body_is_closed_after_the_body_timeout_without_a_traceback(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with _connect(running.port) as sock:
        head = b"POST /v1/read HTTP/1.1\r\nHost: 127.0.0.1:8765\r\nContent-Length: 100\r\n\r\n{"
        sock.sendall(head)
        assert _closed_within(sock, LIMITS.body_timeout + 5) is not None
    _settle(lambda: any("body timeout" in r.getMessage() for r in caplog.records))
    assert not [r for r in caplog.records if r.exc_info or "Exception in ASGI" in r.getMessage()]


def test_headers_past_the_size_cap_are_refused(running: Running) -> None:
    with _connect(running.port) as sock:
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:8765\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 1024))
        assert _closed_within(sock, 5) is not None


def test_an_unparsable_request_answers_in_the_json_form(running: Running) -> None:
    """Before: uvicorn's plain-text "Invalid HTTP request received."."""
    with _connect(running.port) as sock:
        sock.sendall(b"NOT HTTP AT ALL\x00\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"]["code"] == "BAD_REQUEST"


def _settle(condition: Any, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


STALLED = 300


def test_a_read_answers_while_stalled_connections_are_held_past_the_cap(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """300 stalled connections against a cap of 64: the oldest idle ones give way, the read answers.

    Before, nothing bounded them (uvicorn held all 300: the bound below fails), and uvicorn's own
    cap, ``limit_concurrency=64``, answered the read 503 (checked by hand: it counts the stalled
    connections)."""
    caplog.set_level(logging.INFO)
    held = _stall(running.port, STALLED)
    try:
        _settle(lambda: running.connections() <= LIMITS.max_connections)
        status, body = _request(running.port, "POST", "/v1/read", b"{}")
        assert status == 200 and json.loads(body)["cardholder"]["name"] == "张三"
        assert running.connections() <= LIMITS.max_connections
        lines = [r.getMessage() for r in caplog.records if "refused (connections)" in r.getMessage()]
        assert len(lines) == 1, "evictions are rate-limited in the log: one line for the burst"
    finally:
        for sock in held:
            sock.close()


def test_the_event_websocket_survives_a_flood_and_a_read_still_answers(running: Running) -> None:
    """An open WebSocket is never evicted; the page keeps its events while stalled connections come."""
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{running.port}/v1/events", origin=OWN, open_timeout=10) as events:  # type: ignore[arg-type]
        assert json.loads(events.recv(timeout=10))["event"] == "hello"
        held = _stall(running.port, STALLED)
        try:
            running.app.state.service.hub.publish({"event": "probe"})
            assert json.loads(events.recv(timeout=10)) == {"event": "probe"}
            status, _ = _request(running.port, "GET", "/v1/status")
            assert status == 200
            # A page that (re)subscribes at the cap gets in too: a stalled connection gives way.
            url = f"ws://127.0.0.1:{running.port}/v1/events"
            with connect(url, origin=OWN, open_timeout=10) as again:  # type: ignore[arg-type]
                assert json.loads(again.recv(timeout=10))["event"] == "hello"
        finally:
            for sock in held:
                sock.close()


def test_a_read_answers_while_stalled_connections_are_held_under_the_cap() -> None:
    """With room for all of them (cap 1000) 300 stalled connections are all held, and a read still
    answers: the event loop is not starved by them."""
    port = _free_port()
    app = make_app(port=port)
    limits = Limits(header_timeout=30, body_timeout=30, max_connections=1000)
    with _serve(app, protocol_classes(limits, app.state.service.refusals), port) as running:
        held = _stall(running.port, STALLED)
        try:
            _settle(lambda: running.connections() >= STALLED)
            status, _ = _request(running.port, "POST", "/v1/read", b"{}")
            assert status == 200
            assert running.connections() >= STALLED, "none of them was closed"
        finally:
            for sock in held:
                sock.close()


# -- item 7: every request error in the JSON form; the log --------------------------------------------


@pytest.fixture
def page() -> Iterator[TestClient]:
    with TestClient(make_app(), base_url=BASE, client=LOOPBACK, headers={"Origin": OWN}) as client:
        yield client


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"pin": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "nested too deeply"),
        (b'{"allow_partial": ' + b"1" * 5000 + b"}", "not valid JSON"),  # int max_str_digits
        (b'{"pin": "\xff\xfe"}', "not UTF-8"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),  # a BOM is not JSON text either
        (b'{"allow_partial": NaN}', "not valid JSON"),
        (b'{"pin": "1", "pin": "2"}', "appears twice"),
        (b'{"pin": "\\ud800"}', "not valid text"),
        (b"[]", "must be a JSON object"),
    ],
)
def test_bad_bodies_answer_bad_request(page: TestClient, body: bytes, problem: str) -> None:
    """Before: RecursionError and the digit-limit ValueError were 500 tracebacks."""
    path = "/v1/read" if b"allow_partial" in body or body in (b"[]", b"\xef\xbb\xbf{}") else "/v1/verify"
    response = page.post(path, content=body, headers={"Content-Type": "application/json"})
    error = error_of(response)
    assert response.status_code == 400 and error["code"] == "BAD_REQUEST" and problem in error["message"]
    chinese = error["message_zh"].replace("JSON", "").replace("UTF-8", "")  # format names stay
    assert re.fullmatch(r"请求无效：[^A-Za-z]+。", chinese), error["message_zh"]


def test_unknown_paths_and_methods_answer_in_the_json_form(page: TestClient) -> None:
    """Before: Starlette's plain-text "Not Found" / "Method Not Allowed"."""
    assert error_of(page.get("/v1/nothing"))["code"] == "NOT_FOUND"
    wrong = page.get("/v1/read")
    assert error_of(wrong)["code"] == "METHOD_NOT_ALLOWED" and "POST" in wrong.headers["allow"]


def test_a_bug_answers_in_the_json_form() -> None:
    app = make_app()
    app.state.service.terminal.read = lambda **_: 1 / 0
    with TestClient(
        app, base_url=BASE, client=LOOPBACK, headers={"Origin": OWN}, raise_server_exceptions=False
    ) as client:
        response = client.post("/v1/read")
    assert response.status_code == 500 and error_of(response)["code"] == "INTERNAL"


def test_a_binary_frame_on_compat_is_closed_with_a_code_and_reason(running: Running) -> None:
    """Before: receive_text() raised KeyError and the socket was dropped (1011, no reason)."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{running.port}/v1/compat", origin=OWN, open_timeout=10) as bridge:  # type: ignore[arg-type]
        bridge.send(json.dumps({"function": "nope"}))
        assert json.loads(bridge.recv(timeout=10))["code"] == -13
        bridge.send(b"\x00\x01binary")
        with pytest.raises(ConnectionClosed) as closed:
            bridge.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    assert "JSON text" in closed.value.rcvd.reason


def test_binary_frames_on_events_are_ignored(page: TestClient) -> None:
    with page.websocket_connect("/v1/events") as events:
        assert events.receive_json()["event"] == "hello"
        events.send_bytes(b"\x00")
        events.send_text("still here")
        page.app.state.service.hub.publish({"event": "probe"})  # type: ignore[attr-defined]
        received = events.receive_json()
        # The monitor's initial report of the reader and its card is not ordered with this client's
        # subscription: skip it, and only it.  The socket still answers after the binary frame.
        while received.get("event") in ("reader_attached", "card_inserted"):
            received = events.receive_json()
        assert received == {"event": "probe"}


def test_compat_answers_deep_json_and_long_numbers_with_its_error_code(page: TestClient) -> None:
    """Before: RecursionError / ValueError escaped and dropped the bridge socket."""
    with page.websocket_connect("/v1/compat") as bridge:
        for text in ("[" * 100_000 + "]" * 100_000, '{"function": "iReadCardBas", "iType": ' + "9" * 5000 + "}"):
            bridge.send_text(text)
            answer = bridge.receive_json()
            assert answer["code"] == -13 and answer["output"] == ""
        bridge.send_text(json.dumps({"function": ["iReadCardBas"]}))
        assert bridge.receive_json()["function"] is None, "only a string function name is echoed"


def test_a_client_that_aborts_its_body_leaves_no_traceback(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    """Before: starlette's ClientDisconnect escaped the endpoint: "Exception in ASGI application"."""
    caplog.set_level(logging.INFO)
    with _connect(running.port) as sock:
        sock.sendall(b"POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1:8765\r\nContent-Length: 1000\r\n\r\n" + b'{"pin": ')
        time.sleep(0.2)  # the request task is waiting for the rest of the body
    _settle(lambda: any("refused (aborted)" in r.getMessage() for r in caplog.records))
    assert not [r for r in caplog.records if r.exc_info or "Exception in ASGI" in r.getMessage()]
    status, _ = _request(running.port, "GET", "/v1/status")
    assert status == 200


def test_clean_escapes_control_characters() -> None:
    assert clean("/v1/x\n2026-12-01 INFO forged\r\x1b[2J\u202e\x00") == (
        "/v1/x\\x0a2026-12-01 INFO forged\\x0d\\x1b[2J\\u202e\\x00"
    )
    assert clean("读卡 ok") == "读卡 ok" and clean("a\\x0a") == "a\\\\x0a"
    assert clean("x" * 1000) == "x" * 200 + "…"


def test_refused_requests_are_logged_escaped(caplog: pytest.LogCaptureFixture) -> None:
    """Before: the raw path (with its newline and ESC) went into the log line."""
    with TestClient(make_app(), base_url=BASE, client=LOOPBACK) as client:
        refused = client.get(
            "/v1/status%0A2026-12-01%20INFO%20granted%1B[2J", headers={"Origin": "https://evil\x1b.example"}
        )
    assert refused.status_code == 403
    lines = [r.getMessage() for r in caplog.records if r.name == "sscard.service"]
    assert lines and all("\n" not in line and "\x1b" not in line for line in lines), lines
    assert any("\\x0a2026-12-01 INFO granted\\x1b[2J" in line for line in lines)


def test_refusals_are_rate_limited_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    """Before: one warning per refused request."""
    now = [1000.0]
    app = make_app(token="s3cret")
    service = app.state.service
    service.refusals = RefusalLog(logging.getLogger("sscard.service"), interval=60, clock=lambda: now[0])
    with TestClient(app, base_url=BASE, client=LOOPBACK) as client:
        for _ in range(50):
            assert client.get("/v1/status", headers={"Origin": "https://evil.example"}).status_code == 403
            assert client.get("/v1/status").status_code == 401
        now[0] += 61
        client.get("/v1/status", headers={"Origin": "https://evil.example"})
    lines = [r.getMessage() for r in caplog.records if r.name == "sscard.service"]
    assert len([line for line in lines if "refused (origin)" in line]) == 2
    assert len([line for line in lines if "refused (token)" in line]) == 1
    assert "49 more refused" in [line for line in lines if "refused (origin)" in line][1]


# -- item 8: status codes and body types -------------------------------------------------------------


def _documented_statuses() -> dict[int, str]:
    """docs/service.md's "Errors" table: HTTP status → the row's text."""
    text = (ROOT / "docs" / "service.md").read_text(encoding="utf-8")
    section = text.split("### Errors", 1)[1].split("\n###", 1)[0]
    rows = re.findall(r"^\| (\d{3}) \| (.+) \|$", section, re.MULTILINE)
    assert rows, "the Errors table is missing"
    return {int(status): row for status, row in rows}


def _all_codes() -> set[str]:
    """Every error code there is (errors are defined in sscard.errors, sscard.tokens, the service)."""
    import sscard.tokens  # its TOKEN_* errors

    classes: list[type[sscard.errors.SscardError]] = [sscard.errors.SscardError]
    codes = set()
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if cls.code not in ("ERROR", ServiceError.code):
            codes.add(cls.code)
    return codes


def test_the_documented_status_of_every_code_is_the_one_sent() -> None:
    """Before: PIN_FORMAT was documented 409 and sent 400."""
    table = _documented_statuses()
    documented: dict[str, int] = {}
    for status, row in table.items():
        for code in re.findall(r"`([A-Z][A-Z_]+)`", row):
            assert code not in documented, f"{code} is in two rows"
            documented[code] = status
    unknown = set(documented) - _all_codes()
    assert not unknown, f"docs/service.md names codes no error has: {unknown}"
    for code, status in documented.items():
        assert http_status(code) == status, f"docs say {code} is {status}, the service sends {http_status(code)}"
    for code, status in HTTP_STATUS.items():
        assert documented.get(code) == status, f"{code} ({status}) is not in its row of docs/service.md"
    assert "every other code" in table[DEFAULT_STATUS]
    missing = {code for code in _all_codes() if code not in documented and http_status(code) != DEFAULT_STATUS}
    assert not missing


def test_statuses_sent_for_real_requests(page: TestClient) -> None:
    pin_format = page.post("/v1/verify", json={"pin": "12ab"})
    assert pin_format.status_code == 400 and error_of(pin_format)["code"] == "PIN_FORMAT"
    assert error_of(page.post("/v1/sign-out"))["code"] == "NOT_SIGNED_IN"
    too_large = page.post("/v1/verify", content=b"x" * 70_000, headers={"Content-Type": "application/json"})
    assert error_of(too_large)["code"] == "REQUEST_TOO_LARGE"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/read", {"allow_partial": "false"}),
        ("/v1/read", {"allow_partial": 0}),
        ("/v1/read", {"allow_partial": 1}),
        ("/v1/read", {"allow_partail": True}),
        ("/v1/verify", {"pin": 123456}),
        ("/v1/verify", {"pin": ["123456"]}),
        ("/v1/sign-in", {"pin": True}),
        ("/v1/token/verify", {"token": {"a": 1}}),
        ("/v1/token/verify", {"token": "x", "terminal_id": 7}),
    ],
)
def test_wrong_body_types_are_refused(page: TestClient, path: str, body: dict[str, Any]) -> None:
    """Before: ``"allow_partial": "false"`` was true (``bool("false")``), unknown fields were ignored."""
    response = page.post(path, json=body)
    assert response.status_code == 400 and error_of(response)["code"] == "BAD_REQUEST", response.text


def test_allow_partial_booleans_still_work() -> None:
    config = Config(reader="sim:v3", key_service="psam", sam_reader="sim:psam")
    terminal = Terminal(SimReader(SimulatedCard(load_persona("v3")), "sim:v3"), config=config)
    app = create_app(config, terminal, port=8765)
    with TestClient(app, base_url=BASE, client=LOOPBACK, headers={"Origin": OWN}) as client:
        assert client.post("/v1/read", json={"allow_partial": False}).status_code in (200, 409)
        assert client.post("/v1/read", json={"allow_partial": True}).status_code == 200
        assert client.post("/v1/read", json={"allow_partial": None}).status_code in (200, 409)


def test_the_unit_bounds_files_memory_and_tasks() -> None:
    """Before: no LimitNOFILE (systemd's soft 1024: EMFILE under 2,000 connections), no MemoryMax/TasksMax."""
    unit = (ROOT / "src" / "sscard" / "service" / "sscard.service").read_text(encoding="utf-8")
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert int(settings["LimitNOFILE"]) >= Config().service_max_connections + 256 + 2000, "room for a flood"
    assert settings["MemoryMax"].endswith("M") and int(settings["MemoryMax"][:-1]) >= 128
    assert int(settings["TasksMax"]) >= 40 + 7, "anyio's 40 worker threads and the service's own"
