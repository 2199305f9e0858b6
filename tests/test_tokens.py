"""Session tokens (docs/tokens.md): round trips, every rejection with its own error, keys and files."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sscard.errors import ConfigError, SscardError, all_error_classes
from sscard.tokens import (
    DEFAULT_LEEWAY,
    MAX_FIELD_LENGTH,
    METHODS,
    TOKEN_ERRORS,
    SessionClaims,
    TokenExpired,
    TokenInvalid,
    TokenKeyError,
    TokenMalformed,
    TokenNotYetValid,
    TokenRejected,
    TokenWrongTerminal,
    claims_for,
    generate_terminal_key,
    issue_token,
    key_id,
    key_ring,
    load_private_key,
    load_public_key,
    verify_token,
    write_terminal_key,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "tokens.md"
TERMINAL = "410100813475"
OTHER_TERMINAL = "410100813476"
# Distinctive personal data: the PII test looks for these strings in every error.
SSN = "11010119810101003X"
NAME = "欧阳娜娜测试"
CARD_NUMBER = "Z98765432"
CARD_ID = "110100D156000005F00D00000000BEEF"
T0 = 1_800_000_000


def claims(**changes: Any) -> SessionClaims:
    values: dict[str, Any] = {
        "session_id": "sess-0001",
        "terminal_id": TERMINAL,
        "ssn": SSN,
        "name": NAME,
        "card_number": CARD_NUMBER,
        "card_id": CARD_ID,
        "method": "card+pin",
        "issued_at": T0,
        "expires_at": T0 + 300,
    }
    values.update(changes)
    return SessionClaims(**values)


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def other_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def token(key: Ed25519PrivateKey) -> str:
    return issue_token(claims(), key)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_raw(payload: bytes | dict[str, Any], key: Ed25519PrivateKey, prefix: str = "sst1") -> str:
    """A token built by hand from the documented format, for payloads issue_token would refuse."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{prefix}.{b64(raw)}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


def payload_of(token: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(unb64(token.split(".")[1]))
    return result


def with_payload(token: str, payload: dict[str, Any]) -> str:
    """``token`` with its payload replaced and its signature kept: what an attacker can produce."""
    prefix, _, signature = token.split(".")
    return f"{prefix}.{b64(json.dumps(payload, ensure_ascii=False).encode())}.{signature}"


# --- round trip -------------------------------------------------------------------------------------


def test_round_trip(key: Ed25519PrivateKey, token: str) -> None:
    verified = verify_token(token, key.public_key(), now=T0 + 10)
    assert verified.key_id == key_id(key.public_key())
    assert dataclasses.replace(verified, key_id=None) == claims()
    assert token.startswith("sst1.") and token.count(".") == 2
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token)


def test_the_payload_is_canonical_json_with_every_member(key: Ed25519PrivateKey, token: str) -> None:
    raw = unb64(token.split(".")[1])
    payload = json.loads(raw)
    assert raw == json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert payload == {
        "v": 1,
        "sid": "sess-0001",
        "iss": TERMINAL,
        "sub": SSN,
        "name": NAME,
        "card_number": CARD_NUMBER,
        "card_id": CARD_ID,
        "method": "card+pin",
        "iat": T0,
        "exp": T0 + 300,
        "kid": key_id(key.public_key()),
    }


def test_tokens_are_deterministic(key: Ed25519PrivateKey, token: str) -> None:
    assert issue_token(claims(), key) == token


def test_the_signature_covers_the_version_prefix(key: Ed25519PrivateKey, token: str) -> None:
    signing_input = token.rpartition(".")[0].encode("ascii")
    key.public_key().verify(unb64(token.split(".")[2]), signing_input)
    with pytest.raises(InvalidSignature):
        key.public_key().verify(unb64(token.split(".")[2]), unb64(token.split(".")[1]))


def test_create_fills_times_and_a_random_session_id() -> None:
    made = SessionClaims.create(
        terminal_id=TERMINAL,
        ssn=SSN,
        name=NAME,
        card_number=CARD_NUMBER,
        card_id=CARD_ID,
        method="card",
        ttl=300,
        now=T0 + 0.9,
    )
    assert (made.issued_at, made.expires_at) == (T0, T0 + 300)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", made.session_id)
    assert SessionClaims.create(**_create_args()).session_id != SessionClaims.create(**_create_args()).session_id
    assert SessionClaims.create(**_create_args(), session_id="mine").session_id == "mine"
    with pytest.raises(ValueError, match="ttl"):
        SessionClaims.create(**{**_create_args(), "ttl": 0})


