"""Configuration: a TOML file, then environment variables, then command-line options.

Why one module of over 400 lines: the schema (every key with its type, its check and its
messages) is one table that the loader, ``sscard config show`` and the tests all read; apart from
the loader, a key would be separated from how it is checked.

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
    sam = "SAM"             # the PSAM slot (docs/card-reference.md §5); never used for the resident's card
    itype = 3               # national interface iType (docs/card-reference.md §6): 1 contact, 2 contactless,
                            # 3 auto contact first (default), 4 auto contactless first
    busy_wait = 2.0         # seconds to wait for a reader another program holds exclusively

    [reader.slots]          # how unnamed slots of multi-slot readers are told apart (by name)
    sam_keywords = ["SAM"]
    contactless_keywords = ["PICC", "Contactless", "CL"]

    [terminal]
    id = "410100813475"     # 终端机编号, reported in iReadCardBas (docs/card-reference.md §6)
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

    [idcard]                # resident ID-card reader (docs/card-reference.md §9)
    port = "/dev/sscard-idcard"
    baudrate = 115200

    [service]               # sscard serve (docs/service.md)
    allowed_origins = ["http://127.0.0.1:8765"]   # pages that may call it (default: its own)
    # token = "…"           # bearer token for non-browser clients (or SSCARD_SERVICE_TOKEN)
    queue_timeout = 10      # seconds a request waits while the reader is busy
    header_timeout = 10     # seconds a connection has to send a request's headers
    body_timeout = 10       # seconds from a request's headers to the end of its body
    max_connections = 256   # open connections; at the cap the oldest idle one is closed
    port = 8765             # sscard serve's port (and where sscard doctor looks for it)
    # socket = "/run/sscard/sscard.sock"   # national-interface socket (docs/native.md)
    pin_source = "page"     # page (the kiosk page, /v1/pin-entry) | pinpad (the reader's PIN pad)

    [kiosk]                 # the reference kiosk page the service serves (docs/service.md)
    idle_timeout = 60       # seconds without a touch before the page returns to its start (and signs out)
    [bridge]                # a vendor bridge's messages on its port (docs/service.md)
    # profile = "ssc-ws"    # a shipped profile (sscard serve --list-bridges) or a TOML path
    # port = 12342          # default: the profile's own

    [logging]
    show_personal_data = false   # true: logs and -vv traces show SSNs, names... in clear (warned)
    format = "text"         # text (journald-friendly) | json (one object per line)
    # file = "/var/log/sscard/sscard.log"   # instead of standard error; rotated at max_bytes
    max_bytes = 10485760    # rotate the log file at this size
    backups = 5             # rotated files kept (sscard.log.1 … .5)

    [medical]               # hospital front desks: the platform's input fields (docs/medical.md)
    ec_url = "https://…"    # the platform's e-voucher endpoint (ec.query); unset: codes unresolved
    timeout = 10            # seconds for one ec.query, connection to last byte; never retried
    allow_http = false      # true: plain http:// to a host that is not loopback (a 前置机 on the LAN)
    org_id = "H41010000001" # 定点编号, the institution's code, sent as orgId
    card_passtype = "2"     # "1": verify the SSC's PIN; "2": not (the HIS checks its own password)
    business_type = "01101" # ec.query businessType; operator_id, operator_name, office_id,
                            # office_name, device_type: its other data fields (default "")
    psn_cert_type = "01"    # the platform's code for 居民身份证; default "": medical/data/platform.toml's
                            # (01, UNCONFIRMED)

Environment overrides: ``SSCARD_READER``, ``SSCARD_CONTACTLESS_READER``, ``SSCARD_SAM_READER``,
``SSCARD_ITYPE``, ``SSCARD_BUSY_WAIT``, ``SSCARD_TERMINAL_ID``, ``SSCARD_DEVICE_ID``,
``SSCARD_KEY_SERVICE``, ``SSCARD_ALLOW_SOFTWARE_KEYS``, ``SSCARD_SESSION_KEY``, ``SSCARD_QR_PORT``,
``SSCARD_IDCARD_PORT``, ``SSCARD_SERVICE_TOKEN``, ``SSCARD_SERVICE_PORT``, ``SSCARD_LOG_FORMAT``,
``SSCARD_LOG_FILE``, ``SSCARD_EC_URL``; command-line
options override both.  No PIN is ever read from configuration or the environment.

Every key is declared once, in :data:`SCHEMA` (one line per key: section, key, the Config field it
sets, its type and range, its environment variable).  A file is checked against it strictly:
an unknown section or key, a value of the wrong TOML type, a number out of range, ``inf`` or
``nan`` are a :class:`~sscard.errors.ConfigError` that names the key and the file.  The checks
are plain Python rather than a schema library because the command line loads the configuration
on every start: the candidates' import cost (msgspec ~15 ms, pydantic ~32 ms, jsonschema ~80 ms,
voluptuous ~10 ms, fastjsonschema ~5 ms precompiled, measured in docs/performance.md) would each
cost more than reading and parsing the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sscard.errors import ConfigError

#: iType values of the national reader interface (docs/card-reference.md §6).
ITYPE_CONTACT, ITYPE_CONTACTLESS, ITYPE_CONTACT_FIRST, ITYPE_CONTACTLESS_FIRST = 1, 2, 3, 4
ITYPES = (ITYPE_CONTACT, ITYPE_CONTACTLESS, ITYPE_CONTACT_FIRST, ITYPE_CONTACTLESS_FIRST)
#: Name fragments that mark a slot of a multi-slot reader.  Vendors name slots freely ("ICC",
#: "PICC", "SAM", "CL", "Contactless"), so these are data: extend them in ``[reader.slots]``.
DEFAULT_SAM_KEYWORDS = ("SAM",)
DEFAULT_CONTACTLESS_KEYWORDS = ("PICC", "Contactless", "CL")
KEY_SERVICES = ("none", "psam", "hsm", "software")
QR_TERMINATORS = ("ANY", "CR", "LF", "CRLF", "NONE")
PIN_SOURCES = ("page", "pinpad")
#: CARD_PASSTYPE of the medical insurance library (docs/card-reference.md §7): "1" verify the
#: card's PIN, "2" a database password (the HIS's own; sscard asks for no PIN).
CARD_PASSTYPES = ("1", "2")
#: Where a value came from when neither a file, the environment nor an option set it.
DEFAULT_SOURCE = "default"


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
    #: The service's port (``sscard serve``, found there by ``sscard doctor``), its
    #: national-interface socket libSSCardDriver.so calls (docs/native.md), and its PIN source.
    service_port: int = 8765
    service_socket: str | None = None
    service_pin_source: str = "page"
    #: The reference kiosk page: seconds without a touch before it returns to its start.
    kiosk_idle: float = 60.0
    #: A vendor bridge served beside the API (docs/service.md, "Vendor bridge profiles"): the
    #: profile (a shipped name or a TOML path) and its port (None: the profile's own).
    bridge_profile: str | None = None
    bridge_port: int | None = None
    #: PIPL: logs and -vv APDU traces mask personal data unless this is set (docs/cli.md).
    show_personal_data: bool = False
    #: Hospital front desks (docs/medical.md): the e-voucher endpoint (None: codes stay
    #: unresolved), its timeout, the institution's code, whether the SSC's PIN is verified, and
    #: the other fields of the ec.query request.
    medical_ec_url: str | None = None
    medical_timeout: float = 10.0
    #: Plain http:// to a host that is not loopback (a front-end processor on a private network).
    medical_allow_http: bool = False
    medical_org_id: str = ""
    medical_card_passtype: str = "2"
    medical_business_type: str = "01101"
    medical_operator_id: str = ""
    medical_operator_name: str = ""
    medical_office_id: str = ""
    medical_office_name: str = ""
    medical_device_type: str = ""
    #: The platform's psn_cert_type for a resident ID card; "" (the default): the one of
    #: medical/data/platform.toml, which is UNCONFIRMED (01), so that the code is in one place.
    medical_psn_cert_type: str = ""
    #: The log's form and file (docs/cli.md "Logs"): text or json; a rotated file, its size and count.
    log_format: str = "text"
    log_file: str | None = None
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    #: The configuration file read, None when there was none.
    source: str | None = None
    #: Where each field's value came from: the file, ``env SSCARD_…``, ``option``; absent = default.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.itype not in ITYPES:
            raise ConfigError(
                f"itype must be 1 (contact), 2 (contactless), 3 or 4 (auto), not {self.itype!r}",
                problem_zh=f"[reader]中的'itype'必须是1（接触）、2（非接触）、3或4（自动），而不是 {self.itype!r}",
            )
        for name, key in _FIELD_KEYS.items():
            value = getattr(self, name)
            if isinstance(key.kind, Number) and value is not None and not key.kind.accepts(value):
                raise ConfigError(
                    f"[{key.section}] {key.name} {key.kind.en}, not {value!r}",
                    problem_zh=f"[{key.section}] {key.name} {key.kind.zh}，而不是 {value!r}",
                    key=key.path,
                )
        if self.key_service not in KEY_SERVICES:
            raise ConfigError(
                f"[keys] service must be one of {', '.join(KEY_SERVICES)}, not {self.key_service!r}",
                problem_zh=f"[keys]中的'service'必须是 {'、'.join(KEY_SERVICES)} 之一，而不是 {self.key_service!r}",
            )
        if self.token_ttl is not None and not 1 <= self.token_ttl <= 86_400:
            raise ConfigError(
                f"[session] token_ttl must be 1 to 86400 seconds, not {self.token_ttl!r}",
                problem_zh=f"[session] token_ttl 必须是1到86400秒，而不是 {self.token_ttl!r}",
            )
        if self.qr_terminator not in QR_TERMINATORS:
            raise ConfigError(
                f"[qr] terminator must be any, CR, LF, CRLF or none, not {self.qr_terminator!r}",
                problem_zh=f"[qr]中的'terminator'必须是'any'、CR、LF、CRLF或'none'，而不是 {self.qr_terminator!r}",
            )

    def with_overrides(self, **values: Any) -> Config:
        """Apply command-line values; ``None`` means "not given" and keeps the current value."""
        given = {k: v for k, v in values.items() if v is not None}
        if not given:
            return self
        return replace(self, **given, origins={**self.origins, **dict.fromkeys(given, "option")})

    def origin(self, name: str) -> str:
        """Where field ``name`` got its value: a file path, ``env NAME``, ``option`` or ``default``."""
        return self.origins.get(name, DEFAULT_SOURCE)


# --- the schema -------------------------------------------------------------------------------


class Invalid(ValueError):
    """A value that does not fit its key: the reason in English and in Chinese."""

    def __init__(self, en: str, zh: str) -> None:
        super().__init__(en)
        self.en, self.zh = en, zh


# The kinds and keys are plain classes, not dataclasses: the CLI builds them on every start, and a
# dataclass costs ~0.4 ms to define (docs/performance.md "Configuration").


class Kind:
    """A key's type: ``parse`` turns a TOML value into the Config field's value or raises Invalid;
    ``from_env`` does the same for an environment variable's text.  ``en``/``zh`` say what it must be."""

    __slots__ = ("en", "zh")

    def __init__(self, en: str, zh: str) -> None:
        self.en, self.zh = en, zh

    def parse(self, value: object) -> Any:
        raise NotImplementedError

    def from_env(self, text: str) -> Any:
        return self.parse(text)

    def fail(self, value: object) -> Invalid:
        shown = _shown(value)
        return Invalid(f"{self.en}, not {shown}", f"{self.zh}，而不是 {shown}")


