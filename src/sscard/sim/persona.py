"""Personas: the data and quirks of one simulated card, kept as TOML files, not code.

A persona is what a test wants the card in the reader to be — a typical demo card, a card whose
name needs the 姓名扩展 record, a blocked PIN, a bank card — so adding a case is adding a file.
Bundled personas live in ``sscard/sim/personas/NAME.toml``; :func:`load_persona` also takes a
path to any ``.toml`` file of the same shape.  Persona data is only ever read: a PIN changed on a
simulated card stays in that card's memory and never reaches the file.

File shape (every section but the top-level keys is optional; defaults in brackets)::

    description = "A typical 2.00 card: 张三, Beijing"
    ssc = true                     # false: a bank card, SELECT SSSE answers 6A82 [true]
    atr = "3B6D0000…"              # hex; the historical bytes are what iReadCardBas reports (docs/card-reference.md §6)
    protocol = "T=0"               # must be offered by the ATR

    [behaviour]
    get_response = false           # T=0 style: every response with data is announced by 61xx
    strict_le = false              # a Le larger than the record answers 6Cxx instead of the record
    sfi = true                     # false: SFI addressing answers 6A81 (middleware must SELECT EF)
    pin_status = true              # false: VERIFY without data answers 6700
    external_auth = []             # files behind EXTERNAL AUTHENTICATE, e.g. ["EF06", "EF07", "EF08"]
    algorithm = 1                  # FCI flag 9F0C (card reference §1): 1 3DES, 3 SM4, 2 SSF33 (INTERNAL/EXTERNAL
                                   # AUTHENTICATE answer 6A81); -1 leaves it out of the FCI (3DES then)
    locked = false                 # true: 9303 for everything once SSSE is selected

    [keys]                         # docs/card-auth.md: the card's IA and RKSSSE keys are a key set's
    keyset = "test"                # master keys (sim/data/test-keys.toml) diversified with this
                                   # card's EF05 data; "forged" makes a counterfeit ["test"]

    [pin]                          # the simulator's PIN; digits only
    value = "123456"
    tries_left = 3
    max_tries = 3

    [ef05]                         # docs/card-reference.md §3, tags 01–07
    identification_code = "…"      # 32 hex digits: region code (BCD) ‖ D156000005 ‖ 8 bytes
    card_type = "1"
    spec_version = "2.00"          # "1.00" cards never carry tag 4E
    issuer_id = "110100000001"     # digits, BCD right-padded F to 12 bytes
    issue_date = "2015-06-18"      # "YYYY-MM-DD" (a TOML date works too)
    expiry_date = "2035-06-18"
    card_number = "102307185"      # 8 × [0-9A-Z] + check character

    [ef06]                         # docs/card-reference.md §3, tags 08, 09, 4E, 0A–0D
    ssn = "110101198503071235"
    name = "张三"                  # the FULL name; split over 09 (30 bytes) and 4E (20 bytes)
    name_padding = "00"            # "00" or "20" (spaces)
    gender = "1"
    nation = "01"                  # GB/T 3304 code, two digits
    birthplace = "110101"          # region code, BCD padded FF to 3 bytes
    birth_date = "1985-03-07"

    [raw]                          # tag (hex) -> exact value (hex), bypassing the encoding above;
    "0D" = "19851307"              # for personas about bad data

    [health]                       # a resident health card's DDF1: see sscard.sim.health

    [binary]                       # EF07 / EF08; synthetic deterministic bytes unless a file is named
    photo = "photo.jpg"            # relative to the persona file
    photo_size = 2560
    fingerprint_size = 768

    [bank]                         # the bank (UnionPay/EMV) application; keys in sscard.sim.emv
    pan = "6217000010001234569"

The encoding to bytes is :mod:`sscard.sim.encoding`; the typed values are in :mod:`sscard.sim.model`;
this module only validates the data and builds them.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sscard.errors import ConfigError
from sscard.sim.emv import BankData, parse_bank
from sscard.sim.encoding import record_files, split_name, synthetic_bytes
from sscard.sim.health import parse_health
from sscard.sim.keys import DEFAULT_KEYSET, load_test_keys
from sscard.sim.model import Behaviour, HolderInfo, IssuerInfo, Persona, PinSettings

__all__ = ["Behaviour", "HolderInfo", "IssuerInfo", "Persona", "PinSettings", "list_personas", "load_persona"]

from sscard import _toml as tomllib

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:  # pragma: no cover
        from importlib.abc import Traversable

SPEC_VERSIONS = ("1.00", "2.00", "3.00")
#: Files an ``external_auth`` list may name (docs/card-reference.md §1) and their FIDs.
AUTH_FILES = {"EF06": 0xEF06, "EF07": 0xEF07, "EF08": 0xEF08}
DEFAULT_PHOTO_SIZE = 2560
DEFAULT_FINGERPRINT_SIZE = 0x300


# --- public API -------------------------------------------------------------------------------


def _persona_folder() -> Traversable:
    return resources.files("sscard.sim").joinpath("personas")


def list_personas() -> list[str]:
    """Names of the bundled personas, sorted."""
    folder = _persona_folder()
    return sorted(entry.name[: -len(".toml")] for entry in folder.iterdir() if entry.name.endswith(".toml"))


def load_persona(name_or_path: str) -> Persona:
    """A bundled persona by name, or any persona file by path (anything ending in ``.toml``)."""
    if name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"persona file {name_or_path} not found")
        return _parse(path.stem, path.read_text(encoding="utf-8"), path)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name_or_path) or name_or_path not in list_personas():
        available = ", ".join(list_personas())
        raise ConfigError(
            f"unknown persona {name_or_path!r}; available: {available}",
            problem_zh=f"未知的模拟卡{name_or_path!r}，可用：{available}",
        )
    resource = _persona_folder().joinpath(f"{name_or_path}.toml")
    return _parse(name_or_path, resource.read_text(encoding="utf-8"), None)


# --- parsing and validation -------------------------------------------------------------------


class _Table:
    """Typed access to one TOML table; every complaint names the persona and the key."""

    def __init__(self, persona: str, section: str, data: Mapping[str, Any]) -> None:
        self.persona = persona
        self.section = section
        self.data = data

    def error(self, key: str, problem: str) -> ConfigError:
        where = f"{self.section}.{key}" if self.section else key
        return ConfigError(f"persona {self.persona}: {where} {problem}")

    def get(self, key: str, kind: type, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.error(key, "is missing")
            return default
        value = self.data[key]
        if kind is int and isinstance(value, bool):
            raise self.error(key, "must be an integer")
        if not isinstance(value, kind):
            raise self.error(key, f"must be a {kind.__name__}")
        return value

    def text(self, key: str, pattern: str, default: str | None = None, *, secret: bool = False) -> str:
        """A string matching ``pattern``; a ``secret`` one (the PIN) is never quoted in the error."""
        value: str = self.get(key, str, ... if default is None else default)
        if not re.fullmatch(pattern, value):
            raise self.error(key, f"must match {pattern}" + ("" if secret else f" (got {value!r})"))
        return value

    def date(self, key: str) -> dt.date | None:
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise self.error(key, "must be a date YYYY-MM-DD")

    def table(self, key: str) -> _Table:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        return _Table(self.persona, key, value)


def _parse(name: str, text: str, path: Path | None) -> Persona:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"persona {name}: not valid TOML ({exc})") from None
    top = _Table(name, "", data)
    ssc: bool = top.get("ssc", bool, True)
    atr = _hex(top, "atr")
    protocol = top.text("protocol", r"T=[01]")
    _check_atr(top, atr, protocol)
    ef05 = _issuer(top.table("ef05")) if ssc or "ef05" in data else None
    ef06 = _holder(top.table("ef06"), ef05) if ssc or "ef06" in data else None
    binary = top.table("binary")
    base = path.parent if path else None
    persona = Persona(
        name=name,
        description=top.get("description", str, ""),
        ssc=ssc,
        atr=atr,
        protocol=protocol,
        behaviour=_behaviour(top.table("behaviour")),
        pin=_pin(top.table("pin")),
        ef05=ef05,
        ef06=ef06,
        raw=MappingProxyType(_raw(top.table("raw"))),
        photo=_binary(binary, "photo", DEFAULT_PHOTO_SIZE, name, base),
        fingerprint=_binary(binary, "fingerprint", DEFAULT_FINGERPRINT_SIZE, name, base),
        source=path,
        keyset=_keyset(top.table("keys")),
        bank=_bank(top.table("bank")) if "bank" in data else None,
        health=parse_health(name, data["health"]) if "health" in data else None,
    )
    try:
        record_files(persona)
    except ValueError as exc:
        raise ConfigError(f"persona {name}: {exc}") from None
    return persona


def _hex(table: _Table, key: str, default: str | None = None) -> bytes:
    value = table.text(key, r"([0-9A-Fa-f]{2})*", default)
    return bytes.fromhex(value)


def _check_atr(table: _Table, atr: bytes, protocol: str) -> None:
    """The ATR must offer ``protocol`` and, when it offers more than T=0, carry a correct TCK.

    ISO 7816-3 §8.2: the low nibble of each TDi names a protocol; without TD1 only T=0 is offered.
    pcscd picks the protocol from the ATR, so a persona whose two disagree would test nothing.
    """
    if len(atr) < 2 or atr[0] not in (0x3B, 0x3F):
        raise table.error("atr", "is not an ATR (TS must be 3B or 3F)")
    offered: set[int] = set()
    pos, y = 2, atr[1] >> 4
    while True:
        pos += bin(y & 0x7).count("1")
        if not y & 0x8:
            break
        if pos >= len(atr):
            raise table.error("atr", "ends inside its interface bytes")
        td = atr[pos]
        offered.add(td & 0x0F)
        pos += 1
        y = td >> 4
    offered = offered or {0}
    end = pos + (atr[1] & 0x0F)
    needs_tck = offered != {0}
    if len(atr) != end + (1 if needs_tck else 0):
        raise table.error("atr", f"has {len(atr)} bytes, its format bytes announce {end + needs_tck}")
    if needs_tck:
        tck = 0
        for byte in atr[1:]:
            tck ^= byte
        if tck:
            raise table.error("atr", "has a wrong TCK")
    if int(protocol[2]) not in offered:
        raise table.error("protocol", f"{protocol} is not offered by the ATR")


def _behaviour(table: _Table) -> Behaviour:
    files = table.get("external_auth", list, [])
    unknown = [f for f in files if f not in AUTH_FILES]
    if unknown:
        raise table.error("external_auth", f"names unknown files {unknown}; known: {sorted(AUTH_FILES)}")
    algorithm: int = table.get("algorithm", int, 1)
    if not -1 <= algorithm <= 0xFF:
        raise table.error("algorithm", "must be a byte value or -1")
    return Behaviour(
        get_response=table.get("get_response", bool, False),
        strict_le=table.get("strict_le", bool, False),
        sfi=table.get("sfi", bool, True),
        pin_status=table.get("pin_status", bool, True),
        external_auth=frozenset(AUTH_FILES[f] for f in files),
        algorithm=None if algorithm < 0 else algorithm,
        locked=table.get("locked", bool, False),
        pin_sw=_pin_sw(table),
    )


def _bank(table: _Table) -> BankData:
    return parse_bank(table.data, table.error)


def _pin_sw(table: _Table) -> int | None:
    text = table.get("pin_sw", str, "")
    if not text:
        return None
    if len(text) != 4 or not all(c in "0123456789abcdefABCDEF" for c in text) or text.upper() == "9000":
        raise table.error("pin_sw", "must be a status word in four hex digits, not 9000")
    return int(text, 16)


def _keyset(table: _Table) -> str:
    name = table.text("keyset", r"[A-Za-z0-9_-]+", DEFAULT_KEYSET)
    known = load_test_keys().keysets
    if name not in known:
        raise table.error("keyset", f"names no key set of sim/data/test-keys.toml (known: {', '.join(sorted(known))})")
    return name


def _pin(table: _Table) -> PinSettings:
    value = table.text("value", r"[0-9]{3,12}", "123456", secret=True)
    max_tries: int = table.get("max_tries", int, 3)
    tries_left: int = table.get("tries_left", int, max_tries)
    if not 1 <= max_tries <= 15:
        raise table.error("max_tries", "must be 1..15 (it travels in one nibble of 63Cx)")
    if not 0 <= tries_left <= max_tries:
        raise table.error("tries_left", f"must be 0..{max_tries}")
    return PinSettings(value=value, tries_left=tries_left, max_tries=max_tries)


def _issuer(table: _Table) -> IssuerInfo:
    code = _hex(table, "identification_code")
    if len(code) != 16:
        raise table.error("identification_code", "must be 16 bytes (32 hex digits)")
    if not code[:3].hex().isdigit():
        raise table.error("identification_code", "must start with a BCD region code")
    return IssuerInfo(
        identification_code=code,
        card_type=table.text("card_type", r"[ -~]"),
        spec_version=table.text("spec_version", "|".join(re.escape(v) for v in SPEC_VERSIONS)),
        issuer_id=table.text("issuer_id", r"[0-9]{0,24}"),
        issue_date=table.date("issue_date"),
        expiry_date=table.date("expiry_date"),
        card_number=table.text("card_number", r"[ -~]{9}"),
    )


def _holder(table: _Table, ef05: IssuerInfo | None) -> HolderInfo:
    padding = table.text("name_padding", r"00|20", "00")
    name: str = table.get("name", str)
    try:
        split_name(name, ef05.spec_version if ef05 else "2.00")
    except UnicodeEncodeError:
        raise table.error("name", "is not encodable in GB18030") from None
    except ValueError as exc:
        raise table.error("name", f"does not fit: {exc}") from None
    return HolderInfo(
        ssn=table.text("ssn", r"[ -~]{18}"),
        name=name,
        name_padding=bytes.fromhex(padding),
        gender=table.text("gender", r"[ -~]"),
        nation=table.text("nation", r"[0-9]{2}"),
        birthplace=table.text("birthplace", r"[0-9]{0,6}"),
        birth_date=table.date("birth_date"),
    )


def _raw(table: _Table) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for key in table.data:
        if not re.fullmatch(r"[0-9A-Fa-f]{2}", key):
            raise table.error(key, "is not a one-byte tag in hex")
        value = _hex(table, key)
        if len(value) > 0xFF:
            raise table.error(key, "is longer than a one-byte TLV length allows")
        out[int(key, 16)] = value
    return out


def _binary(table: _Table, kind: str, default_size: int, persona: str, base: Path | None) -> bytes:
    """EF07/EF08 content: a named file, else ``size`` deterministic synthetic bytes."""
    if kind in table.data:
        file_name: str = table.get(kind, str)
        if base is not None:
            return (base / file_name).read_bytes()
        return _persona_folder().joinpath(file_name).read_bytes()
    size: int = table.get(f"{kind}_size", int, default_size)
    if not 0 <= size <= 0x7FFF:
        raise table.error(f"{kind}_size", "must fit a 15-bit READ BINARY offset (0..32767)")
    return synthetic_bytes(f"{persona}/{kind}", size, jpeg=kind == "photo")