def _create_args() -> dict[str, Any]:
    return {
        "terminal_id": TERMINAL,
        "ssn": SSN,
        "name": NAME,
        "card_number": CARD_NUMBER,
        "card_id": CARD_ID,
        "method": "card",
        "ttl": 60,
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"expires_at": T0}, "exp"),
        ({"expires_at": T0 - 1}, "exp"),
        ({"issued_at": -1}, "iat"),
        ({"issued_at": True}, "iat"),
        ({"expires_at": float(T0 + 300)}, "exp"),
        ({"card_id": CARD_ID.lower()}, "card_id"),
        ({"card_id": CARD_ID[:-1]}, "card_id"),
        ({"method": "password"}, "method"),
        ({"session_id": ""}, "sid"),
        ({"terminal_id": ""}, "iss"),
        ({"ssn": ""}, "sub"),
        ({"name": "x" * (MAX_FIELD_LENGTH + 1)}, "name"),
        ({"name": "张\n三"}, "name"),
        ({"card_number": 12345}, "card_number"),
        ({"key_id": "XYZ"}, "kid"),
    ],
)
def test_claims_are_checked_on_construction(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"'{field}'") as caught:
        claims(**changes)
    assert SSN not in str(caught.value) and NAME not in str(caught.value)


def test_an_empty_name_is_allowed(key: Ed25519PrivateKey) -> None:
    verified = verify_token(issue_token(claims(name=""), key), key.public_key(), now=T0)
    assert verified.name == ""


def test_issue_refuses_a_kid_of_another_key(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="another key"):
        issue_token(claims(key_id=key_id(other_key.public_key())), key)
    assert issue_token(claims(key_id=key_id(key.public_key())), key) == issue_token(claims(), key)


def _session(**changes: Any) -> Any:
    from sscard.session import Method, Session

    start = dt.datetime.fromtimestamp(T0 + 0.7, dt.timezone.utc).astimezone()
    values: dict[str, Any] = {
        "id": "0123456789abcdef0123456789abcdef",
        "ssn": SSN,
        "name": NAME,
        "card_number": CARD_NUMBER,
        "card_id": CARD_ID,
        "method": Method.CARD_PIN,
        "terminal_id": TERMINAL,
        "reader": "Virtual PCD 00 00",
        "started": start,
        "expires": start + dt.timedelta(seconds=299.5),
    }
    values.update(changes)
    return Session(**values)


def test_claims_for_a_kiosk_session(key: Ed25519PrivateKey) -> None:
    made = claims_for(_session())
    assert made == claims(session_id="0123456789abcdef0123456789abcdef", expires_at=T0 + 301)
    assert claims_for(_session(), ttl=60).expires_at == T0 + 60
    token = issue_token(claims_for(_session(method="card")), key)
    assert verify_token(token, key.public_key(), terminal_id=TERMINAL, now=T0).method == "card"


def test_claims_for_an_incomplete_session() -> None:
    with pytest.raises(ConfigError, match=r"\[terminal\] id"):
        claims_for(_session(terminal_id=""))
    for changes, claim in (({"card_id": ""}, "card_id"), ({"ssn": ""}, "sub"), ({"card_number": ""}, "card_number")):
        with pytest.raises(TokenMalformed, match=claim) as caught:
            claims_for(_session(**changes))
        assert SSN not in caught.value.message and NAME not in caught.value.message
    with pytest.raises(ValueError, match="ttl"):
        claims_for(_session(), ttl=0)


# --- tampering and foreign keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        {"exp": T0 + 86_400},  # one character of the JSON: a longer session
        {"sub": "110101198101010011"},  # another resident
        {"name": "李四"},
        {"iss": OTHER_TERMINAL},
        {"method": "card"},  # "card+pin" -> "card": a weaker sign-in made to look stronger, or back
        {"card_id": "110100D156000005F00D00000000BEEE"},
    ],
)
def test_a_tampered_payload_is_invalid(key: Ed25519PrivateKey, token: str, edit: dict[str, Any]) -> None:
    forged = with_payload(token, {**payload_of(token), **edit})
    with pytest.raises(TokenInvalid):
        verify_token(forged, key.public_key(), now=T0)
    # Also when the verifier looks the key up by terminal id or by key id.
    with pytest.raises(TokenInvalid):
        verify_token(forged, {TERMINAL: key.public_key(), OTHER_TERMINAL: key.public_key()}, now=T0)
    with pytest.raises(TokenInvalid):
        verify_token(forged, key_ring([key.public_key()]), now=T0)


