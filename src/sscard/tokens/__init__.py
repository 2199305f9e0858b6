"""Session tokens a kiosk backend verifies offline, signed with the terminal's Ed25519 key.

The package is split by what changes together: the claims (:mod:`sscard.tokens.claims`), the keys
(:mod:`sscard.tokens.keys`) and the envelope that signs and verifies (:mod:`sscard.tokens.codec`);
its errors are in the one hierarchy (:mod:`sscard.errors`).  Every name is importable from here.

docs/tokens.md has the format, the threat model and how a backend in any language checks a token.
In short::

    sst1.<base64url(canonical JSON claims)>.<base64url(Ed25519 signature)>

The signature covers the ASCII text before the last dot (``sst1.`` + the encoded claims), so the
version is signed too and a signature made for anything else cannot pass for a token.  The
terminal holds the private key; the backend holds only public keys, so a leaked backend cannot
mint tokens.

:func:`verify_token` works in a fixed order, and the order is part of the contract:

1. **parse** the envelope (prefix, three parts, strict base64url, 64-byte signature) and the
   payload's JSON: anything else is ``TOKEN_MALFORMED``;
2. **pick the key** by the token's ``kid``, else by its ``iss`` (terminal id), else the single key
   given.  Both are untrusted hints: a wrong hint only picks a key the signature will not match;
3. **verify the signature** before any claim is believed (``TOKEN_INVALID``).  Checking expiry or
   terminal first would answer questions about claims an attacker wrote, and would tell them which
   of their edits got furthest;
4. **then the claims**: well-formed (``TOKEN_MALFORMED``), not issued in the future beyond the
   leeway (``TOKEN_NOT_YET_VALID``), not expired (``TOKEN_EXPIRED``), issued by the expected
   terminal (``TOKEN_WRONG_TERMINAL``).

Verification handles only public data (public key, token, signature), so its timing reveals
nothing and key ids, terminal ids and times are compared plainly; the only operation on a secret
is signing, on the kiosk, and OpenSSL's Ed25519 signing is constant-time.

No error carries the token's personal data (SSN, name, card number): messages name the claim at
fault, never its value, and :class:`SessionClaims` keeps those three fields out of its ``repr``.
"""

from __future__ import annotations

from sscard.errors import (
    TOKEN_ERRORS,
    TokenExpired,
    TokenInvalid,
    TokenKeyError,
    TokenMalformed,
    TokenNotYetValid,
    TokenRejected,
    TokenWrongTerminal,
)
from sscard.tokens.claims import (
    MAX_FIELD_LENGTH,
    MAX_QR_SUBJECT,
    MAX_TIME,
    METHOD_CARD,
    METHOD_CARD_PIN,
    METHOD_IDCARD,
    METHOD_QR,
    METHODS,
    VERSION,
    SessionClaims,
    SessionLike,
    claims_for,
    new_session_id,
)
from sscard.tokens.codec import (
    DEFAULT_LEEWAY,
    MAX_TOKEN_LENGTH,
    PREFIX,
    SIGNATURE_LENGTH,
    issue_token,
    verify_token,
)
from sscard.tokens.keys import (
    PublicKeys,
    generate_terminal_key,
    key_id,
    key_ring,
    load_private_key,
    load_public_key,
    write_terminal_key,
)

__all__ = [
    "DEFAULT_LEEWAY",
    "MAX_FIELD_LENGTH",
    "MAX_QR_SUBJECT",
    "MAX_TIME",
    "MAX_TOKEN_LENGTH",
    "METHODS",
    "METHOD_CARD",
    "METHOD_CARD_PIN",
    "METHOD_IDCARD",
    "METHOD_QR",
    "PREFIX",
    "SIGNATURE_LENGTH",
    "TOKEN_ERRORS",
    "VERSION",
    "PublicKeys",
    "SessionClaims",
    "SessionLike",
    "TokenExpired",
    "TokenInvalid",
    "TokenKeyError",
    "TokenMalformed",
    "TokenNotYetValid",
    "TokenRejected",
    "TokenWrongTerminal",
    "claims_for",
    "generate_terminal_key",
    "issue_token",
    "key_id",
    "key_ring",
    "load_private_key",
    "load_public_key",
    "new_session_id",
    "verify_token",
    "write_terminal_key",
]