def _shown(value: object) -> str:
    """A value as an error message quotes it: its repr, at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Text(Kind):
    """A string; ``""`` means "not set" (None) for optional keys; ``choices`` (upper-cased first
    when ``upper``) limit it."""

    __slots__ = ("choices", "optional", "upper")

    def __init__(self, *, optional: bool = True, choices: tuple[str, ...] = (), upper: bool = False) -> None:
        super().__init__("must be a string (in quotes)", "必须是字符串（加引号）")
        self.optional, self.choices, self.upper = optional, choices, upper

    def parse(self, value: object) -> Any:
        if not isinstance(value, str):
            raise self.fail(value)
        if self.choices:
            folded = value.upper() if self.upper else value
            if folded not in self.choices:
                listed = ", ".join(choice.lower() if choice in ("ANY", "NONE") else choice for choice in self.choices)
                raise Invalid(
                    f"must be one of {listed}, not {_shown(value)}", f"必须是 {listed} 之一，而不是 {_shown(value)}"
                )
            return folded
        return (None if value == "" else value) if self.optional else value


class Number(Kind):
    """A finite number from ``low`` to ``high`` (``low`` excluded when ``above``); ints only if ``whole``."""

    __slots__ = ("above", "high", "low", "whole")

    def __init__(self, low: float, high: float, *, above: bool = False, whole: bool = False) -> None:
        unit_en, unit_zh = ("a whole number", "整数") if whole else ("a number", "数字")
        if above:
            super().__init__(
                f"must be {unit_en} above {low:g} up to {high:g}", f"必须是大于{low:g}且不超过{high:g}的{unit_zh}"
            )
        else:
            super().__init__(f"must be {unit_en} from {low:g} to {high:g}", f"必须是{low:g}到{high:g}的{unit_zh}")
        self.low, self.high, self.above, self.whole = low, high, above, whole

    def accepts(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.whole and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        return (value > self.low if self.above else value >= self.low) and value <= self.high

    def parse(self, value: object) -> Any:
        if not self.accepts(value):
            raise self.fail(value)
        return value if self.whole else float(value)  # type: ignore[arg-type]

    def from_env(self, text: str) -> Any:
        try:
            value: float = int(text) if self.whole else float(text)
        except ValueError:
            raise self.fail(text) from None
        return self.parse(value)


class Flag(Kind):
    """A TOML boolean; the environment may also say 1/0, yes/no, on/off."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("must be true or false", "必须是 true 或 false")

    def parse(self, value: object) -> Any:
        if not isinstance(value, bool):
            raise self.fail(value)
        return value

    def from_env(self, text: str) -> Any:
        folded = text.strip().lower()
        if folded in ("1", "true", "yes", "on"):
            return True
        if folded in ("0", "false", "no", "off"):
            return False
        raise self.fail(text)


