"""E-voucher resolution (issue 14 item 2): ``ec.query`` against a simulated platform.

Real HTTP servers on 127.0.0.1 (the standard library's, one per test, in a thread), spoken to by
:class:`sscard.medical.HttpEcResolver` over real sockets: a platform that answers, one that is slow
(the timeout), one that trickles bytes (the one deadline), one that answers garbage, one that
refuses, one that hangs up, none at all; and an HTTPS one with a certificate made here.  Nothing of
the client is mocked.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sscard.config import Config
from sscard.errors import ConfigError, EcBadAnswer, EcRefused, EcUnreachable
from sscard.medical import EcRequest, HttpEcResolver, decode_answer, resolver_from_config
from support.ec_platform import EVOUCHER, PERSON, Platform, answer, send, serve


@pytest.fixture
def platform() -> Iterator[Platform]:
    """A platform that resolves every code to PERSON."""
    yield from serve(Platform(lambda handler, _body: send(handler, answer(data=PERSON))))


def serving(behave: Callable[[http.server.BaseHTTPRequestHandler, bytes], None]) -> Iterator[Platform]:
    return serve(Platform(behave))


def test_a_code_is_resolved_and_the_request_is_ec_query(platform: Platform) -> None:
    resolver = HttpEcResolver(platform.url, timeout=5, org_id="H41010000001", operator_id="op7", device_type="kiosk")
    person = resolver.resolve(EVOUCHER)
    assert (person.ec_token, person.id_no, person.id_type, person.user_name) == (
        PERSON["ecToken"],
        PERSON["idNo"],
        "01",
        "张三",
    )
    assert person.insu_org == "110100" and person.data["ecIndexNo"] == "idx-0001"
    assert "张三" not in repr(person) and PERSON["idNo"] not in repr(person) and PERSON["ecToken"] not in repr(person)
    [(headers, body)] = platform.requests
    assert headers["Content-Type"].startswith("application/json")
    sent = json.loads(body)
    assert sent["transType"] == "ec.query" and sent["orgId"] == "H41010000001"
    assert sent["data"]["orgId"] == "H41010000001" and sent["data"]["businessType"] == "01101"
    assert sent["data"]["operatorId"] == "op7" and sent["data"]["deviceType"] == "kiosk"
    assert sent["data"]["ecQrCode"] == EVOUCHER  # the unconfirmed field name of medical/data/platform.toml


def test_the_resolver_comes_from_the_configuration(platform: Platform) -> None:
    assert resolver_from_config(Config()) is None  # no ec_url: codes stay unresolved
    resolver = resolver_from_config(
        Config(medical_ec_url=platform.url, medical_org_id="H1", medical_business_type="01301", medical_timeout=3)
    )
    assert resolver is not None and resolver.timeout == 3
    resolver.resolve(EVOUCHER)
    sent = json.loads(platform.requests[0][1])
    assert sent["orgId"] == "H1" and sent["data"]["businessType"] == "01301"


def test_a_refusal_carries_the_platforms_code_and_message() -> None:
    for platform in serving(lambda handler, _body: send(handler, answer(code=1001, message="电子凭证已失效"))):
        with pytest.raises(EcRefused) as caught:
            HttpEcResolver(platform.url, timeout=5).resolve(EVOUCHER)
    error = caught.value
    assert error.code == "EC_REFUSED" and error.to_dict()["platform_code"] == "1001"
    assert error.to_dict()["platform_message"] == "电子凭证已失效"
    assert "电子凭证已失效" in error.message_zh and "1001" in error.message
    assert error.row.exit_code == 12


def test_a_refusal_in_english_keeps_the_chinese_message_chinese() -> None:
    with pytest.raises(EcRefused) as caught:
        decode_answer(answer(code="E42", message="token expired"))
    error = caught.value
    assert "token expired" in error.message and "token" not in error.message_zh


def test_a_refusal_with_an_http_error_status_is_still_the_platforms_refusal() -> None:
    for platform in serving(lambda handler, _body: send(handler, answer(code=401, message="签名错误"), status=401)):
        with pytest.raises(EcRefused) as caught:
            HttpEcResolver(platform.url, timeout=5).resolve(EVOUCHER)
    assert caught.value.to_dict()["platform_code"] == "401"


GARBAGE = [
    (b"<html>502 Bad Gateway</html>", "not JSON"),
    (b'{"message": "ok"}', "no code"),
    (b"[0]", "no code"),
    (answer(data="{not json"), "data is not JSON text"),
    (answer(data='["a"]'), "data is not a JSON object"),
    (b'{"code": 0, "message": "ok"}', "data is not a JSON object"),
    (answer(data={**PERSON, "ecToken": ""}), "no ecToken"),
    (answer(data={k: v for k, v in PERSON.items() if k != "idNo"}), "no idNo or userName"),
    (answer(data={**PERSON, "userName": ["张三"]}), "not text"),
    (b'{"code": true}', "neither a number nor text"),
    (b"\xff\xfe garbage", "not JSON"),
]


@pytest.mark.parametrize(("body", "problem"), GARBAGE, ids=[problem for _, problem in GARBAGE])
def test_garbage_is_a_bad_answer(body: bytes, problem: str) -> None:
    for platform in serving(lambda handler, _body: send(handler, body)):
        with pytest.raises(EcBadAnswer) as caught:
            HttpEcResolver(platform.url, timeout=5).resolve(EVOUCHER)
    assert problem in caught.value.message and caught.value.row.http_status == 502
    assert len(platform.requests) == 1


def test_an_http_error_without_a_platform_answer_is_a_bad_answer() -> None:
    for platform in serving(lambda handler, _body: send(handler, b"Internal Server Error", status=500)):
        with pytest.raises(EcBadAnswer, match="HTTP 500"):
            HttpEcResolver(platform.url, timeout=5).resolve(EVOUCHER)


def test_an_answer_over_the_limit_is_a_bad_answer_and_not_read_to_the_end() -> None:
    for platform in serving(lambda handler, _body: send(handler, b" " * 200_000 + answer(data=PERSON))):
        with pytest.raises(EcBadAnswer, match="over 65536 bytes"):
            HttpEcResolver(platform.url, timeout=5, max_answer=65536).resolve(EVOUCHER)


def test_data_already_an_object_is_accepted() -> None:
    body = json.dumps({"code": "0", "message": "成功", "data": PERSON}, ensure_ascii=False).encode()
    assert decode_answer(body).ec_token == PERSON["ecToken"]


def test_a_slow_platform_times_out_once_and_is_not_asked_again() -> None:
    release = threading.Event()

    def slow(handler: http.server.BaseHTTPRequestHandler, _body: bytes) -> None:
        release.wait(5)
        send(handler, answer(data=PERSON))

    for platform in serving(slow):
        started = time.monotonic()
        with pytest.raises(EcUnreachable) as caught:
            HttpEcResolver(platform.url, timeout=0.5).resolve(EVOUCHER)
        elapsed = time.monotonic() - started
        release.set()
    assert 0.4 < elapsed < 4.0  # the timeout, not the platform's 5 s
    assert caught.value.to_dict()["sent"] is True  # it may have been processed: never resent
    assert "0.5 s" in caught.value.message and caught.value.retriable
    assert len(platform.requests) == 1


def test_a_platform_that_trickles_bytes_is_cut_off_at_the_one_deadline() -> None:
    """Every byte comes well within a per-read timeout; the whole answer does not come in time."""
    stop = threading.Event()

    def trickle(handler: http.server.BaseHTTPRequestHandler, _body: bytes) -> None:
        body = answer(data=PERSON)
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for byte in body:
            if stop.wait(0.1):
                return
            try:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            except OSError:
                return

    for platform in serving(trickle):
        started = time.monotonic()
        with pytest.raises(EcUnreachable) as caught:
            HttpEcResolver(platform.url, timeout=0.8).resolve(EVOUCHER)
        elapsed = time.monotonic() - started
        stop.set()
    assert elapsed < 4.0 and caught.value.to_dict()["sent"] is True  # the whole answer would take ~20 s


def test_no_platform_is_unreachable_and_nothing_was_sent() -> None:
    for platform in serving(lambda handler, _body: None):
        url = platform.url
    with pytest.raises(EcUnreachable) as caught:  # the server is gone: connection refused
        HttpEcResolver(url, timeout=2).resolve(EVOUCHER)
    assert caught.value.to_dict()["sent"] is False and "connection failed" in caught.value.message
    assert caught.value.row.http_status == 502 and caught.value.row.exit_code == 12


def test_a_platform_that_hangs_up_is_unreachable_after_sending() -> None:
    def hang_up(handler: http.server.BaseHTTPRequestHandler, _body: bytes) -> None:
        handler.close_connection = True
        handler.connection.shutdown(2)

    for platform in serving(hang_up):
        with pytest.raises(EcUnreachable) as caught:
            HttpEcResolver(platform.url, timeout=2).resolve(EVOUCHER)
    assert caught.value.to_dict()["sent"] is True and len(platform.requests) == 1


def test_plain_http_is_refused_for_a_remote_host() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        HttpEcResolver("http://ec.example.com/ec", timeout=1)
    with pytest.raises(ConfigError, match="https"):
        HttpEcResolver("ftp://ec.example.com/ec", timeout=1)
    HttpEcResolver("https://ec.example.com/ec", timeout=1)  # accepted (not contacted)
    HttpEcResolver("http://localhost:9/ec", timeout=1)
    HttpEcResolver("http://10.1.2.3:8080/ec", timeout=1, allow_http=True)  # a 前置机 on the LAN, asked for
    with pytest.raises(ConfigError, match="allow_http"):
        resolver_from_config(Config(medical_ec_url="http://10.1.2.3:8080/ec"))
    assert resolver_from_config(Config(medical_ec_url="http://10.1.2.3:8080/ec", medical_allow_http=True))


def test_the_signer_sees_the_request_and_its_changes_are_sent(platform: Platform) -> None:
    seen: list[EcRequest] = []

    class HeaderSigner:
        def sign(self, request: EcRequest) -> EcRequest:
            seen.append(request)
            return replace(request, headers={**request.headers, "x-sim-signature": "sig-of-body"})

    HttpEcResolver(platform.url, timeout=5, signer=HeaderSigner()).resolve(EVOUCHER)
    [(headers, body)] = platform.requests
    assert headers["x-sim-signature"] == "sig-of-body"
    assert seen[0].body == body and seen[0].url == platform.url


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sim-platform")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "platform.pem", tmp_path / "platform.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_with_the_platforms_certificate_and_without_it(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    for platform in serve(Platform(lambda handler, _body: send(handler, answer(data=PERSON))), server_context):
        trusted = ssl.create_default_context(cafile=str(cert))
        assert HttpEcResolver(platform.url, timeout=5, ssl_context=trusted).resolve(EVOUCHER).user_name == "张三"
        with pytest.raises(EcUnreachable, match="TLS") as caught:  # the system store does not know it
            HttpEcResolver(platform.url, timeout=5).resolve(EVOUCHER)
        assert caught.value.to_dict()["sent"] is False
