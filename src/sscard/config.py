"""Configuration: a TOML file, then environment variables, then command-line options.

Search path (the first file that exists wins; ``SSCARD_CONFIG`` names one explicitly and must exist):

1. ``$SSCARD_CONFIG``
2. ``./sscard.toml``
3. ``$XDG_CONFIG_HOME/sscard/config.toml`` (default ``~/.config/sscard/config.toml``)
4. ``/etc/sscard/config.toml``

Example::

    [reader]
    name = "ACS ACR1281"    # the user-card (contact) reader: substring of its PC/SC name, or
                            # "sim:typical", "replay:PATH"
    contactless = "PICC"    # the contactless slot of the same reader, or another reader
    sam = "SAM"             # the PSAM slot (reference §5); never used for the resident's card
    itype = 3               # national interface iType (reference §6): 1 contact, 2 contactless,
                            # 3 auto contact first (default), 4 auto contactless first
    busy_wait = 2.0         # seconds to wait for a reader another program holds exclusively

    [reader.slots]          # how unnamed slots of multi-slot readers are told apart (by name)
    sam_keywords = ["SAM"]
    contactless_keywords = ["PICC", "Contactless", "CL"]

    [terminal]
    id = "410100813475"     # 终端机编号, reported in iReadCardBas (reference §6)
    device_id = "MT170701000006"   # 终端设备号

    [keys]                  # card authentication (docs/card-auth.md)
    service = "psam"        # none | psam | hsm | software (simulator and tests only)
    profile = "default"     # PSAM commands and diversification factors, or a TOML path
    authenticate_card = true   # internal authentication (is the card genuine) on read and sign-in
    # file = "test-keys.toml"; keyset = "test"; allow_software = true   (software keys only)

    [session]               # sign-in (docs/tokens.md)
    require_pin = true
    idle_timeout = 300      # seconds without activity before the session ends
    key = "/etc/sscard/terminal-key.pem"   # Ed25519 private key that signs session tokens
    token_ttl = 300         # token lifetime in seconds (default: idle_timeout)
    public_key = "/etc/sscard/terminal-key.pub"   # verifier: default for `sscard token verify`
    leeway = 30             # verifier: tolerated clock skew in seconds

    [qr]                    # QR scanner (docs/serial.md)
    port = "/dev/sscard-qr"
    baudrate = 9600
    terminator = "any"      # any (CR, LF or CR LF) | CR | LF | CRLF | none (inter-character timeout)
    dedup_window = 2.0      # the same code again within this many seconds is one scan

    [idcard]                # resident ID-card reader (reference §7)
    port = "/dev/sscard-idcard"
    baudrate = 115200

    [service]               # sscard serve (docs/service.md)
    allowed_origins = ["http://127.0.0.1:8765"]   # pages that may call it (default: its own)
    # token = "…"           # bearer token for non-browser clients (or SSCARD_SERVICE_TOKEN)
    queue_timeout = 10      # seconds a request waits while the reader is busy
    header_timeout = 10     # seconds a connection has to send a request's headers
    body_timeout = 10       # seconds from a request's headers to the end of its body
    max_connections = 256   # open connections; at the cap the oldest idle one is closed

Environment overrides: ``SSCARD_READER``, ``SSCARD_CONTACTLESS_READER``, ``SSCARD_SAM_READER``,
``SSCARD_ITYPE``, ``SSCARD_BUSY_WAIT``, ``SSCARD_TERMINAL_ID``, ``SSCARD_DEVICE_ID``,
``SSCARD_KEY_SERVICE``, ``SSCARD_ALLOW_SOFTWARE_KEYS``, ``SSCARD_SESSION_KEY``, ``SSCARD_QR_PORT``,
``SSCARD_IDCARD_PORT``, ``SSCARD_SERVICE_TOKEN``; command-line
options override both.  No PIN is ever read from configuration or the environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sscard.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


#: iType values of the national reader interface (reference §6).
ITYPE_CONTACT, ITYPE_CONTACTLESS, ITYPE_CONTACT_FIRST, ITYPE_CONTACTLESS_FIRST = 1, 2, 3, 4
ITYPES = (ITYPE_CONTACT, ITYPE_CONTACTLESS, ITYPE_CONTACT_FIRST, ITYPE_CONTACTLESS_FIRST)
#: Name fragments that mark a slot of a multi-slot reader.  Vendors name slots freely ("ICC",
#: "PICC", "SAM", "CL", "Contactless"), so these are data: extend them in ``[reader.slots]``.
DEFAULT_SAM_KEYWORDS = ("SAM",)
DEFAULT_CONTACTLESS_KEYWORDS = ("PICC", "Contactless", "CL")
KEY_SERVICES = ("none", "psam", "hsm", "software")


@dataclass(frozen=True)
class Config:
    #: The user-card reader (contact interface, or the only reader): a PC/SC name substring,
    #: ``sim:PERSONA`` or ``replay:PATH``; None picks by slot kind and ``itype``.
    reader: str | None = None
    contactless_reader: str | None = None
    sam_reader: str | None = None
    itype: int = ITYPE_CONTACT_FIRST
    busy_wait: float = 0.0
    sam_keywords: tuple[str, ...] = DEFAULT_SAM_KEYWORDS
    contactless_keywords: tuple[str, ...] = DEFAULT_CONTACTLESS_KEYWORDS
    terminal_id: str = ""
    device_id: str = ""
    #: Who computes card-authentication cryptograms (docs/card-auth.md): "none", "psam", "hsm"
    #: (the two-step calls only) or "software" (simulator and tests only).
    key_service: str = "none"
    #: The card-authentication profile: a bundled name or a TOML path.
    key_profile: str = "default"
    #: Software keys: the key file, the key set in it, and the explicit permission they need.
    key_file: str | None = None
    keyset: str = "test"
    allow_software_keys: bool = False
    #: Check that the card is genuine (internal authentication) on every read and sign-in.
    authenticate_card: bool = False
    #: Sign-in: PIN policy, idle timeout, and the terminal's token-signing key (docs/tokens.md).
    require_pin: bool = True
    session_idle: float = 300.0
    session_key: str | None = None
    #: Session tokens (docs/tokens.md): lifetime in seconds (None: the idle timeout); for a
    #: verifier, the default public key of ``sscard token verify`` and the clock-skew leeway.
    token_ttl: int | None = None
    token_public_key: str | None = None
    token_leeway: float = 30.0
    #: Serial devices (docs/serial.md): the QR scanner and the resident ID-card reader.
    qr_port: str | None = None
    qr_baudrate: int = 9600
    qr_terminator: str = "ANY"
    qr_dedup_window: float = 2.0
    idcard_port: str | None = None
    idcard_baudrate: int = 115200
    #: The local service (docs/service.md): origins whose pages may call it (default: its own),
    #: a bearer token for non-browser clients, how long a request waits for a busy reader.
    service_origins: tuple[str, ...] = ()
    service_token: str | None = None
    service_queue_timeout: float = 10.0
    #: Connection limits of the service (docs/service.md, "Connection limits").
    service_header_timeout: float = 10.0
    service_body_timeout: float = 10.0
    service_max_connections: int = 256
    source: str | None = None

    def __post_init__(self) -> None:
        if self.itype not in ITYPES:
            raise ConfigError(f"itype must be 1 (contact), 2 (contactless), 3 or 4 (auto), not {self.itype!r}")
        if self.busy_wait < 0:
            raise ConfigError(f"busy_wait must not be negative, not {self.busy_wait!r}")
        if self.key_service not in KEY_SERVICES:
            raise ConfigError(f"[keys] service must be one of {', '.join(KEY_SERVICES)}, not {self.key_service!r}")
        if self.token_ttl is not None and not 1 <= self.token_ttl <= 86_400:
            raise ConfigError(f"[session] token_ttl must be 1 to 86400 seconds, not {self.token_ttl!r}")
        if not 0 <= self.token_leeway <= 300:
            raise ConfigError(f"[session] leeway must be 0 to 300 seconds, not {self.token_leeway!r}")
        if self.qr_terminator not in ("ANY", "CR", "LF", "CRLF", "NONE"):
            raise ConfigError(f"[qr] terminator must be any, CR, LF, CRLF or none, not {self.qr_terminator!r}")
        if self.session_idle <= 0:
            raise ConfigError(f"[session] idle_timeout must be positive, not {self.session_idle!r}")
        timeouts = (("header_timeout", self.service_header_timeout), ("body_timeout", self.service_body_timeout))
        for key, value in timeouts:
            if not 0.1 <= value <= 600:  # also false for nan
                raise ConfigError(f"[service] {key} must be 0.1 to 600 seconds, not {value!r}")
        if not 8 <= self.service_max_connections <= 65_536:
            raise ConfigError(f"[service] max_connections must be 8 to 65536, not {self.service_max_connections!r}")

    def with_overrides(self, **values: Any) -> Config:
        """Apply command-line values; ``None`` means "not given" and keeps the current value."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def search_path(env: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if env is None else env
    xdg = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [Path("sscard.toml"), xdg / "sscard" / "config.toml", Path("/etc/sscard/config.toml")]


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the first configuration file found, then apply environment overrides."""
    env = os.environ if env is None else env
    explicit = path or env.get("SSCARD_CONFIG")
    data: dict[str, Any] = {}
    source = None
    if explicit:
        candidate = Path(explicit)
        if not candidate.is_file():
            raise ConfigError(f"configuration file {candidate} does not exist")
        data, source = _read(candidate), str(candidate)
    else:
        for candidate in search_path(env):
            if candidate.is_file():
                data, source = _read(candidate), str(candidate)
                break
    reader = data.get("reader", {})
    slots = reader.get("slots", {}) if isinstance(reader, dict) else {}
    terminal = data.get("terminal", {})
    keys = data.get("keys", {})
    session = data.get("session", {})
    qr = data.get("qr", {})
    idcard = data.get("idcard", {})
    service = data.get("service", {})
    try:
        config = Config(
            reader=_opt_str(reader.get("name")),
            contactless_reader=_opt_str(reader.get("contactless")),
            sam_reader=_opt_str(reader.get("sam")),
            itype=int(reader.get("itype", ITYPE_CONTACT_FIRST)),
            busy_wait=float(reader.get("busy_wait", 0.0)),
            sam_keywords=_keywords(slots.get("sam_keywords", DEFAULT_SAM_KEYWORDS)),
            contactless_keywords=_keywords(slots.get("contactless_keywords", DEFAULT_CONTACTLESS_KEYWORDS)),
            terminal_id=str(terminal.get("id", "")),
            device_id=str(terminal.get("device_id", "")),
            key_service=str(keys.get("service", "none")),
            key_profile=str(keys.get("profile", "default")),
            key_file=_opt_str(keys.get("file")),
            keyset=str(keys.get("keyset", "test")),
            allow_software_keys=_bool(keys.get("allow_software", False)),
            authenticate_card=_bool(keys.get("authenticate_card", False)),
            require_pin=_bool(session.get("require_pin", True)),
            session_idle=float(session.get("idle_timeout", 300.0)),
            session_key=_opt_str(session.get("key")),
            token_ttl=_opt_seconds(session.get("token_ttl")),
            token_public_key=_opt_str(session.get("public_key")),
            token_leeway=float(session.get("leeway", 30.0)),
            qr_port=_opt_str(qr.get("port")),
            qr_baudrate=int(qr.get("baudrate", 9600)),
            qr_terminator=str(qr.get("terminator", "any")).upper(),
            qr_dedup_window=float(qr.get("dedup_window", 2.0)),
            idcard_port=_opt_str(idcard.get("port")),
            idcard_baudrate=int(idcard.get("baudrate", 115200)),
            service_origins=tuple(str(origin) for origin in service.get("allowed_origins", ())),
            service_token=_opt_str(service.get("token")),
            service_queue_timeout=float(service.get("queue_timeout", 10.0)),
            service_header_timeout=float(service.get("header_timeout", 10.0)),
            service_body_timeout=float(service.get("body_timeout", 10.0)),
            service_max_connections=int(service.get("max_connections", 256)),
            source=source,
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"invalid value in {source or 'the configuration'}: {exc}") from None
    try:
        return config.with_overrides(
            reader=env.get("SSCARD_READER") or None,
            contactless_reader=env.get("SSCARD_CONTACTLESS_READER") or None,
            sam_reader=env.get("SSCARD_SAM_READER") or None,
            itype=int(env["SSCARD_ITYPE"]) if env.get("SSCARD_ITYPE") else None,
            busy_wait=float(env["SSCARD_BUSY_WAIT"]) if env.get("SSCARD_BUSY_WAIT") else None,
            terminal_id=env.get("SSCARD_TERMINAL_ID"),
            device_id=env.get("SSCARD_DEVICE_ID"),
            key_service=env.get("SSCARD_KEY_SERVICE") or None,
            allow_software_keys=_bool(env["SSCARD_ALLOW_SOFTWARE_KEYS"])
            if env.get("SSCARD_ALLOW_SOFTWARE_KEYS")
            else None,
            session_key=env.get("SSCARD_SESSION_KEY") or None,
            qr_port=env.get("SSCARD_QR_PORT") or None,
            idcard_port=env.get("SSCARD_IDCARD_PORT") or None,
            service_token=env.get("SSCARD_SERVICE_TOKEN") or None,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid value in the environment: {exc}") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return data


def _keywords(value: object) -> tuple[str, ...]:
    if isinstance(value, list | tuple) and value and all(isinstance(item, str) and item for item in value):
        return tuple(str(item) for item in value)
    raise TypeError(f"slot keywords must be a list of non-empty strings, not {value!r}")


def _opt_seconds(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number of seconds, not {value!r}")
    return value


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise ValueError(f"expected true or false, not {value!r}")


def _opt_str(value: object) -> str | None:
    return None if value in (None, "") else str(value)
