"""Card-authentication profiles: the unconfirmed parts of docs/card-reference.md §5 as data (docs/card-auth.md).

Vendors' PSAMs differ in command bytes and key usage codes, and provinces in diversification
factors; none of that is fixed in code.  A profile is a TOML file; ``default`` ships with sscard
and is what the simulator implements.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sscard import _toml as tomllib
from sscard.errors import ConfigError


@dataclass(frozen=True)
class KeyUse:
    """One key: its PSAM usage code (P1 of diversify) and its diversification levels."""

    name: str
    usage: int
    levels: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Profile:
    name: str
    internal_authenticate: bytes
    get_challenge: bytes
    external_authenticate: bytes
    challenge_length: int
    internal_data_length: int
    psam_select: bytes
    psam_diversify: bytes
    psam_encrypt: bytes
    ia: KeyUse
    rkssse: KeyUse
    source: str = ""


def _hex(table: dict[str, Any], key: str, length: int) -> bytes:
    value = bytes.fromhex(str(table[key]))
    if len(value) != length:
        raise ValueError(f"{key} must be {length} bytes of hex, not {table[key]!r}")
    return value


def _key(name: str, table: dict[str, Any]) -> KeyUse:
    levels = tuple(tuple(str(part) for part in level) for level in table["levels"])
    if not levels or not all(levels):
        raise ValueError(f"keys.{name}.levels needs at least one non-empty level")
    return KeyUse(name, int(table["usage"]), levels)


def load_profile(name_or_path: str = "default") -> Profile:
    """A bundled profile by name, or a TOML file by path; ConfigError when it is incomplete."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise ConfigError(f"cannot read profile {path}: {exc}") from None
    else:
        entry = resources.files("sscard.psam").joinpath("profiles").joinpath(f"{name_or_path}.toml")
        if not entry.is_file():
            raise ConfigError(f"no bundled card-authentication profile {name_or_path!r}")
        text, source = entry.read_text(encoding="utf-8"), f"sscard.psam/profiles/{name_or_path}.toml"
    try:
        data = tomllib.loads(text)
        card, psam, keys = data["card"], data["psam"], data["keys"]
        return Profile(
            name=str(data.get("name", name_or_path)),
            internal_authenticate=_hex(card, "internal_authenticate", 4),
            get_challenge=_hex(card, "get_challenge", 5),
            external_authenticate=_hex(card, "external_authenticate", 4),
            challenge_length=int(card.get("challenge_length", 8)),
            internal_data_length=int(card.get("internal_data_length", 16)),
            psam_select=bytes.fromhex(str(psam["select"])),
            psam_diversify=_hex(psam, "diversify", 2),
            psam_encrypt=_hex(psam, "encrypt", 4),
            ia=_key("ia", keys["ia"]),
            rkssse=_key("rkssse", keys["rkssse"]),
            source=source,
        )
    except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"card-authentication profile {source}: {exc}") from None