def test_one_flipped_payload_character_is_invalid(key: Ed25519PrivateKey, token: str) -> None:
    prefix, payload, signature = token.split(".")
    # "exp":1800000300 -> "exp":1800000900, a one-character edit of the JSON text.
    raw = unb64(payload).replace(b'"exp":1800000300', b'"exp":1800000900')
    assert raw != unb64(payload)
    with pytest.raises(TokenInvalid):
        verify_token(f"{prefix}.{b64(raw)}.{signature}", key.public_key(), now=T0)


def test_a_dropped_kid_does_not_help(key: Ed25519PrivateKey, token: str) -> None:
    payload = payload_of(token)
    del payload["kid"]
    with pytest.raises(TokenInvalid):
        verify_token(with_payload(token, payload), {TERMINAL: key.public_key()}, now=T0)


@pytest.mark.parametrize("position", [0, 20, 42, 84])
def test_a_tampered_signature_is_invalid(key: Ed25519PrivateKey, token: str, position: int) -> None:
    prefix, payload, signature = token.split(".")
    raw = bytearray(unb64(signature))
    raw[min(position, 63)] ^= 0x01
    with pytest.raises(TokenInvalid):
        verify_token(f"{prefix}.{payload}.{b64(bytes(raw))}", key.public_key(), now=T0)


def test_a_zero_signature_is_invalid(key: Ed25519PrivateKey, token: str) -> None:
    prefix, payload, _ = token.split(".")
    with pytest.raises(TokenInvalid):
        verify_token(f"{prefix}.{payload}.{b64(bytes(64))}", key.public_key(), now=T0)


