"""``POST /v1/read`` with ``"app"`` (issue 12): the application's JSON, the enum checked by
``FIELDS`` (a bad value is the JSON 400 error), ``/v1/compat``'s iReadCardBas reading the SSC only;
then through the real service process over pcscd + vpcd (``pcscd`` marker, under the lock)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support import pcsc_env
from test_service import make_client
from test_service_e2e import _post, service

__all__ = ["service"]  # the fixture, imported for the end-to-end test below


@pytest.mark.parametrize(
    ("persona", "body", "kind"),
    [
        ("bank_only", {}, "bank"),
        ("health", {}, "health"),
        ("v3_bank", {"app": "bank"}, "bank"),
        ("v3_bank", {"app": "ssc", "allow_partial": True}, "ssc"),
        ("health", {"app": "health"}, "health"),
        ("typical", {"app": None}, "ssc"),
    ],
)
def test_read_takes_an_app_and_answers_its_json(persona: str, body: dict[str, Any], kind: str) -> None:
    test_client, _, terminal = make_client(persona)
    with test_client:
        response = test_client.post("/v1/read", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["kind"] == kind
    expected = terminal.read(app=body.get("app"), require_cardholder=not body.get("allow_partial")).to_json()
    assert data == expected
    if kind == "bank":
        assert "*********" in data["pan"]


@pytest.mark.parametrize("value", ["library", "", "BANK", 1, True, ["bank"], {"app": "bank"}])
def test_a_bad_app_is_the_json_400_error(value: object) -> None:
    test_client, reader, _ = make_client("v3_bank")
    with test_client:
        response = test_client.post("/v1/read", json={"app": value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BAD_REQUEST"
    assert "'app' must be one of ssc, health, bank" in error["message"] and error["message_zh"]
    assert reader.card.command_log == type(reader.card.command_log)()  # the card was never touched


def test_app_where_the_card_lacks_it_is_not_ssc_naming_it() -> None:
    test_client, _, _ = make_client("health")
    with test_client:
        response = test_client.post("/v1/read", json={"app": "bank"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "NOT_SSC" and response.json()["error"]["applications"] == ["bank"]


def test_openapi_names_the_app_enum_and_the_three_results() -> None:
    from sscard.service.openapi import document

    doc = document()
    read = doc["paths"]["/v1/read"]["post"]
    body = read["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["app"] == {"type": "string", "enum": ["ssc", "health", "bank"]}
    refs = [one["$ref"] for one in read["responses"]["200"]["content"]["application/json"]["schema"]["oneOf"]]
    assert refs == ["#/components/schemas/CardRead", "#/components/schemas/BankCard", "#/components/schemas/HealthCard"]
    schemas = doc["components"]["schemas"]
    assert [schemas[name]["properties"]["kind"] for name in ("CardRead", "BankCard", "HealthCard")] == [
        {"const": "ssc"},
        {"const": "bank"},
        {"const": "health"},
    ]


@pytest.mark.parametrize("persona", ["bank_only", "health"])
def test_compat_ireadcardbas_reads_the_ssc_only(persona: str) -> None:
    test_client, reader, _ = make_client(persona)
    with test_client, test_client.websocket_connect("/v1/compat") as socket:
        socket.send_text(json.dumps({"function": "iReadCardBas", "iType": 3}))
        answer = socket.receive_json()
    assert answer["function"] == "iReadCardBas" and answer["code"] == -1 and answer["output"] == ""
    assert answer["message"] == "此卡不是社会保障卡。"
    # Only the SSC was asked: SELECT SSSE, and no SELECT DDF1 nor the PPSE.
    assert [bytes(header[1:2]) for header in reader.card.command_log] == [b"\xa4"]


@pytest.mark.pcscd
def test_read_bank_over_http_through_pcscd(vpcd_card: pcsc_env.InsertCard, service: tuple[int, Any]) -> None:
    port, _process = service
    link = vpcd_card("v3_bank")
    status, data = _post(port, "/v1/read", {"app": "bank"})
    assert status == 200, data
    assert data["kind"] == "bank" and data["pan"] == "621799*********2347"
    assert all(header[1] != 0x20 for header in link.card.command_log)  # no VERIFY
    status, data = _post(port, "/v1/read", {"app": "health"})
    assert status == 409 and data["error"]["code"] == "NOT_SSC"
    status, data = _post(port, "/v1/read", {"app": "nope"})
    assert status == 400 and data["error"]["code"] == "BAD_REQUEST"
