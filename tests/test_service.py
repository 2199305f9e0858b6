"""The local kiosk service (issue 6): endpoints, the JSON contract, security, the compat WebSocket.

In process through Starlette's test client with the simulated card (``sim:``); the browser test
(tests/test_browser.py) drives the same service through pcscd + vpcd in a real browser.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from sscard.config import Config
from sscard.national import parse_ireadcardbas
from sscard.service.app import MAX_BODY, create_app
from sscard.service.openapi import document
from sscard.sim import SimulatedCard, load_persona
from sscard.terminal import Terminal
from sscard.transports.sim import SimReader

OWN = "http://127.0.0.1:8765"
#: The client address of in-process requests: a loopback client, as a kiosk page is.
LOOPBACK = ("127.0.0.1", 50000)
FOREIGN = "https://evil.example"


def make_client(
    persona: str = "typical", config: Config | None = None, **kwargs: object
) -> tuple[TestClient, SimReader, Terminal]:
    config = config or Config(reader=f"sim:{persona}", terminal_id="410100813475", device_id="MT170701000006")
    reader = SimReader(SimulatedCard(load_persona(persona)), f"sim:{persona}")
    terminal = Terminal(reader, config=config)
    kwargs.setdefault("allowed_hosts", ["testserver", "127.0.0.1:8765"])
    app = create_app(config, terminal, **kwargs)  # type: ignore[arg-type]
    return TestClient(app, headers={"Origin": OWN}, client=LOOPBACK), reader, terminal


@pytest.fixture
def client() -> Iterator[TestClient]:
    test_client, _, _ = make_client()
    with test_client:
        yield test_client


def test_read_answers_with_exactly_the_cli_contract(client: TestClient) -> None:
    from sscard.cli import main

    response = client.post("/v1/read", json={})
    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"kind", "card", "cardholder", "warnings"} and data["kind"] == "ssc"
    import io

    out = io.StringIO()
    assert main(["read", "--reader", "sim:typical", "--json"], out=out, err=io.StringIO()) == 0
    assert data == json.loads(out.getvalue())


def test_errors_use_the_stable_json_form() -> None:
    test_client, _, _ = make_client("not_ssc")
    with test_client:
        response = test_client.post("/v1/read")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "NOT_SSC" and error["message"] and error["message_zh"]


def test_status_session_verify_and_sign_in_flow(client: TestClient) -> None:
    assert client.get("/v1/status").json()["session"] is None
    wrong = client.post("/v1/verify", json={"pin": "654321"}).json()
    assert wrong == {"state": "incorrect", "tries_left": 2}
    bad = client.post("/v1/sign-in", json={"pin": "654321"})
    assert bad.status_code == 409 and bad.json()["error"]["code"] == "PIN_INCORRECT"
    assert bad.json()["error"]["tries_left"] == 1
    assert "654321" not in bad.text
    signed = client.post("/v1/sign-in", json={"pin": "123456"})
    assert signed.status_code == 200
    session = signed.json()["session"]
    assert session["name"] == "张三" and session["method"] == "card+pin"
    assert "123456" not in signed.text
    assert client.get("/v1/session").json()["session"]["id"] == session["id"]
    again = client.post("/v1/sign-in", json={"pin": "123456"})
    assert again.json()["error"]["code"] == "SESSION_ACTIVE"
    assert client.post("/v1/sign-out").json()["session"]["id"] == session["id"]
    assert client.get("/v1/session").json()["session"] is None
    assert client.post("/v1/sign-out").json()["error"]["code"] == "NOT_SIGNED_IN"


def test_photo_endpoint() -> None:
    config = Config(reader="sim:v3", key_service="psam", sam_reader="sim:psam")
    test_client, _, _ = make_client("v3", config)
    with test_client:
        photo = test_client.get("/v1/photo")
        as_json = test_client.get("/v1/photo?format=json").json()
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert photo.content.startswith(b"\xff\xd8") and as_json["bytes"] == len(photo.content)


def test_a_foreign_origin_is_refused_for_http_and_websockets(client: TestClient) -> None:
    post = client.post("/v1/read", headers={"Origin": FOREIGN})
    assert post.status_code == 403 and post.json()["error"]["code"] == "ORIGIN_REFUSED"
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/v1/events", headers={"Origin": FOREIGN}),
    ):
        pass
    assert closed.value.code == 4403
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/v1/compat", headers={"Origin": FOREIGN}):
        pass


def test_dns_rebinding_and_cross_site_subresources_are_refused(client: TestClient) -> None:
    """A rebound name is same-origin to the browser (no Origin): the Host header gives it away.
    An <img> on another site sends no Origin either, but says Sec-Fetch-Site: cross-site."""
    rebound = client.get("/v1/session", headers={"Host": "attacker.example:8765", "Origin": ""})
    assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "ORIGIN_REFUSED"
    bare = TestClient(client.app, client=LOOPBACK)
    image = bare.get("/v1/photo", headers={"Sec-Fetch-Site": "cross-site"})
    assert image.status_code == 403
    assert bare.get("/v1/status", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_cors_for_allowed_origins_only() -> None:
    config = Config(reader="sim:typical", service_origins=("https://kiosk.hospital.example",))
    test_client, _, _ = make_client(config=config)
    with test_client:
        preflight = test_client.options(
            "/v1/read",
            headers={
                "Origin": "https://kiosk.hospital.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
                "Access-Control-Request-Private-Network": "true",
            },
        )
        answer = test_client.post("/v1/read", headers={"Origin": "https://kiosk.hospital.example"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://kiosk.hospital.example"
    assert preflight.headers["access-control-allow-private-network"] == "true"
    assert answer.headers["access-control-allow-origin"] == "https://kiosk.hospital.example"
    assert answer.headers["cache-control"] == "no-store"


def test_the_configured_origins_are_allowed() -> None:
    config = Config(reader="sim:typical", service_origins=("https://kiosk.hospital.example",))
    test_client, _, _ = make_client(config=config)
    with test_client:
        ok = test_client.get("/v1/status", headers={"Origin": "https://kiosk.hospital.example"})
        own = test_client.get("/v1/status", headers={"Origin": OWN})
    assert ok.status_code == 200 and own.status_code == 403, "the allow-list replaces the default"


def test_bearer_token_for_non_browser_clients() -> None:
    config = Config(reader="sim:typical", service_token="s3cret-token")
    test_client, _, _ = make_client(config=config)
    with test_client:
        bare = TestClient(test_client.app, client=LOOPBACK)  # no Origin: not a browser
        assert bare.get("/v1/status").json()["error"]["code"] == "UNAUTHORIZED"
        assert bare.get("/v1/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert bare.get("/v1/status", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert test_client.get("/v1/status").status_code == 200, "allowed browser origins need no token"


def test_request_size_and_bad_bodies(client: TestClient) -> None:
    big = client.post("/v1/verify", content=b"{" + b" " * (MAX_BODY + 10) + b"}")
    assert big.status_code == 413 and big.json()["error"]["code"] == "REQUEST_TOO_LARGE"
    not_json = client.post("/v1/verify", content=b"pin=123456")
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "BAD_REQUEST"
    assert "123456" not in not_json.text
    not_string = client.post("/v1/verify", json={"pin": 123456})
    assert not_string.json()["error"]["code"] == "BAD_REQUEST"


def test_pins_are_never_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        client.post("/v1/verify", json={"pin": "654321"})
        client.post("/v1/sign-in", json={"pin": "123456"})
    assert "654321" not in caplog.text and "123456" not in caplog.text


def test_one_card_operation_at_a_time_then_busy() -> None:
    config = Config(reader="sim:typical", service_queue_timeout=0.2)
    test_client, _, terminal = make_client(config=config)
    gate, entered = threading.Event(), threading.Event()
    original = terminal.read

    def slow_read(**kwargs: object) -> object:
        entered.set()
        gate.wait(5)
        return original(**kwargs)  # type: ignore[arg-type]

    terminal.read = slow_read  # type: ignore[method-assign]
    results: list[int] = []
    with test_client:
        first = threading.Thread(target=lambda: results.append(test_client.post("/v1/read").status_code))
        first.start()
        assert entered.wait(5)
        busy = test_client.post("/v1/read")
        gate.set()
        first.join(10)
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "SERVICE_BUSY"
    assert results == [200]


def test_event_stream_reports_session_and_card_events() -> None:
    test_client, reader, _ = make_client()
    with test_client, test_client.websocket_connect("/v1/events") as events:
        assert events.receive_json()["event"] == "hello"
        assert test_client.post("/v1/sign-in", json={"pin": "123456"}).status_code == 200
        # The monitor's initial report (the reader, the card in it) may go out before this client
        # subscribed or after: the two are not ordered, so skip it, and only it.
        started = events.receive_json()
        while started["event"] in ("reader_attached", "card_inserted"):
            started = events.receive_json()
        assert started["event"] == "session_started" and started["method"] == "card+pin"
        reader.remove()
        while True:
            message = events.receive_json()
            if message["event"] == "session_ended":
                break
    assert message["reason"] == "card_removed"


def test_compat_endpoint_speaks_the_national_interface(client: TestClient) -> None:
    with client.websocket_connect("/v1/compat") as compat:
        compat.send_text(json.dumps({"function": "iReadCardBas", "iType": 3}))
        answer = compat.receive_json()
        assert answer["code"] == 0
        fields = parse_ireadcardbas(answer["output"])
        assert fields["姓名"] == "张三" and fields["终端机编号"] == "410100813475"
        compat.send_text(json.dumps({"function": "iVerifyPIN", "iType": 1, "pin": "654321"}))
        wrong = compat.receive_json()
        assert wrong["code"] == -51 and wrong["tries_left"] == 2 and "654321" not in json.dumps(wrong)
        compat.send_text(json.dumps({"function": "iVerifyPIN", "pin": "123456"}))
        assert compat.receive_json()["code"] == 0
        compat.send_text(json.dumps({"function": "iDoDebit"}))
        assert compat.receive_json()["code"] == -13
        compat.send_text("not json")
        assert compat.receive_json()["code"] == -13


def test_compat_hsm_steps() -> None:
    from sscard.psam.hsm import HsmStep1
    from test_auth import hsm

    test_client, _, _ = make_client("v3", Config(reader="sim:v3", key_service="hsm", terminal_id="410100813475"))
    with test_client, test_client.websocket_connect("/v1/compat") as compat:
        compat.send_text(json.dumps({"function": "iReadCardBas_HSM_Step1"}))
        step1 = compat.receive_json()
        assert step1["code"] == 0
        answer = hsm(HsmStep1.parse(step1["output"]))
        compat.send_text(json.dumps({"function": "iReadCardBas_HSM_Step2", "step1": step1["output"], "answer": answer}))
        done = compat.receive_json()
        assert done["code"] == 0 and parse_ireadcardbas(done["output"])["姓名"] == "次仁·旺堆"
        compat.send_text(json.dumps({"function": "iReadCardBas_HSM_Step2", "step1": step1["output"], "answer": "x"}))
        assert compat.receive_json()["code"] == -25


def test_openapi_document_is_served_and_checked_in(client: TestClient) -> None:
    served = client.get("/v1/openapi.json").json()
    checked_in = json.loads((Path(__file__).resolve().parents[1] / "docs" / "openapi.json").read_text(encoding="utf-8"))
    assert served == document() == checked_in, "regenerate docs/openapi.json from sscard.service.openapi"
    routes = {route.path for route in client.app.routes}  # type: ignore[attr-defined]
    assert {p for p in served["paths"]} <= routes


def test_the_page_is_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_serve_refuses_a_public_address_without_opt_in() -> None:
    import io

    from sscard.cli import main

    err = io.StringIO()
    assert main(["serve", "--host", "0.0.0.0", "--reader", "sim:typical"], out=io.StringIO(), err=err) == 2
    assert "--allow-remote" in err.getvalue()


def test_systemd_unit_is_printed_for_this_installation() -> None:
    import io

    from sscard.cli import main

    out = io.StringIO()
    assert main(["serve", "--systemd-unit"], out=out, err=io.StringIO()) == 0
    unit = out.getvalue()
    assert "[Service]" in unit and "After=" in unit and "pcscd" in unit and "User=" in unit
    assert "ExecStart=" in unit and " serve" in unit


def test_readers_of_an_in_process_terminal() -> None:
    test_client, reader, _ = make_client()
    with test_client:
        present = test_client.get("/v1/readers").json()["readers"]
        reader.remove()
        empty = test_client.get("/v1/readers").json()["readers"]
    assert present == [{"name": "sim:typical", "card_present": True, "kind": "contact", "preference": 1}]
    assert empty[0]["card_present"] is False