class Strings(Kind):
    """A list of strings (``["a", "b"]``), non-empty strings in a non-empty list when ``required``."""

    __slots__ = ("required",)

    def __init__(self, *, required: bool = False) -> None:
        super().__init__('must be a list of strings, like ["a", "b"]', '必须是字符串列表，例如 ["a", "b"]')
        self.required = required

    def parse(self, value: object) -> Any:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(value)
        if self.required and (not value or not all(value)):
            raise Invalid(
                f"must be a non-empty list of non-empty strings, not {_shown(value)}",
                f"必须是非空字符串组成的非空列表，而不是 {_shown(value)}",
            )
        return tuple(value)


class Key:
    """One configuration key: ``[section] name`` sets Config ``field``, checked by ``kind``, and may
    be set by the environment variable ``env``."""

    __slots__ = ("env", "field", "kind", "name", "path", "section")

    def __init__(self, section: str, name: str, field: str, kind: Kind, env: str | None = None) -> None:
        self.section, self.name, self.field, self.kind, self.env = section, name, field, kind, env
        self.path = f"{section}.{name}"

    def __repr__(self) -> str:
        return f"Key({self.path!r} -> {self.field})"


TEXT = Text()
SECONDS = Number(low=0, high=86_400)
BAUD = Number(low=0, high=4_000_000, above=True, whole=True)
FLAG = Flag()

