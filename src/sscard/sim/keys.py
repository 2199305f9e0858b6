"""The simulator's published test keys and its diversification profile (``data/test-keys.toml``).

Keys are data, not code (docs/card-auth.md "Software keys"): the file's comment documents its
format for the terminal side, which reads the same key sets through its own loader.  The
``[profile]`` table is the simulated card's copy of the default profile of docs/card-auth.md —
kept apart from the terminal's profile on purpose, so the two sides cannot agree by sharing a
mistake.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sscard import _toml as tomllib
from sscard.errors import ConfigError
from sscard.sim.crypto import KEY_LENGTH, Algorithm, CardData, FactorPart, UnsupportedAlgorithm, build_factor

#: The bundled file, relative to the ``sscard.sim`` package.
TEST_KEYS_RESOURCE = "data/test-keys.toml"
DEFAULT_KEYSET = "test"


class KeyUsage(enum.IntEnum):
    """The two card keys of docs/card-auth.md; the values are the PSAM's P1 key-usage codes."""

    IA = 0x27
    RKSSSE = 0x28


_FIELDS = {
    (KeyUsage.IA, Algorithm.TDES): "ia_3des",
    (KeyUsage.RKSSSE, Algorithm.TDES): "rk_3des",
    (KeyUsage.IA, Algorithm.SM4): "ia_sm4",
    (KeyUsage.RKSSSE, Algorithm.SM4): "rk_sm4",
}


@dataclass(frozen=True)
class KeySet:
    """One set of master keys by (usage, algorithm); kept out of ``repr`` like the PIN is."""

    name: str
    keys: Mapping[tuple[KeyUsage, Algorithm], bytes] = field(repr=False, hash=False)

    def master(self, usage: KeyUsage, algorithm: Algorithm) -> bytes:
        """The master key; SSF33 has none (:class:`~sscard.sim.crypto.UnsupportedAlgorithm`)."""
        try:
            return self.keys[(usage, algorithm)]
        except KeyError:
            raise UnsupportedAlgorithm(f"no {algorithm.name} master key for {usage.name}") from None


@dataclass(frozen=True)
class Profile:
    """Diversification levels per key usage: each level a tuple of parts making one 8-byte factor."""

    levels: Mapping[KeyUsage, tuple[tuple[FactorPart, ...], ...]]

    def factors(self, usage: KeyUsage, card: CardData) -> list[bytes]:
        """The 8-byte factors for ``card``, one per level (docs/card-auth.md "Diversification")."""
        return [build_factor(parts, card) for parts in self.levels[usage]]


@dataclass(frozen=True)
class TestKeys:
    """Everything in ``test-keys.toml``."""

    __test__ = False  # not a pytest test class, whatever its name says

    keysets: Mapping[str, KeySet]
    profile: Profile

    def keyset(self, name: str) -> KeySet:
        try:
            return self.keysets[name]
        except KeyError:
            raise ConfigError(f"unknown test key set {name!r}; known: {', '.join(sorted(self.keysets))}") from None


def load_test_keys(path: str | Path | None = None) -> TestKeys:
    """The bundled test keys (read once), or another file in the same format."""
    if path is None:
        return _bundled()
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"test key file {file} not found")
    return _parse(file.read_text(encoding="utf-8"), str(file))


@functools.cache
def _bundled() -> TestKeys:
    text = resources.files("sscard.sim").joinpath(TEST_KEYS_RESOURCE).read_text(encoding="utf-8")
    return _parse(text, TEST_KEYS_RESOURCE)


def _parse(text: str, where: str) -> TestKeys:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    raw_sets = data.get("keysets")
    if not isinstance(raw_sets, dict) or not raw_sets:
        raise ConfigError(f"{where}: needs at least one [keysets.NAME] table")
    keysets = {name: _keyset(name, value, where) for name, value in raw_sets.items()}
    return TestKeys(keysets=MappingProxyType(keysets), profile=_profile(data.get("profile"), where))


def _keyset(name: str, table: Any, where: str) -> KeySet:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: keysets.{name} must be a table")
    keys: dict[tuple[KeyUsage, Algorithm], bytes] = {}
    for slot, name_in_file in _FIELDS.items():
        value = table.get(name_in_file)
        if not isinstance(value, str) or not re.fullmatch(rf"[0-9A-Fa-f]{{{2 * KEY_LENGTH}}}", value):
            raise ConfigError(f"{where}: keysets.{name}.{name_in_file} must be {KEY_LENGTH} bytes in hex")
        keys[slot] = bytes.fromhex(value)
    unknown = sorted(set(table) - set(_FIELDS.values()))
    if unknown:
        raise ConfigError(f"{where}: keysets.{name} has unknown keys {unknown}")
    return KeySet(name, MappingProxyType(keys))


def _profile(table: Any, where: str) -> Profile:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: needs a [profile] table")
    levels: dict[KeyUsage, tuple[tuple[FactorPart, ...], ...]] = {}
    for usage in KeyUsage:
        key = usage.name.lower()
        value = table.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(level, list) and level for level in value):
            raise ConfigError(f"{where}: profile.{key} must be a non-empty list of non-empty lists of parts")
        try:
            levels[usage] = tuple(tuple(FactorPart.parse(_text(part)) for part in level) for level in value)
        except ValueError as exc:
            raise ConfigError(f"{where}: profile.{key}: {exc}") from None
    return Profile(MappingProxyType(levels))


def _text(part: object) -> str:
    if not isinstance(part, str):
        raise ValueError(f"factor part {part!r} is not a string")
    return part