def test_another_terminals_key_is_invalid(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    foreign = issue_token(claims(), other_key)  # claims terminal TERMINAL, signed by someone else's key
    with pytest.raises(TokenInvalid):
        verify_token(foreign, key.public_key(), now=T0)
    with pytest.raises(TokenInvalid):
        verify_token(foreign, {TERMINAL: key.public_key()}, now=T0)
    with pytest.raises(TokenInvalid):
        verify_token(foreign, key_ring([key.public_key()]), now=T0)
    # A token without kid gets no further: the signature is tried and fails.
    payload = {k: v for k, v in claims().to_payload().items() if k != "kid"}
    with pytest.raises(TokenInvalid):
        verify_token(sign_raw(payload, other_key), key.public_key(), now=T0)


def test_one_terminals_key_cannot_speak_for_another(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    """Kiosk B's stolen key must not sign in residents "at kiosk A" when trust is keyed by terminal id."""
    trusted = {TERMINAL: key.public_key(), OTHER_TERMINAL: other_key.public_key()}
    as_a = claims(terminal_id=TERMINAL).to_payload()
    for kid in (key_id(other_key.public_key()), OTHER_TERMINAL, None):
        forged = sign_raw({**as_a, "kid": kid} if kid else as_a, other_key)
        with pytest.raises(TokenInvalid):
            verify_token(forged, trusted, terminal_id=TERMINAL, now=T0)
    genuine_b = issue_token(claims(terminal_id=OTHER_TERMINAL), other_key)
    assert verify_token(genuine_b, trusted, terminal_id=OTHER_TERMINAL, now=T0).terminal_id == OTHER_TERMINAL


def test_wrong_terminal_with_the_right_key(key: Ed25519PrivateKey, token: str) -> None:
    with pytest.raises(TokenWrongTerminal) as caught:
        verify_token(token, key.public_key(), terminal_id=OTHER_TERMINAL, now=T0)
    assert caught.value.to_dict()["terminal_id"] == TERMINAL
    assert caught.value.to_dict()["expected_terminal_id"] == OTHER_TERMINAL
    assert TERMINAL in caught.value.message and OTHER_TERMINAL in caught.value.message_zh
    assert verify_token(token, key.public_key(), terminal_id=TERMINAL, now=T0).terminal_id == TERMINAL


# --- time ---------------------------------------------------------------------------------------------


def test_expired(key: Ed25519PrivateKey, token: str) -> None:
    exp = T0 + 300
    assert verify_token(token, key.public_key(), now=exp + DEFAULT_LEEWAY - 0.001)
    with pytest.raises(TokenExpired) as caught:
        verify_token(token, key.public_key(), now=exp + DEFAULT_LEEWAY)
    assert caught.value.to_dict()["expires_at"] == exp
    assert "2027-01-15T08:05:00Z" in caught.value.message and "2027-01-15T08:05:00Z" in caught.value.message_zh
    with pytest.raises(TokenExpired):
        verify_token(token, key.public_key(), now=exp, leeway=0)
    assert verify_token(token, key.public_key(), now=exp - 1, leeway=0)


def test_issued_in_the_future(key: Ed25519PrivateKey, token: str) -> None:
    assert verify_token(token, key.public_key(), now=T0 - DEFAULT_LEEWAY)
    with pytest.raises(TokenNotYetValid) as caught:
        verify_token(token, key.public_key(), now=T0 - DEFAULT_LEEWAY - 1)
    assert caught.value.to_dict()["issued_at"] == T0
    with pytest.raises(TokenNotYetValid):
        verify_token(token, key.public_key(), now=T0 - 1, leeway=0)


def test_the_clock_is_the_default(key: Ed25519PrivateKey) -> None:
    fresh = issue_token(SessionClaims.create(**_create_args()), key)
    assert verify_token(fresh, key.public_key()).method == "card"
    with pytest.raises(TokenExpired):
        verify_token(issue_token(claims(issued_at=1_000, expires_at=1_300), key), key.public_key())
    with pytest.raises(TokenNotYetValid):
        verify_token(issue_token(claims(issued_at=2**40, expires_at=2**40 + 300), key), key.public_key())


def test_negative_leeway_is_refused(key: Ed25519PrivateKey, token: str) -> None:
    with pytest.raises(ValueError, match="leeway"):
        verify_token(token, key.public_key(), now=T0, leeway=-1)


def test_the_signature_is_checked_before_the_time(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    """A forged token is reported as forged, not as expired or from the wrong terminal."""
    forged = issue_token(claims(), other_key)
    for now in (T0 - 10_000, T0 + 10_000):
        with pytest.raises(TokenInvalid):
            verify_token(forged, key.public_key(), terminal_id=OTHER_TERMINAL, now=now)


def test_expiry_is_checked_before_the_terminal(key: Ed25519PrivateKey, token: str) -> None:
    with pytest.raises(TokenExpired):
        verify_token(token, key.public_key(), terminal_id=OTHER_TERMINAL, now=T0 + 10_000)


# --- malformed ---------------------------------------------------------------------------------------


def _malformed_cases(token: str) -> dict[str, Any]:
    prefix, payload, signature = token.split(".")
    sig64 = b64(bytes(64))
    return {
        "empty": "",
        "one part": "sst1",
        "two parts": f"{prefix}.{payload}",
        "four parts": f"{token}.{signature}",
        "empty payload": f"{prefix}..{signature}",
        "empty signature": f"{prefix}.{payload}.",
        "bad base64 payload": f"{prefix}.{payload[:10]}*{payload[11:]}.{signature}",
        "padded base64": f"{prefix}.{payload}==.{signature}",
        "base64 of length 4n+1": f"{prefix}.AAAAA.{signature}",
        "non-canonical signature": f"{prefix}.{payload}.{signature[:-1]}{chr(ord(signature[-1]) + 1)}",
        "non-canonical payload": f"{prefix}.{payload[:-1]}{_unused_bits_set(payload[-1])}.{signature}",
        "short signature": f"{prefix}.{payload}.{b64(bytes(63))}",
        "long signature": f"{prefix}.{payload}.{b64(bytes(65))}",
        "non-JSON payload": f"sst1.{b64(b'hello, world')}.{sig64}",
        "non-UTF-8 payload": f"sst1.{b64(bytes([0xFF, 0xFE, 0x7B, 0x7D]))}.{sig64}",
        "JSON array": f"sst1.{b64(b'[1, 2]')}.{sig64}",
        "JSON string": f"sst1.{b64(json.dumps('sst1').encode())}.{sig64}",
        "deeply nested": f"sst1.{b64(b'[' * 2000 + b']' * 2000)}.{sig64}",
        "kid not a string": f"sst1.{b64(KID_NOT_A_STRING)}.{sig64}",
        "wrong version sst9": f"sst9.{payload}.{signature}",
        "version sst0": f"sst0.{payload}.{signature}",
        "no prefix": f"{payload}.{signature}.{signature}",
        "a JWT": "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln",
        "non-ASCII": f"{prefix}.{payload}é.{signature}",
        "whitespace": f" {token}",
        "newline": f"{token}\n",
        "too long": f"sst1.{'A' * 9000}.{signature}",
        "bytes": token.encode(),
        "None": None,
    }


KID_NOT_A_STRING = json.dumps({"kid": 7}).encode()


def _unused_bits_set(last: str) -> str:
    """The last base64url character of a payload with its unused low bits set (same bytes, other text)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return alphabet[alphabet.index(last) | 1]


MALFORMED_IDS = list(_malformed_cases("sst1.eyJ2IjoxfQ." + "A" * 86))


@pytest.mark.parametrize("case", MALFORMED_IDS)
def test_malformed_tokens(key: Ed25519PrivateKey, token: str, case: str) -> None:
    bad = _malformed_cases(token)[case]
    with pytest.raises(TokenMalformed):
        verify_token(bad, key.public_key(), now=T0)
    with pytest.raises(TokenMalformed):
        verify_token(bad, {TERMINAL: key.public_key()}, now=T0)


def test_the_version_is_named_in_the_error(token: str, key: Ed25519PrivateKey) -> None:
    with pytest.raises(TokenMalformed, match="sst9 is not supported"):
        verify_token("sst9" + token[4:], key.public_key(), now=T0)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"v": 2}, id="v 2"),
        pytest.param({"v": True}, id="v true"),
        pytest.param({"v": None}, id="v missing"),
        pytest.param({"sub": None}, id="sub missing"),
        pytest.param({"exp": T0}, id="exp equal to iat"),
        pytest.param({"exp": T0 - 60}, id="exp before iat"),
        pytest.param({"iat": True}, id="bool iat"),
        pytest.param({"exp": 1.8e9}, id="float exp"),
        pytest.param({"exp": str(T0 + 300)}, id="string exp"),
        pytest.param({"iat": 2**53}, id="iat beyond 2**53-1"),
        pytest.param({"method": "fingerprint"}, id="unknown method"),
        pytest.param({"card_id": CARD_ID.lower()}, id="lower-case card_id"),
        pytest.param({"name": ["张三"]}, id="name not a string"),
        pytest.param({"sid": ""}, id="empty sid"),
        pytest.param({"iss": 410100813475}, id="iss a number"),
        pytest.param({"name": "\ud800"}, id="lone surrogate"),
    ],
)
def test_signed_but_malformed_claims(key: Ed25519PrivateKey, payload: dict[str, Any]) -> None:
    """A trusted key signed these, and they are still refused: a bug in some issuer is no excuse."""
    claims_json = {**claims().to_payload(), **payload}
    claims_json = {k: v for k, v in claims_json.items() if v is not None}
    signed = sign_raw(claims_json, key)
    with pytest.raises(TokenMalformed) as caught:
        verify_token(signed, key.public_key(), now=T0)
    assert SSN not in caught.value.message and NAME not in caught.value.message


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"v":1,"v":1}', id="duplicate member"),
        pytest.param(b'{"v":1,"exp":NaN}', id="NaN"),
        pytest.param(b'{"v":1,"exp":Infinity}', id="Infinity"),
    ],
)
def test_signed_but_not_strict_json(key: Ed25519PrivateKey, raw: bytes) -> None:
    with pytest.raises(TokenMalformed):
        verify_token(sign_raw(raw, key), key.public_key(), now=T0)


def test_unknown_members_are_ignored(key: Ed25519PrivateKey) -> None:
    signed = sign_raw({**claims().to_payload(), "device_id": "MT170701000006", "x": {"nested": [1]}}, key)
    assert dataclasses.replace(verify_token(signed, key.public_key(), now=T0), key_id=None) == claims()


def test_a_payload_in_any_json_layout_verifies(key: Ed25519PrivateKey) -> None:
    """Verifiers check the text they got; they need not agree with the issuer on JSON formatting."""
    spaced = json.dumps(claims().to_payload(), indent=2, ensure_ascii=True).encode()
    assert verify_token(sign_raw(spaced, key), key.public_key(), now=T0).name == NAME


# --- key selection ------------------------------------------------------------------------------------


def test_kid_selects_among_several_keys() -> None:
    keys = [Ed25519PrivateKey.generate() for _ in range(4)]
    ring = key_ring(k.public_key() for k in keys)
    assert len(ring) == 4 and all(re.fullmatch(r"[0-9a-f]{16}", kid) for kid in ring)
    for i, private in enumerate(keys):
        token = issue_token(claims(session_id=f"s{i}", terminal_id=f"T{i}"), private)
        verified = verify_token(token, ring, now=T0)
        assert (verified.session_id, verified.key_id) == (f"s{i}", key_id(private.public_key()))
    stranger = issue_token(claims(), Ed25519PrivateKey.generate())
    with pytest.raises(TokenInvalid, match="no trusted key"):
        verify_token(stranger, ring, now=T0)


def test_kid_selects_among_a_terminals_keys_during_rotation() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    trusted = {TERMINAL: [old.public_key(), new.public_key()]}
    for private in (old, new):
        assert verify_token(issue_token(claims(), private), trusted, now=T0).key_id == key_id(private.public_key())
    # A token without kid is tried against that terminal's keys, and only those.
    no_kid = {k: v for k, v in claims().to_payload().items() if k != "kid"}
    assert verify_token(sign_raw(no_kid, new), trusted, now=T0).key_id is None
    # After the rotation the old key is gone: its tokens are invalid, whatever their expiry.
    with pytest.raises(TokenInvalid, match="not among the keys"):
        verify_token(issue_token(claims(), old), {TERMINAL: [new.public_key()]}, now=T0)


def test_a_mapping_entry_is_used_by_kid_only_when_it_is_that_keys_id(
    key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    # The kid names a terminal-id entry holding another key: not taken as the key with that id.
    kid_like = key_id(other_key.public_key())
    forged = sign_raw({**claims().to_payload(), "kid": kid_like}, other_key)
    with pytest.raises(TokenInvalid):
        verify_token(forged, {kid_like: key.public_key(), TERMINAL: key.public_key()}, now=T0)


def test_a_single_key_refuses_a_token_naming_another_kid(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    with pytest.raises(TokenInvalid, match=key_id(key.public_key())):
        verify_token(issue_token(claims(), other_key), key.public_key(), now=T0)
    garbage_kid = sign_raw({**claims().to_payload(), "kid": "\x1b[31mlog injection"}, other_key)
    with pytest.raises(TokenInvalid) as caught:
        verify_token(garbage_kid, key.public_key(), now=T0)
    assert "\x1b" not in caught.value.message and "(not a key id)" in caught.value.message


def test_trusted_keys_of_the_wrong_kind(key: Ed25519PrivateKey, token: str) -> None:
    with pytest.raises(TokenKeyError):
        verify_token(token, {TERMINAL: "not a key"}, now=T0)  # type: ignore[dict-item]
    with pytest.raises(TokenKeyError):
        verify_token(token, {TERMINAL: [key.public_key(), key]}, now=T0)  # type: ignore[list-item]
    with pytest.raises(TokenKeyError):
        verify_token(token, key, now=T0)  # type: ignore[arg-type]
    with pytest.raises(TokenKeyError):
        issue_token(claims(), key.public_key())  # type: ignore[arg-type]


# --- key files ----------------------------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o004])
def test_a_private_key_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    private_pem, _ = generate_terminal_key()
    path = _write(tmp_path / "session.key", private_pem, mode)
    with pytest.raises(TokenKeyError) as caught:
        load_private_key(path)
    assert f"chmod 600 {path}" in caught.value.message and "chmod 600" in caught.value.message_zh
    assert caught.value.to_dict()["path"] == str(path)
    assert f"{mode:04o}" in caught.value.message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_key_only_its_owner_reads_is_accepted(tmp_path: Path, mode: int) -> None:
    private_pem, public_pem = generate_terminal_key()
    path = _write(tmp_path / "session.key", private_pem, mode)
    private = load_private_key(path)
    token = issue_token(claims(), private)
    assert verify_token(token, load_public_key(public_pem), now=T0).terminal_id == TERMINAL


def test_an_encrypted_private_key(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"kiosk-secret"),
    )
    path = _write(tmp_path / "session.key", pem, 0o600)
    assert key_id(load_private_key(path, b"kiosk-secret").public_key()) == key_id(private.public_key())
    with pytest.raises(TokenKeyError, match="password") as caught:
        load_private_key(path, b"not-the-one")
    assert "kiosk-secret" not in str(caught.value.to_dict()) and "not-the-one" not in str(caught.value.to_dict())


def _ec_pems() -> tuple[bytes, bytes]:
    private = ec.generate_private_key(ec.SECP256R1())
    return (
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )


def test_private_key_file_problems(tmp_path: Path) -> None:
    ec_private, _ = _ec_pems()
    _, ed_public = generate_terminal_key()
    cases = {
        "does not exist": tmp_path / "missing.key",
        "not a PEM private key": _write(tmp_path / "garbage.key", b"hello", 0o600),
        "not a PEM private key ": _write(tmp_path / "public.key", ed_public, 0o600),
        "not an Ed25519 key": _write(tmp_path / "ec.key", ec_private, 0o600),
        "not a regular file": tmp_path,
    }
    for problem, path in cases.items():
        with pytest.raises(TokenKeyError, match=problem.strip()) as caught:
            load_private_key(path)
        assert caught.value.code == "TOKEN_KEY_ERROR" and str(path) in caught.value.message


def test_public_key_problems(tmp_path: Path) -> None:
    _, ec_public = _ec_pems()
    ed_private, ed_public = generate_terminal_key()
    assert isinstance(load_public_key(ed_public), Ed25519PublicKey)
    assert isinstance(load_public_key(_write(tmp_path / "ok.pub", ed_public, 0o644)), Ed25519PublicKey)
    with pytest.raises(TokenKeyError, match="does not exist"):
        load_public_key(tmp_path / "missing.pub")
    with pytest.raises(TokenKeyError, match="not a PEM public key"):
        load_public_key(ed_private)  # the private key given by mistake
    with pytest.raises(TokenKeyError, match="not an Ed25519 key"):
        load_public_key(ec_public)
    with pytest.raises(TokenKeyError, match="cannot read"):
        load_public_key(tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_write_terminal_key(tmp_path: Path) -> None:
    private_path, public_path = tmp_path / "t.key", tmp_path / "t.pub"
    kid = write_terminal_key(private_path, public_path)
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert key_id(load_public_key(public_path)) == kid == key_id(load_private_key(private_path).public_key())
    with pytest.raises(TokenKeyError, match="already exists"):
        write_terminal_key(private_path, public_path)
    assert key_id(load_public_key(public_path)) == kid  # untouched
    private_path.chmod(0o644)
    new_kid = write_terminal_key(private_path, public_path, overwrite=True)
    assert new_kid != kid and stat.S_IMODE(private_path.stat().st_mode) == 0o600
    with pytest.raises(TokenKeyError, match="cannot write"):
        write_terminal_key(tmp_path / "no" / "such" / "dir.key", tmp_path / "x.pub")
    with pytest.raises(TokenKeyError, match="already exists"):
        write_terminal_key(tmp_path / "fresh.key", public_path)
    assert not (tmp_path / "fresh.key").exists()  # nothing half-written


def test_key_id_is_sha256_of_the_raw_public_key(key: Ed25519PrivateKey) -> None:
    import hashlib

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(key.public_key()) == hashlib.sha256(raw).hexdigest()[:16]


# --- errors: codes, messages, and no personal data --------------------------------------------------


def test_error_classes() -> None:
    rejections = {TokenMalformed, TokenInvalid, TokenExpired, TokenNotYetValid, TokenWrongTerminal}
    assert all(issubclass(cls, TokenRejected) for cls in rejections)
    assert not issubclass(TokenKeyError, TokenRejected) and issubclass(TokenKeyError, SscardError)
    assert set(TOKEN_ERRORS) == {*rejections, TokenKeyError}
    codes = [cls.code for cls in all_error_classes() if "code" in vars(cls)]
    assert len(codes) == len(set(codes))
    assert {cls.code for cls in TOKEN_ERRORS} == {
        "TOKEN_MALFORMED",
        "TOKEN_INVALID",
        "TOKEN_EXPIRED",
        "TOKEN_NOT_YET_VALID",
        "TOKEN_WRONG_TERMINAL",
        "TOKEN_KEY_ERROR",
    }


@pytest.mark.parametrize("cls", [TokenRejected, *TOKEN_ERRORS], ids=lambda c: c.__name__)
def test_every_token_error_has_both_messages_without_arguments(cls: type[SscardError]) -> None:
    """What tests/test_errors.py demands of every error, once these move into sscard.errors."""
    error = cls()
    data = error.to_dict()
    assert data["message"] and data["message_zh"]
    assert "{" not in data["message"] and "{" not in data["message_zh"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in data["message_zh"])
    assert cls.code in str(error)


def _every_error(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey, token: str) -> list[SscardError]:
    attempts: list[tuple[str, Any, dict[str, Any]]] = [
        (token, key.public_key(), {"now": T0 + 10_000}),
        (token, key.public_key(), {"now": T0 - 10_000}),
        (token, key.public_key(), {"now": T0, "terminal_id": OTHER_TERMINAL}),
        (issue_token(claims(), other_key), key.public_key(), {"now": T0}),
        (issue_token(claims(), other_key), {TERMINAL: key.public_key()}, {"now": T0}),
        (issue_token(claims(), other_key), key_ring([key.public_key()]), {"now": T0}),
        (with_payload(token, {**payload_of(token), "exp": T0 + 9999}), key.public_key(), {"now": T0}),
        (token[:-3], key.public_key(), {"now": T0}),
        (sign_raw({**claims().to_payload(), "method": "x"}, key), key.public_key(), {"now": T0}),
        (sign_raw({**claims().to_payload(), "exp": T0}, key), key.public_key(), {"now": T0}),
        (sign_raw({**claims().to_payload(), "card_id": SSN}, key), key.public_key(), {"now": T0}),
        (sign_raw({**claims().to_payload(), "kid": SSN}, other_key), key.public_key(), {"now": T0}),
        (sign_raw({**claims().to_payload(), "kid": NAME}, other_key), {TERMINAL: [key.public_key()]}, {"now": T0}),
        (sign_raw({**claims().to_payload(), "sub": ["x"]}, key), key.public_key(), {"now": T0}),
        (sign_raw({**claims().to_payload(), "name": NAME * 30}, key), key.public_key(), {"now": T0}),
        ("sst1." + b64(json.dumps(claims().to_payload()).encode()), key.public_key(), {"now": T0}),
    ]
    found: list[SscardError] = []
    for candidate, keys, options in attempts:
        with pytest.raises(TokenRejected) as caught:
            verify_token(candidate, keys, **options)
        found.append(caught.value)
    return found


def test_no_personal_data_in_any_error(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey, token: str) -> None:
    errors = _every_error(key, other_key, token)
    assert {type(e) for e in errors} == {
        TokenMalformed,
        TokenInvalid,
        TokenExpired,
        TokenNotYetValid,
        TokenWrongTerminal,
    }
    for error in errors:
        shown = " ".join(
            [
                str(error),
                repr(error),
                error.message,
                error.message_zh,
                str(error.detail),
                json.dumps(error.to_dict(), ensure_ascii=False),
                repr(error.args),
                repr(error.__cause__),
                repr(error.__context__) if not error.__suppress_context__ else "",
            ]
        )
        for secret in (SSN, NAME, CARD_NUMBER, "欧阳"):
            assert secret not in shown, (error.code, shown)


def test_claims_repr_leaves_out_personal_data() -> None:
    text = repr(claims())
    assert SSN not in text and NAME not in text and CARD_NUMBER not in text
    assert "sess-0001" in text and TERMINAL in text


# --- properties ----------------------------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f"),
    min_size=1,
    max_size=MAX_FIELD_LENGTH,
)


@st.composite
def _claims(draw: st.DrawFn) -> SessionClaims:
    issued = draw(st.integers(0, 2**40))
    return SessionClaims(
        session_id=draw(_text),
        terminal_id=draw(_text),
        ssn=draw(_text),
        name=draw(st.one_of(st.just(""), _text)),
        card_number=draw(_text),
        card_id=draw(st.text(alphabet="0123456789ABCDEF", min_size=32, max_size=32)),
        method=draw(st.sampled_from(sorted(METHODS))),
        issued_at=issued,
        expires_at=draw(st.integers(issued + 1, issued + 10**7)),
    )


@pytest.fixture(scope="module")
def property_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(made=_claims())
def test_any_claims_round_trip(property_key: Ed25519PrivateKey, made: SessionClaims) -> None:
    token = issue_token(made, property_key)
    assert len(token) < 8192
    verified = verify_token(token, property_key.public_key(), terminal_id=made.terminal_id, now=made.issued_at)
    assert dataclasses.replace(verified, key_id=None) == made


_claims_for_mutation = claims()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_character_change_is_rejected(property_key: Ed25519PrivateKey, data: st.DataObject) -> None:
    token = issue_token(_claims_for_mutation, property_key)
    index = data.draw(st.integers(0, len(token) - 1), label="index")
    replacement = data.draw(
        st.one_of(
            st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "),
            st.characters(max_codepoint=0x2FFF),
        ).filter(lambda ch: ch != token[index]),
        label="replacement",
    )
    mutated = token[:index] + replacement + token[index + 1 :]
    operation = data.draw(st.sampled_from(["replace", "delete", "insert"]), label="operation")
    if operation == "delete":
        mutated = token[:index] + token[index + 1 :]
    elif operation == "insert":
        mutated = token[:index] + replacement + token[index:]
    for keys in (property_key.public_key(), {TERMINAL: property_key.public_key()}):
        with pytest.raises(TokenRejected):
            verify_token(mutated, keys, now=T0)


# --- the backend snippet in docs/tokens.md ---------------------------------------------------------------


def _doc_snippet() -> str:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Verifying in another program", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "docs/tokens.md lost its backend snippet"
    return match.group(1)


def test_the_documented_backend_snippet_verifies_our_tokens(key: Ed25519PrivateKey) -> None:
    snippet = _doc_snippet()
    assert len(snippet.strip().splitlines()) <= 25
    namespace: dict[str, Any] = {}
    exec(compile(snippet, str(DOCS), "exec"), namespace)  # the doc's own code, nothing else
    verify_sst1 = namespace["verify_sst1"]
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fresh = issue_token(SessionClaims.create(**_create_args()), key)
    got = verify_sst1(fresh, public_pem, terminal_id=TERMINAL)
    assert got["sub"] == SSN and got["name"] == NAME
    forged = with_payload(fresh, {**payload_of(fresh), "sub": "110101198101010011"})
    with pytest.raises(InvalidSignature):
        verify_sst1(forged, public_pem)
    with pytest.raises(ValueError, match="another terminal"):
        verify_sst1(fresh, public_pem, terminal_id=OTHER_TERMINAL)
    with pytest.raises(ValueError, match="expired"):
        verify_sst1(issue_token(claims(issued_at=1_000, expires_at=1_300), key), public_pem)
