"""Session tokens a kiosk backend verifies offline, signed with the terminal's Ed25519 key.

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

import base64
import hashlib
import json
import math
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, Protocol, TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sscard.errors import ConfigError, PrivateFileError, SscardError
from sscard.files import create_private_file, read_regular_file

#: The format version, in the payload (``v``) and, as ``sst1``, in the token's first part.
VERSION: Final = 1
PREFIX: Final = f"sst{VERSION}"
#: Longest token accepted (characters); a real one is about 600.  Bounds the work an attacker can ask for.
MAX_TOKEN_LENGTH: Final = 8192
#: Longest text claim (characters).
MAX_FIELD_LENGTH: Final = 128
#: Longest ``sub`` of a QR session: the scanned code (sscard.qr accepts up to 512 characters).
MAX_QR_SUBJECT: Final = 512
#: Default tolerance (seconds) for clock skew between the kiosk and the verifier.
DEFAULT_LEEWAY: Final = 30.0
#: Largest ``iat``/``exp`` accepted: 2**53 - 1, the largest integer every JSON parser reads exactly.
MAX_TIME: Final = 2**53 - 1
SIGNATURE_LENGTH: Final = 64

#: How the resident signed in.  ``qr`` and ``idcard`` are reserved for the sign-in methods to come.
METHOD_CARD_PIN: Final = "card+pin"
METHOD_CARD: Final = "card"
METHOD_QR: Final = "qr"
METHOD_IDCARD: Final = "idcard"
METHODS: Final = frozenset({METHOD_CARD_PIN, METHOD_CARD, METHOD_QR, METHOD_IDCARD})

#: One public key, or several by key id or terminal id; a terminal id may map to several keys
#: (old and new during a rotation), told apart by the token's ``kid``.
PublicKeys: TypeAlias = Ed25519PublicKey | Mapping[str, Ed25519PublicKey | Sequence[Ed25519PublicKey]]

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_CARD_ID = re.compile(r"[0-9A-F]{32}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_VERSION_PREFIX = re.compile(r"sst[0-9]{1,4}")


# --- errors -------------------------------------------------------------------------------------
# TODO(errors.py): these move into sscard.errors; the codes are final.


class TokenRejected(SscardError):
    """Base of the errors that reject a token (not raised itself).

    A backend answers these with "please sign in again" (HTTP 401); :class:`TokenKeyError` is a
    configuration problem on the verifier's side and is deliberately not one of them.
    """


class TokenMalformed(TokenRejected):
    """Not a token of this format: empty, truncated, bad base64url, not JSON, an unknown version,
    or claims of the wrong type.  ``detail`` says which part, never its content."""

    code = "TOKEN_MALFORMED"
    message_en = "This is not a valid session token."
    message_zh_text = "会话令牌格式无效。"


class TokenInvalid(TokenRejected):
    """The signature does not verify with any trusted key: the token was altered, or a key the
    verifier does not trust (another terminal's, an old one) signed it."""

    code = "TOKEN_INVALID"
    message_en = "The session token's signature is not valid: it was altered or not issued by a trusted terminal."
    message_zh_text = "会话令牌签名无效：令牌已被篡改，或并非由受信任的终端签发。"


class TokenExpired(TokenRejected):
    code = "TOKEN_EXPIRED"
    message_en = "The session has expired. Please sign in again."
    message_zh_text = "会话已过期，请重新登录。"

    def __init__(self, expires_at: int | None = None, detail: str | None = None) -> None:
        self.expires_at = expires_at
        super().__init__(detail, expires_at=expires_at)

    @property
    def message(self) -> str:
        if self.expires_at is None:
            return super().message
        return _with_detail(f"The session expired at {_utc(self.expires_at)}. Please sign in again.", self.detail)

    @property
    def message_zh(self) -> str:
        if self.expires_at is None:
            return super().message_zh
        return f"会话已于 {_utc(self.expires_at)} 过期，请重新登录。"


class TokenNotYetValid(TokenRejected):
    """``iat`` lies further in the future than the leeway: almost always a clock that is wrong,
    on the kiosk or on the verifier — which is why it is not reported as tampering."""

    code = "TOKEN_NOT_YET_VALID"
    message_en = "The session token was issued in the future. Check the clocks of the kiosk and of this computer."
    message_zh_text = "会话令牌的签发时间晚于当前时间，请检查自助终端和本机的时钟。"

    def __init__(self, issued_at: int | None = None, detail: str | None = None) -> None:
        self.issued_at = issued_at
        super().__init__(detail, issued_at=issued_at)

    @property
    def message(self) -> str:
        if self.issued_at is None:
            return super().message
        return _with_detail(
            f"The session token was issued in the future ({_utc(self.issued_at)}). "
            "Check the clocks of the kiosk and of this computer.",
            self.detail,
        )

    @property
    def message_zh(self) -> str:
        if self.issued_at is None:
            return super().message_zh
        return f"会话令牌的签发时间（{_utc(self.issued_at)}）晚于当前时间，请检查自助终端和本机的时钟。"


class TokenWrongTerminal(TokenRejected):
    """The signature verifies, but the token names another terminal than the one expected."""

    code = "TOKEN_WRONG_TERMINAL"
    message_en = "The session token was issued by another terminal."
    message_zh_text = "会话令牌由其他终端签发。"

    def __init__(
        self, terminal_id: str | None = None, expected_terminal_id: str | None = None, detail: str | None = None
    ) -> None:
        self.terminal_id = terminal_id
        self.expected_terminal_id = expected_terminal_id
        super().__init__(detail, terminal_id=terminal_id, expected_terminal_id=expected_terminal_id)

    @property
    def message(self) -> str:
        if self.terminal_id is None or self.expected_terminal_id is None:
            return super().message
        return _with_detail(
            f"The session token was issued by terminal {self.terminal_id}, not by {self.expected_terminal_id}.",
            self.detail,
        )

    @property
    def message_zh(self) -> str:
        if self.terminal_id is None or self.expected_terminal_id is None:
            return super().message_zh
        return f"会话令牌由终端 {self.terminal_id} 签发，而非 {self.expected_terminal_id}。"


class TokenKeyError(SscardError):
    """A key cannot be used: file missing or unreadable, not an Ed25519 key, or a private key file
    that other users can read.  A problem of the verifier's (or issuer's) setup, not of the token."""

    code = "TOKEN_KEY_ERROR"
    message_en = "Session key problem: {problem}."
    message_zh_text = "会话密钥错误：{problem_zh}。"

    def __init__(
        self,
        problem: str = "the key cannot be used",
        problem_zh: str = "密钥不可用",
        path: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.path = path
        super().__init__(detail, problem=problem, problem_zh=problem_zh, path=path)


#: Every error this module raises, for documentation and tests.
TOKEN_ERRORS: Final = (TokenMalformed, TokenInvalid, TokenExpired, TokenNotYetValid, TokenWrongTerminal, TokenKeyError)


def _with_detail(text: str, detail: str | None) -> str:
    return f"{text} ({detail})" if detail else text


def _utc(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{seconds} (Unix time)"


# --- claims ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionClaims:
    """What a session token says.  JSON names in brackets (docs/tokens.md).

    ``ssn``, ``name`` and ``card_number`` are left out of ``repr`` so that logging a claims object
    does not log the resident.  Construction checks every field and raises ``ValueError`` naming
    the field (never its value).
    """

    session_id: str  # [sid] unique per session; the key of a backend's deny list
    terminal_id: str  # [iss] the kiosk that signed in the resident
    ssn: str = field(repr=False)  # [sub] 社会保障号码
    name: str = field(repr=False)  # [name] 姓名 (may be empty when the card did not give it)
    card_number: str = field(repr=False)  # [card_number] 卡号
    card_id: str  # [card_id] 卡识别码, 32 upper-case hex characters
    method: str  # [method] one of METHODS
    issued_at: int  # [iat] Unix seconds
    expires_at: int  # [exp] Unix seconds, > issued_at
    key_id: str | None = None  # [kid] the signing key's id; set by issue_token

    def __post_init__(self) -> None:
        # A QR or ID-card session has no SSC: no card number or identification code.  For "qr" the
        # subject is the scanned code itself (opaque; the backend resolves it online).
        by_card = self.method in (METHOD_CARD_PIN, METHOD_CARD)
        for name, value, required, limit in (
            ("sid", self.session_id, True, MAX_FIELD_LENGTH),
            ("iss", self.terminal_id, True, MAX_FIELD_LENGTH),
            ("sub", self.ssn, True, MAX_QR_SUBJECT if self.method == METHOD_QR else MAX_FIELD_LENGTH),
            ("name", self.name, False, MAX_FIELD_LENGTH),
            ("card_number", self.card_number, by_card, MAX_FIELD_LENGTH),
            ("method", self.method, True, MAX_FIELD_LENGTH),
        ):
            _check_text(name, value, required, limit)
        if not isinstance(self.card_id, str) or not (
            _CARD_ID.fullmatch(self.card_id) or (not by_card and self.card_id == "")
        ):
            raise ValueError("claim 'card_id' must be 32 upper-case hexadecimal characters")
        if self.method not in METHODS:
            raise ValueError(f"claim 'method' must be one of {', '.join(sorted(METHODS))}")
        times: tuple[tuple[str, object], ...] = (("iat", self.issued_at), ("exp", self.expires_at))
        for claim, seconds in times:  # JSON gives any type; bool is an int to Python, not to JSON
            if type(seconds) is not int or not 0 <= seconds <= MAX_TIME:
                raise ValueError(f"claim '{claim}' must be an integer number of seconds (0 to 2**53-1)")
        if self.expires_at <= self.issued_at:
            raise ValueError("claim 'exp' must be later than 'iat'")
        if self.key_id is not None and (not isinstance(self.key_id, str) or not _KEY_ID.fullmatch(self.key_id)):
            raise ValueError("claim 'kid' must be 16 lower-case hexadecimal characters")

    @classmethod
    def create(
        cls,
        *,
        terminal_id: str,
        ssn: str,
        name: str,
        card_number: str,
        card_id: str,
        method: str,
        ttl: int,
        now: float | None = None,
        session_id: str | None = None,
    ) -> SessionClaims:
        """Claims for a session starting ``now`` (default: the clock) and lasting ``ttl`` seconds."""
        if type(ttl) is not int or ttl < 1:
            raise ValueError("ttl must be a whole number of seconds, at least 1")
        issued = int(time.time() if now is None else now)
        return cls(
            session_id=new_session_id() if session_id is None else session_id,
            terminal_id=terminal_id,
            ssn=ssn,
            name=name,
            card_number=card_number,
            card_id=card_id,
            method=method,
            issued_at=issued,
            expires_at=issued + ttl,
        )

    def to_payload(self) -> dict[str, Any]:
        """The JSON object inside the token (``kid`` only when set)."""
        payload: dict[str, Any] = {
            "v": VERSION,
            "sid": self.session_id,
            "iss": self.terminal_id,
            "sub": self.ssn,
            "name": self.name,
            "card_number": self.card_number,
            "card_id": self.card_id,
            "method": self.method,
            "iat": self.issued_at,
            "exp": self.expires_at,
        }
        if self.key_id is not None:
            payload["kid"] = self.key_id
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SessionClaims:
        """Claims from a token's JSON object; :class:`TokenMalformed` names what is wrong.

        Members this version does not know are ignored, so a terminal may add optional ones
        without breaking deployed verifiers; a change of meaning needs a new version (``sst2``).
        """
        version = payload.get("v")
        if type(version) is not int or version != VERSION:
            raise TokenMalformed(f"claim 'v' must be {VERSION}")
        missing = [name for name in _REQUIRED if name not in payload]
        if missing:
            raise TokenMalformed(f"claims missing: {', '.join(missing)}")
        try:
            return cls(
                session_id=payload["sid"],
                terminal_id=payload["iss"],
                ssn=payload["sub"],
                name=payload["name"],
                card_number=payload["card_number"],
                card_id=payload["card_id"],
                method=payload["method"],
                issued_at=payload["iat"],
                expires_at=payload["exp"],
                key_id=payload.get("kid"),
            )
        except ValueError as exc:  # our own messages: they name the claim, never its value
            raise TokenMalformed(str(exc)) from None


_REQUIRED: Final = ("sid", "iss", "sub", "name", "card_number", "card_id", "method", "iat", "exp")


def _check_text(name: str, value: object, required: bool, limit: int = 128) -> None:
    if not isinstance(value, str):
        raise ValueError(f"claim '{name}' must be a string")
    if required and not value:
        raise ValueError(f"claim '{name}' must not be empty")
    if len(value) > limit:
        raise ValueError(f"claim '{name}' is longer than {limit} characters")
    # Control characters would let a claim forge lines in a backend's log; lone surrogates are not text.
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or 0xD800 <= ord(ch) < 0xE000 for ch in value):
        raise ValueError(f"claim '{name}' contains control characters or is not valid Unicode")


def new_session_id() -> str:
    """A fresh session id: 128 random bits, base64url (22 characters)."""
    return secrets.token_urlsafe(16)


class SessionLike(Protocol):
    """What :func:`claims_for` reads from a session (``sscard.session.Session`` has all of it)."""

    @property
    def id(self) -> str: ...
    @property
    def terminal_id(self) -> str: ...
    @property
    def ssn(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def card_number(self) -> str: ...
    @property
    def card_id(self) -> str: ...
    @property
    def method(self) -> str: ...  # a str, or a str-valued Enum such as sscard.session.Method
    @property
    def started(self) -> datetime: ...
    @property
    def expires(self) -> datetime: ...


def claims_for(session: SessionLike, ttl: int | None = None) -> SessionClaims:
    """The claims of a kiosk session: ``iat`` its start, ``exp`` its start + ``ttl`` seconds, or
    (``ttl`` None) its current expiry.  A token cannot be extended offline, so a session whose
    idle timeout moves on with activity needs a fresh token when it outlives the first one.

    Raises :class:`~sscard.errors.ConfigError` when the terminal has no id (``[terminal] id``),
    and :class:`TokenMalformed` when the session lacks what a token must carry (an SSN, a card
    number, a 32-hex card identification code); the message names the claim, never its value.
    """
    if not session.terminal_id:
        raise ConfigError("[terminal] id must be set to sign session tokens")
    issued = int(session.started.timestamp())
    if ttl is not None:
        if type(ttl) is not int or ttl < 1:
            raise ValueError("ttl must be a whole number of seconds, at least 1")
        expires = issued + ttl
    else:
        expires = max(issued + 1, math.ceil(session.expires.timestamp()))
    method = session.method
    try:
        return SessionClaims(
            session_id=session.id,
            terminal_id=session.terminal_id,
            ssn=session.ssn,
            name=session.name,
            card_number=session.card_number,
            card_id=session.card_id,
            method=str(getattr(method, "value", method)),
            issued_at=issued,
            expires_at=expires,
        )
    except ValueError as exc:
        raise TokenMalformed(f"this session cannot be put in a token: {exc}") from None


# --- keys -------------------------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's id (``kid``): the first 8 bytes of SHA-256 over its 32 raw bytes, in lower-case hex."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def key_ring(public_keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """Public keys by key id, ready for :func:`verify_token`."""
    return {key_id(key): key for key in public_keys}


def generate_terminal_key() -> tuple[bytes, bytes]:
    """A new terminal key pair: (private key PEM, PKCS#8 unencrypted; public key PEM, SubjectPublicKeyInfo)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def write_terminal_key(
    private_path: str | os.PathLike[str], public_path: str | os.PathLike[str], *, overwrite: bool = False
) -> str:
    """Generate a key pair and write it: the private key mode 0600, the public key 0644.

    Existing files are refused unless ``overwrite``.  Returns the new key's id.
    """
    if not overwrite:  # check both first, so a refused public file leaves no private key behind
        for path in (Path(private_path), Path(public_path)):
            if path.exists():
                raise _exists(path)
    private_pem, public_pem = generate_terminal_key()
    _write(Path(private_path), private_pem, 0o600, overwrite)
    _write(Path(public_path), public_pem, 0o644, overwrite)
    return key_id(load_public_key(public_pem))


def _write(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    """Through :func:`sscard.files.create_private_file`: created with ``mode``, never through a
    symlink (``--force`` included), never into a FIFO or device (issue 11)."""
    if not overwrite and os.path.lexists(path):
        raise _exists(path)
    try:
        create_private_file(path, data, mode=mode, overwrite=overwrite)
    except PrivateFileError as exc:
        raise _key_file_error(exc, "cannot write", "无法写入") from None


def _key_file_error(exc: PrivateFileError, verb: str, verb_zh: str) -> TokenKeyError:
    """FILE_REFUSED of a key path as this module's TOKEN_KEY_ERROR (exit 7 either way)."""
    path, problem, problem_zh = exc.fields["path"], exc.fields["problem"], exc.fields["problem_zh"]
    return TokenKeyError(f"{verb} {path}: {problem}", f"{verb_zh} {path}：{problem_zh}", str(path))


def _exists(path: Path) -> TokenKeyError:
    return TokenKeyError(
        f"{path} already exists (give --force to replace it)", f"{path} 已存在（使用--force覆盖）", str(path)
    )


def load_private_key(path: str | os.PathLike[str], password: bytes | None = None) -> Ed25519PrivateKey:
    """The terminal's private key from a PEM file that only its owner can read.

    A file that group or others may read (``mode & 0o077``) is refused: the key would already
    have to be considered leaked.
    """
    where = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading would wait for a writer for ever (issue 11); the
        # descriptor is then refused below as not a regular file.
        fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise TokenKeyError(
            f"private key file {where} does not exist", f"私钥文件 {where} 不存在", str(where)
        ) from None
    except OSError as exc:
        raise TokenKeyError(
            f"cannot read private key file {where}: {exc.strerror}", f"无法读取私钥文件 {where}", str(where)
        ) from None
    try:
        info = os.fstat(fd)  # the file actually opened, not whatever the path names a moment later
        if not stat.S_ISREG(info.st_mode):
            raise TokenKeyError(f"{where} is not a regular file", f"{where} 不是普通文件", str(where))
        if os.name == "posix" and info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise TokenKeyError(
                f"private key file {where} is open to other users (mode {mode:04o}); run chmod 600 {where}",
                f"私钥文件 {where} 可被其他用户访问（权限 {mode:04o}），请执行 chmod 600 {where}",
                str(where),
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read()
    except OSError as exc:
        raise TokenKeyError(
            f"cannot read private key file {where}: {exc.strerror}", f"无法读取私钥文件 {where}", str(where)
        ) from None
    finally:
        os.close(fd)
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise TokenKeyError(
            f"{where} is not a PEM private key (or the password is wrong)",
            f"{where} 不是PEM格式的私钥（或口令错误）",
            str(where),
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise TokenKeyError(
            f"{where} holds a {_key_kind(key)} key, not an Ed25519 key", f"{where} 不是Ed25519密钥", str(where)
        )
    return key


def load_public_key(source: str | os.PathLike[str] | bytes) -> Ed25519PublicKey:
    """A public key from PEM bytes, or from a PEM file (public keys may be world-readable)."""
    where: str | None = None
    if isinstance(source, bytes):
        data = source
    else:
        where = str(source)
        try:
            data = read_regular_file(source)  # a FIFO or a device would hang or never end (issue 11)
        except PrivateFileError as exc:
            raise _key_file_error(exc, "cannot read public key file", "无法读取公钥文件") from None
        except FileNotFoundError:
            raise TokenKeyError(f"public key file {where} does not exist", f"公钥文件 {where} 不存在", where) from None
        except OSError as exc:
            raise TokenKeyError(
                f"cannot read public key file {where}: {exc.strerror}", f"无法读取公钥文件 {where}", where
            ) from None
    label = where or "the data"
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise TokenKeyError(f"{label} is not a PEM public key", f"{label} 不是PEM格式的公钥", where) from None
    if not isinstance(key, Ed25519PublicKey):
        raise TokenKeyError(
            f"{label} holds a {_key_kind(key)} key, not an Ed25519 key", f"{label} 不是Ed25519公钥", where
        )
    return key


def _key_kind(key: object) -> str:
    return type(key).__name__.lstrip("_").removesuffix("PrivateKey").removesuffix("PublicKey") or "different"


# --- issue and verify --------------------------------------------------------------------------------


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