#: Every configuration key, one line each (docs/cli.md "Configuration").  Add a key here and a
#: field to Config; nothing else reads the file.
SCHEMA: tuple[Key, ...] = (
    Key("reader", "name", "reader", TEXT, "SSCARD_READER"),
    Key("reader", "contactless", "contactless_reader", TEXT, "SSCARD_CONTACTLESS_READER"),
    Key("reader", "sam", "sam_reader", TEXT, "SSCARD_SAM_READER"),
    Key("reader", "itype", "itype", Number(low=1, high=4, whole=True), "SSCARD_ITYPE"),
    Key("reader", "busy_wait", "busy_wait", Number(low=0, high=3600), "SSCARD_BUSY_WAIT"),
    Key("reader.slots", "sam_keywords", "sam_keywords", Strings(required=True)),
    Key("reader.slots", "contactless_keywords", "contactless_keywords", Strings(required=True)),
    Key("terminal", "id", "terminal_id", Text(optional=False), "SSCARD_TERMINAL_ID"),
    Key("terminal", "device_id", "device_id", Text(optional=False), "SSCARD_DEVICE_ID"),
    Key("keys", "service", "key_service", Text(choices=KEY_SERVICES), "SSCARD_KEY_SERVICE"),
    Key("keys", "profile", "key_profile", Text(optional=False)),
    Key("keys", "file", "key_file", TEXT),
    Key("keys", "keyset", "keyset", Text(optional=False)),
    Key("keys", "allow_software", "allow_software_keys", FLAG, "SSCARD_ALLOW_SOFTWARE_KEYS"),
    Key("keys", "authenticate_card", "authenticate_card", FLAG),
    Key("session", "require_pin", "require_pin", FLAG),
    Key("session", "idle_timeout", "session_idle", Number(low=0, high=86_400, above=True)),
    Key("session", "key", "session_key", TEXT, "SSCARD_SESSION_KEY"),
    Key("session", "token_ttl", "token_ttl", Number(low=1, high=86_400, whole=True)),
    Key("session", "public_key", "token_public_key", TEXT),
    Key("session", "leeway", "token_leeway", Number(low=0, high=300)),
    Key("qr", "port", "qr_port", TEXT, "SSCARD_QR_PORT"),
    Key("qr", "baudrate", "qr_baudrate", BAUD),
    Key("qr", "terminator", "qr_terminator", Text(choices=QR_TERMINATORS, upper=True)),
    Key("qr", "dedup_window", "qr_dedup_window", Number(low=0, high=3600)),
    Key("idcard", "port", "idcard_port", TEXT, "SSCARD_IDCARD_PORT"),
    Key("idcard", "baudrate", "idcard_baudrate", BAUD),
    Key("service", "allowed_origins", "service_origins", Strings()),
    Key("service", "token", "service_token", TEXT, "SSCARD_SERVICE_TOKEN"),
    Key("service", "queue_timeout", "service_queue_timeout", SECONDS),
    Key("service", "header_timeout", "service_header_timeout", Number(0.1, 600)),
    Key("service", "body_timeout", "service_body_timeout", Number(0.1, 600)),
    Key("service", "max_connections", "service_max_connections", Number(8, 65_536, whole=True)),
    Key("service", "port", "service_port", Number(1, 65_535, whole=True), "SSCARD_SERVICE_PORT"),
    Key("service", "socket", "service_socket", TEXT),
    Key("service", "pin_source", "service_pin_source", Text(choices=PIN_SOURCES)),
    Key("kiosk", "idle_timeout", "kiosk_idle", Number(low=1, high=3600)),
    Key("bridge", "profile", "bridge_profile", TEXT),
    Key("bridge", "port", "bridge_port", Number(1, 65_535, whole=True)),
    Key("logging", "show_personal_data", "show_personal_data", FLAG),
    Key("medical", "ec_url", "medical_ec_url", TEXT, "SSCARD_EC_URL"),
    Key("medical", "timeout", "medical_timeout", Number(low=0, high=600, above=True)),
    Key("medical", "allow_http", "medical_allow_http", FLAG),
    Key("medical", "org_id", "medical_org_id", Text(optional=False)),
    Key("medical", "card_passtype", "medical_card_passtype", Text(choices=CARD_PASSTYPES)),
    Key("medical", "business_type", "medical_business_type", Text(optional=False)),
    Key("medical", "operator_id", "medical_operator_id", Text(optional=False)),
    Key("medical", "operator_name", "medical_operator_name", Text(optional=False)),
    Key("medical", "office_id", "medical_office_id", Text(optional=False)),
    Key("medical", "office_name", "medical_office_name", Text(optional=False)),
    Key("medical", "device_type", "medical_device_type", Text(optional=False)),
    Key("medical", "psn_cert_type", "medical_psn_cert_type", Text(optional=False)),
    Key("logging", "format", "log_format", Text(choices=("text", "json")), "SSCARD_LOG_FORMAT"),
    Key("logging", "file", "log_file", TEXT, "SSCARD_LOG_FILE"),
    Key("logging", "max_bytes", "log_max_bytes", Number(1024, 2**40, whole=True)),
    Key("logging", "backups", "log_backups", Number(0, 1000, whole=True)),
)

