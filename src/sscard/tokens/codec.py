"""The token envelope: issuing (sign the canonical JSON claims) and verifying in the fixed order
of :mod:`sscard.tokens` (parse, pick the key, verify the signature, then the claims).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sscard.errors import (
    TokenExpired,
    TokenInvalid,
    TokenKeyError,
    TokenMalformed,
    TokenNotYetValid,
    TokenWrongTerminal,
)
from sscard.tokens.claims import _KEY_ID, VERSION, SessionClaims
from sscard.tokens.keys import PublicKeys, key_id

PREFIX: Final = f"sst{VERSION}"
#: Longest token accepted (characters); a real one is about 600.  Bounds the work an attacker can ask for.
MAX_TOKEN_LENGTH: Final = 8192
#: Default tolerance (seconds) for clock skew between the kiosk and the verifier.
DEFAULT_LEEWAY: Final = 30.0
SIGNATURE_LENGTH: Final = 64

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_VERSION_PREFIX = re.compile(r"sst[0-9]{1,4}")


def issue_token(claims: SessionClaims, private_key: Ed25519PrivateKey) -> str:
    """Sign ``claims`` with the terminal's key.  The token carries the key's id (``kid``)."""
    if not isinstance(private_key, Ed25519PrivateKey):
        raise TokenKeyError("the signing key is not an Ed25519 private key", "签名密钥不是Ed25519私钥")
    kid = key_id(private_key.public_key())
    if claims.key_id not in (None, kid):
        raise ValueError("claims.key_id names another key than the one signing")
    payload = json.dumps(
        replace(claims, key_id=kid).to_payload(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    signing_input = f"{PREFIX}.{_b64encode(payload)}"
    token = f"{signing_input}.{_b64encode(private_key.sign(signing_input.encode('ascii')))}"
    if len(token) > MAX_TOKEN_LENGTH:  # pragma: no cover - MAX_FIELD_LENGTH keeps every token shorter
        raise ValueError(f"the claims make a token longer than {MAX_TOKEN_LENGTH} characters")
    return token


def verify_token(
    token: str,
    public_keys: PublicKeys,
    *,
    terminal_id: str | None = None,
    now: float | None = None,
    leeway: float = DEFAULT_LEEWAY,
) -> SessionClaims:
    """The claims of a token that is genuine, current and (when ``terminal_id`` is given) from that terminal.

    ``public_keys`` is one key, or a mapping from key id or terminal id to a key or a list of
    keys (see :func:`_select_keys` for how the key is found).  ``now`` defaults to the clock;
    ``leeway`` (seconds) tolerates clock skew on both ``iat`` and ``exp``.

    Raises :class:`TokenMalformed`, :class:`TokenInvalid`, :class:`TokenNotYetValid`,
    :class:`TokenExpired`, :class:`TokenWrongTerminal` (all :class:`TokenRejected`) in that order
    of checking, and :class:`TokenKeyError` when ``public_keys`` holds something not a key.
    """
    if leeway < 0:
        raise ValueError("leeway must not be negative")
    # 1. parse: nothing here is trusted yet.
    signing_input, payload_bytes, signature = _split(token)
    payload = _parse_json(payload_bytes)
    # 2. pick the key from untrusted hints: a wrong hint picks a key the signature won't match.
    candidates = _select_keys(public_keys, _hint(payload, "kid"), _hint(payload, "iss"))
    # 3. the signature, before any claim is believed.
    if not any(_signature_ok(key, signature, signing_input) for key in candidates):
        raise TokenInvalid("the signature does not verify with the trusted key")
    # 4. the claims, now known to come from a trusted terminal.
    claims = SessionClaims.from_payload(payload)
    current = time.time() if now is None else now
    if claims.issued_at > current + leeway:
        raise TokenNotYetValid(claims.issued_at)
    if current >= claims.expires_at + leeway:
        raise TokenExpired(claims.expires_at)
    if terminal_id is not None and claims.terminal_id != terminal_id:
        raise TokenWrongTerminal(claims.terminal_id, terminal_id)
    return claims


def _split(token: object) -> tuple[bytes, bytes, bytes]:
    """(signing input, payload bytes, signature bytes) of a token, or :class:`TokenMalformed`."""
    if not isinstance(token, str):
        raise TokenMalformed("a token is text")
    if not token:
        raise TokenMalformed("the token is empty")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenMalformed(f"the token is longer than {MAX_TOKEN_LENGTH} characters")
    if not token.isascii():
        raise TokenMalformed("the token contains non-ASCII characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenMalformed(f"a token has 3 parts separated by '.', this one has {len(parts)}")
    prefix, payload_text, signature_text = parts
    if prefix != PREFIX:
        if _VERSION_PREFIX.fullmatch(prefix):
            raise TokenMalformed(f"token version {prefix} is not supported (this library reads {PREFIX})")
        raise TokenMalformed(f"not an sscard session token (it must start with '{PREFIX}.')")
    signature = _b64decode(signature_text, "signature")
    if len(signature) != SIGNATURE_LENGTH:
        raise TokenMalformed(f"the signature is {len(signature)} bytes, not {SIGNATURE_LENGTH}")
    return f"{prefix}.{payload_text}".encode("ascii"), _b64decode(payload_text, "payload"), signature


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Strict base64url without padding: one spelling per byte string, so a token cannot be reworded."""
    if not text or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise TokenMalformed(f"the {what} is not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64encode(data) != text:  # unused low bits set: a second spelling of the same bytes
        raise TokenMalformed(f"the {what} is not canonical base64url")
    return data


def _parse_json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_object, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):  # messages could quote the payload: dropped
        raise TokenMalformed("the payload is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise TokenMalformed("the payload is not a JSON object")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers picking different duplicates would read two different tokens from one signature.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise TokenMalformed("the payload repeats a member name")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _hint(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TokenMalformed(f"claim '{name}' must be a string")
    return value


def _select_keys(public_keys: PublicKeys, kid: str | None, iss: str | None) -> list[Ed25519PublicKey]:
    """The key(s) to try, from the token's unverified ``kid`` and ``iss``.

    * one key given: that key (a token naming another ``kid`` is refused without trying);
    * ``public_keys[kid]``, when that entry holds the key whose id *is* ``kid`` (a ring by key id);
    * ``public_keys[iss]`` (by terminal id): the key among its keys whose id is ``kid``, or, for a
      token without ``kid``, each of them.  A key listed under a terminal id only vouches for
      tokens that name that terminal, so one terminal's key cannot speak for another;
    * otherwise none: :class:`TokenInvalid`.
    """
    if isinstance(public_keys, Ed25519PublicKey):
        if kid is not None and kid != key_id(public_keys):
            raise TokenInvalid(f"the token names key {_shown(kid)}, not the trusted key {key_id(public_keys)}")
        return [public_keys]
    if not isinstance(public_keys, Mapping):
        raise TokenKeyError("the trusted keys are neither a key nor a mapping", "受信任的密钥既不是密钥也不是映射")
    if kid is not None and kid in public_keys:
        by_kid = [key for key in _keys(public_keys[kid]) if key_id(key) == kid]
        if by_kid:
            return by_kid[:1]
    if iss is not None and iss in public_keys:
        listed = _keys(public_keys[iss])
        if kid is None:
            return listed
        by_kid = [key for key in listed if key_id(key) == kid]
        if by_kid:
            return by_kid[:1]
        raise TokenInvalid(f"key {_shown(kid)} is not among the keys trusted for this token's terminal")
    raise TokenInvalid("no trusted key for this token's key id or terminal")


def _shown(kid: str) -> str:
    """An unverified key id, fit for a message only when it looks like one (no text smuggled into logs)."""
    return kid if _KEY_ID.fullmatch(kid) else "(not a key id)"


def _keys(entry: object) -> list[Ed25519PublicKey]:
    listed = [entry] if isinstance(entry, Ed25519PublicKey) else entry
    if isinstance(listed, Sequence) and not isinstance(listed, str | bytes):
        keys = list(listed)
        if all(isinstance(key, Ed25519PublicKey) for key in keys):
            return keys
    raise TokenKeyError("a trusted key is not an Ed25519 public key", "受信任的密钥不是Ed25519公钥")


def _signature_ok(key: Ed25519PublicKey, signature: bytes, signing_input: bytes) -> bool:
    try:
        key.verify(signature, signing_input)
    except InvalidSignature:
        return False
    return True