_KEYS: dict[tuple[str, str], Key] = {(key.section, key.name): key for key in SCHEMA}
_FIELD_KEYS: dict[str, Key] = {key.field: key for key in SCHEMA}
#: Section names, nested ones included ("reader.slots").
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(key.section for key in SCHEMA))
#: Keys whose value is a secret: ``sscard config show`` says only whether they are set.
SECRET_FIELDS = frozenset({"service_token"})


def search_path(env: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if env is None else env
    xdg = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [Path("sscard.toml"), xdg / "sscard" / "config.toml", Path("/etc/sscard/config.toml")]


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the first configuration file found, check it against :data:`SCHEMA`, then apply the
    environment.  Any problem is a ConfigError naming the key and the file (or variable)."""
    env = os.environ if env is None else env
    explicit = path or env.get("SSCARD_CONFIG")
    data: dict[str, Any] = {}
    source = None
    if explicit:
        candidate = Path(explicit)
        if not candidate.is_file():
            raise ConfigError(
                f"configuration file {candidate} does not exist",
                problem_zh=f"配置文件 {candidate} 不存在",
                file=str(candidate),
            )
        data, source = _read(candidate), str(candidate)
    else:
        for candidate in search_path(env):
            if candidate.is_file():
                data, source = _read(candidate), str(candidate)
                break
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if source is not None:
        _check_table(data, "", source, values)
        origins.update(dict.fromkeys(values, source))
    for key in SCHEMA:
        text = env.get(key.env) if key.env else None
        if text:
            try:
                values[key.field] = key.kind.from_env(text)
            except Invalid as exc:
                raise ConfigError(
                    f"environment variable {key.env} ([{key.section}] {key.name}) {exc.en}",
                    problem_zh=f"环境变量 {key.env}（[{key.section}] {key.name}）{exc.zh}",
                    key=key.path,
                    file=f"env {key.env}",
                ) from None
            origins[key.field] = f"env {key.env}"
    return Config(**values, source=source, origins=origins)


def _check_table(table: Mapping[str, Any], section: str, source: str, values: dict[str, Any]) -> None:
    """Check one table of the file against the schema, collecting field values into ``values``."""
    for name, value in table.items():
        path = f"{section}.{name}" if section else name
        if path in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"[{path}] in {source} must be a table (a [{path}] section), not {_shown(value)}",
                    problem_zh=f"{source} 中的 [{path}] 必须是一个表（[{path}] 配置节），而不是 {_shown(value)}",
                    key=path,
                    file=source,
                )
            _check_table(value, path, source, values)
            continue
        key = _KEYS.get((section, name))
        if key is None:
            raise _unknown(section, name, source)
        try:
            values[key.field] = key.kind.parse(value)
        except Invalid as exc:
            raise ConfigError(
                f"[{section}] {name} in {source} {exc.en}",
                problem_zh=f"{source} 中的 [{section}] {name} {exc.zh}",
                key=path,
                file=source,
            ) from None


def _unknown(section: str, name: str, source: str) -> ConfigError:
    import difflib  # only on this error path: start-up never pays for it

    if not section:
        close = difflib.get_close_matches(name, [s for s in SECTIONS if "." not in s], n=1)
        hint_en = f"; perhaps you meant [{close[0]}]" if close else f"; sections are {', '.join(SECTIONS)}"
        hint_zh = f"，可能应为 [{close[0]}]" if close else f"，可用的配置节：{'、'.join(SECTIONS)}"
        return ConfigError(
            f"unknown section [{name}] in {source}{hint_en}",
            problem_zh=f"{source} 中有未知的配置节 [{name}]{hint_zh}",
            key=name,
            file=source,
        )
    known = [key.name for key in SCHEMA if key.section == section]
    known += [s.rsplit(".", 1)[1] for s in SECTIONS if s.startswith(section + ".")]
    close = difflib.get_close_matches(name, known, n=1)
    hint_en = f"; perhaps you meant {close[0]}" if close else f"; keys of [{section}] are {', '.join(known)}"
    hint_zh = f"，可能应为 {close[0]}" if close else f"，[{section}] 的配置项有：{'、'.join(known)}"
    return ConfigError(
        f"unknown key {name} in [{section}] of {source}{hint_en}",
        problem_zh=f"{source} 的 [{section}] 中有未知的配置项 {name}{hint_zh}",
        key=f"{section}.{name}",
        file=source,
    )


def effective(config: Config) -> list[tuple[Key, Any, str]]:
    """Every key with its effective value and where it came from, in schema order (``config show``).
    Secret values are replaced by ``"(set)"``."""
    rows = []
    for key in SCHEMA:
        value = getattr(config, key.field)
        if key.field in SECRET_FIELDS and value is not None:
            value = "(set)"
        rows.append((key, value, config.origin(key.field)))
    return rows


def _read(path: Path) -> dict[str, Any]:
    # The TOML parser only when there is a file to parse: ~4 ms of start-up otherwise (issue 11).
    from sscard import _toml as tomllib

    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read {path}: {exc}", problem_zh=f"无法读取 {path}（文件不可读或不是有效的 TOML）", file=str(path)
        ) from None
    return data
