"""The simulated resident health card (居民健康卡): its DDF1, EF05 and EF06, per persona ``[health]``.

The card on the other side of the wire, written from docs/card-reference.md (health card
section) and docs/health-card.md alone: it never imports :mod:`sscard.health`, so a misreading
of the layout there shows up as a failed test instead of agreeing with itself.  The encoding of
the persona's values (:data:`EF05_FIELDS`, :data:`EF06_FIELDS`) is this module's own table.

:class:`~sscard.sim.card.SimulatedCard` hands every command addressed to DDF1 (its SELECT by FID
``DDF1``, then everything but GET RESPONSE and a SELECT of MF or of another application) to
:meth:`HealthApplet.process`.  The applet keeps only the files and the key; the card keeps the
volatile state (current DF and EF, the external-authentication flag, the challenge), so reset and
selecting another application end the authentication exactly as they do for SSSE.

External authentication (docs/health-card.md): GET CHALLENGE, then ``00 82 00 0A Lc
E(K, pad(challenge))`` with K the key set's RKSSSE master diversified by the levels of
``[health_profile]`` in ``sim/data/test-keys.toml``, whose ``idcode``/``card_number`` parts are the
card number (EF05 tag 08) as stored.  A PSAM holding the same key set computes the same K from
the factors a terminal sends, so the simulated PSAM serves the health card unchanged.

Persona section (every key optional but ``ef05.card_number``)::

    [health]
    ef06_locked = true           # EF06 answers 6982 until EXTERNAL AUTHENTICATE succeeds [false]
    algorithm = 1                # 9F0C flag in the DDF1 FCI: 1 3DES, 3 SM4; -1 leaves it out [1]
    sfi = true                   # false: SFI addressing answers 6A81 [true]

    [health.ef05]                # card_type, version, issuer_name, issue_date, card_number, city_code
    [health.ef06]                # name, gender, nation, birth_date
    [health.raw.EF05]            # tag (hex) -> the WHOLE record (hex) the card answers for that tag,
    "06" = "FF0420200115"        # bypassing the encoding: malformed and FF-flagged records
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from sscard import _toml as tomllib
from sscard.apdu.command import Command
from sscard.apdu.sw import SW
from sscard.errors import ConfigError
from sscard.sim.crypto import (
    CardData,
    FactorPart,
    UnsupportedAlgorithm,
    algorithm_of,
    block_size,
    build_factor,
    diversify_levels,
    encrypt,
    pad,
)
from sscard.sim.keys import TEST_KEYS_RESOURCE, KeyUsage, load_test_keys

DDF1_FID = 0xDDF1
MF_FID = 0x3F00
EF05_FID, EF06_FID = 0xEF05, 0xEF06
FILES = {"EF05": EF05_FID, "EF06": EF06_FID}
#: EXTERNAL AUTHENTICATE P2: the key reference, 0A as for the social security card (unconfirmed).
KEY_REF_EXTERNAL = 0x0A
SW_AUTH_FAILED = 0x6300
_SHORT_MAX = 256

#: persona key -> (tag, encoding, bytes).  "an" ASCII 00-padded, "gbk" GB18030 00-padded,
#: "bcd" digits F-padded, "date" 4-byte BCD YYYYMMDD.
EF05_FIELDS: Mapping[str, tuple[int, str, int]] = {
    "card_type": (0x01, "an", 1),
    "version": (0x02, "an", 4),
    "issuer_name": (0x03, "gbk", 30),
    "issue_date": (0x06, "date", 4),
    "card_number": (0x08, "an", 18),
    "city_code": (0x39, "bcd", 3),
}
EF06_FIELDS: Mapping[str, tuple[int, str, int]] = {
    "name": (0x09, "gbk", 30),
    "gender": (0x0A, "an", 1),
    "nation": (0x0B, "bcd", 1),
    "birth_date": (0x0D, "date", 4),
}


@dataclass(frozen=True)
class HealthData:
    """A persona's health card: records by file as (tag looked up, whole record), and its switches."""

    records: Mapping[int, tuple[tuple[int, bytes], ...]] = field(hash=False)
    ef06_locked: bool = False
    algorithm: int | None = 0x01
    sfi: bool = True
    #: EF05 tag 08's value as stored: what the card's key is diversified with.
    card_number: bytes = b""

    def record(self, fid: int, tag: int) -> bytes | None:
        return next((record for key, record in self.records.get(fid, ()) if key == tag), None)


@dataclass(frozen=True)
class Answer:
    """The applet's answer and the card state it leaves (``None``: unchanged)."""

    data: bytes = b""
    sw: int = SW.OK
    ef: int | None = None
    authenticated: bool | None = None
    challenge: bytes | None = None


class _Refused(Exception):
    def __init__(self, sw: int, ef: int | None = None) -> None:
        super().__init__(f"{sw:04X}")
        self.sw, self.ef = sw, ef


# --- the persona section -------------------------------------------------------------------


def _encode(persona: str, where: str, value: Any, encoding: str, length: int) -> bytes:
    def bad(problem: str) -> ConfigError:
        return ConfigError(f"persona {persona}: health.{where} {problem}")

    if encoding == "date":
        if isinstance(value, str):
            try:
                value = dt.date.fromisoformat(value)
            except ValueError:
                raise bad("must be a date YYYY-MM-DD") from None
        if not isinstance(value, dt.date):
            raise bad("must be a date YYYY-MM-DD")
        return bytes.fromhex(value.strftime("%Y%m%d"))
    if not isinstance(value, str):
        raise bad("must be a string")
    if encoding == "bcd":
        if not re.fullmatch(r"[0-9]*", value) or len(value) > 2 * length:
            raise bad(f"must be at most {2 * length} digits")
        return bytes.fromhex(value + "F" * (2 * length - len(value)))
    try:
        raw = value.encode("ascii" if encoding == "an" else "gb18030")
    except UnicodeEncodeError:
        raise bad("cannot be encoded") from None
    if len(raw) > length:
        raise bad(f"is {len(raw)} bytes, at most {length}")
    return raw.ljust(length, b"\x00") if encoding == "gbk" else raw


def parse_health(persona: str, table: object) -> HealthData:
    """The ``[health]`` section of a persona file; ConfigError naming the key for anything wrong."""
    if not isinstance(table, dict):
        raise ConfigError(f"persona {persona}: health must be a table")
    records: dict[int, list[tuple[int, bytes]]] = {EF05_FID: [], EF06_FID: []}
    for file, fields in (("ef05", EF05_FIELDS), ("ef06", EF06_FIELDS)):
        values = table.get(file, {})
        if not isinstance(values, dict):
            raise ConfigError(f"persona {persona}: health.{file} must be a table")
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"persona {persona}: health.{file} has unknown keys {unknown}; known: {list(fields)}")
        fid = FILES[file.upper()]
        for key, (tag, encoding, length) in fields.items():
            if key in values:
                raw = _encode(persona, f"{file}.{key}", values[key], encoding, length)
                records[fid].append((tag, bytes((tag, len(raw))) + raw))
    raw_tables = table.get("raw", {})
    if not isinstance(raw_tables, dict):
        raise ConfigError(f"persona {persona}: health.raw must be a table of [health.raw.EF05]/[health.raw.EF06]")
    for file, overrides in raw_tables.items():
        if file not in FILES or not isinstance(overrides, dict):
            raise ConfigError(f"persona {persona}: health.raw.{file} must be one of {list(FILES)}, a table")
        fid = FILES[file]
        for tag_text, record_hex in overrides.items():
            if not re.fullmatch(r"[0-9A-Fa-f]{2}", tag_text) or not isinstance(record_hex, str):
                raise ConfigError(f"persona {persona}: health.raw.{file}.{tag_text} must map a hex tag to hex")
            if not re.fullmatch(r"([0-9A-Fa-f]{2}){0,256}", record_hex):
                raise ConfigError(f"persona {persona}: health.raw.{file}.{tag_text} is not at most 256 bytes of hex")
            tag = int(tag_text, 16)
            records[fid] = [entry for entry in records[fid] if entry[0] != tag] + [(tag, bytes.fromhex(record_hex))]
    number = next((record[2:] for tag, record in records[EF05_FID] if tag == 0x08), None)
    if number is None:
        raise ConfigError(f"persona {persona}: health.ef05.card_number is missing")
    algorithm = table.get("algorithm", 1)
    if not isinstance(algorithm, int) or isinstance(algorithm, bool) or not -1 <= algorithm <= 0xFF:
        raise ConfigError(f"persona {persona}: health.algorithm must be a byte value or -1")
    switches = {key: table.get(key, default) for key, default in (("ef06_locked", False), ("sfi", True))}
    for key, value in switches.items():
        if not isinstance(value, bool):
            raise ConfigError(f"persona {persona}: health.{key} must be true or false")
    unknown = sorted(set(table) - {"ef05", "ef06", "raw", "algorithm", "ef06_locked", "sfi"})
    if unknown:
        raise ConfigError(f"persona {persona}: health has unknown keys {unknown}")
    return HealthData(
        records={fid: tuple(entries) for fid, entries in records.items()},
        ef06_locked=switches["ef06_locked"],
        algorithm=None if algorithm < 0 else algorithm,
        sfi=switches["sfi"],
        card_number=number,
    )


@functools.cache
def _levels() -> tuple[tuple[FactorPart, ...], ...]:
    """``[health_profile] rkssse`` of the test-key file: the simulated health card's factor levels."""
    text = resources.files("sscard.sim").joinpath(TEST_KEYS_RESOURCE).read_text(encoding="utf-8")
    table = tomllib.loads(text).get("health_profile", {})
    levels = table.get("rkssse") if isinstance(table, dict) else None
    if not isinstance(levels, list) or not levels or not all(isinstance(level, list) and level for level in levels):
        raise ConfigError(f"{TEST_KEYS_RESOURCE}: needs [health_profile] rkssse, a list of lists of factor parts")
    return tuple(tuple(FactorPart.parse(str(part)) for part in level) for level in levels)


# --- the applet ----------------------------------------------------------------------------


class HealthApplet:
    """DDF1's command handling for one card; stateless but for its files and its key."""

    def __init__(self, data: HealthData, atr: bytes, keyset: str, rng: Callable[[int], bytes]) -> None:
        self.data = data
        self.atr = atr
        self.keyset = keyset
        self._rng = rng
        self._key: bytes | None = None

    @staticmethod
    def selects_ddf1(command: Command) -> bool:
        return command.ins == 0xA4 and command.p1 == 0x00 and command.data == DDF1_FID.to_bytes(2, "big")

    def claims(self, command: Command, in_ddf1: bool) -> bool:
        """Whether this command is DDF1's to answer (GET RESPONSE and leaving DDF1 are the card's)."""
        if self.selects_ddf1(command):
            return True
        if not in_ddf1 or command.ins == 0xC0:
            return False
        leaves = command.ins == 0xA4 and (command.p1 == 0x04 or command.data in (b"", MF_FID.to_bytes(2, "big")))
        return not leaves

    def card_key(self) -> bytes:
        """The card's external-authentication key (module docstring); UnsupportedAlgorithm for SSF33."""
        if self._key is None:
            algorithm = algorithm_of(self.data.algorithm)
            master = load_test_keys().keyset(self.keyset).master(KeyUsage.RKSSSE, algorithm)
            card = CardData(identification_code=self.data.card_number, card_number=self.data.card_number, atr=self.atr)
            self._key = diversify_levels(algorithm, master, [build_factor(level, card) for level in _levels()])
        return self._key

    def process(self, command: Command, *, ef: int | None, authenticated: bool, challenge: bytes | None) -> Answer:
        """One command in DDF1.  ``challenge`` is the one the previous command left, if any."""
        try:
            if command.ins == 0xA4:
                return self._select(command, ef)
            if command.ins == 0xB2:
                return self._read_record(command, ef, authenticated)
            if command.ins == 0x84:
                return self._get_challenge(command, ef)
            if command.ins == 0x82:
                return self._external_authenticate(command, ef, challenge)
        except _Refused as refused:
            return Answer(sw=refused.sw, ef=refused.ef if refused.ef is not None else ef)
        return Answer(sw=SW.INS_NOT_SUPPORTED, ef=ef)

    def _select(self, command: Command, ef: int | None) -> Answer:
        if command.p1 not in (0x00, 0x02) or command.p2 not in (0x00, 0x04, 0x0C):
            raise _Refused(SW.INCORRECT_P1P2)
        if len(command.data) != 2:
            raise _Refused(SW.WRONG_LENGTH)
        fid = int.from_bytes(command.data, "big")
        if fid == DDF1_FID:
            return Answer(self._fci() if command.p2 == 0x00 else b"", ef=None)
        if fid in self.data.records:
            return Answer(ef=fid)
        raise _Refused(SW.FILE_NOT_FOUND)

    def _fci(self) -> bytes:
        """``6F (84 DDF1) (A5 (9F0C 03 86 01 flag))``; no A5 when the persona leaves the flag out."""
        body = b"\x84\x02" + DDF1_FID.to_bytes(2, "big")
        if self.data.algorithm is not None:
            body += b"\xa5\x06\x9f\x0c\x03\x86\x01" + bytes((self.data.algorithm,))
        return b"\x6f" + bytes((len(body),)) + body

    def _read_record(self, command: Command, ef: int | None, authenticated: bool) -> Answer:
        """P2 = SFI << 3 | mode; mode 000: P1 is the tag; 100: P1 is a record number."""
        if command.data:
            raise _Refused(SW.WRONG_LENGTH)
        mode, sfi = command.p2 & 0x07, command.p2 >> 3
        if mode not in (0b000, 0b100) or (mode == 0b100 and command.p1 == 0):
            raise _Refused(SW.INCORRECT_P1P2)
        if sfi == 0:
            if ef is None:
                raise _Refused(SW.COMMAND_NOT_ALLOWED_NO_EF)
            fid = ef
        else:
            if not self.data.sfi:
                raise _Refused(SW.FUNCTION_NOT_SUPPORTED)
            found = [fid for fid in self.data.records if fid & 0x1F == sfi]
            if not found:
                raise _Refused(SW.FILE_NOT_FOUND)
            fid = found[0]
        if fid == EF06_FID and self.data.ef06_locked and not authenticated:
            raise _Refused(SW.SECURITY_STATUS_NOT_SATISFIED, ef=fid)
        if mode == 0b100:
            entries = self.data.records[fid]
            record = entries[command.p1 - 1][1] if command.p1 <= len(entries) else None
        else:
            record = self.data.record(fid, command.p1)
        if record is None:
            raise _Refused(SW.RECORD_NOT_FOUND, ef=fid)
        le = command.le
        if le is not None and le < _SHORT_MAX and le < len(record):
            raise _Refused(0x6C00 | len(record), ef=fid)
        return Answer(record, ef=fid)

    def _get_challenge(self, command: Command, ef: int | None) -> Answer:
        if command.p1 or command.p2:
            raise _Refused(SW.INCORRECT_P1P2)
        if command.data or command.le not in (4, 8):
            raise _Refused(SW.WRONG_LENGTH)
        challenge = self._rng(command.le)
        return Answer(challenge, ef=ef, challenge=challenge)

    def _external_authenticate(self, command: Command, ef: int | None, challenge: bytes | None) -> Answer:
        """``00 82 00 0A Lc E(K, pad(challenge))``; 6300 and no right on a wrong cryptogram."""
        if command.p1 != 0x00:
            raise _Refused(SW.INCORRECT_P1P2)
        if command.p2 != KEY_REF_EXTERNAL:
            raise _Refused(SW.REFERENCE_NOT_FOUND)
        try:
            key, algorithm = self.card_key(), algorithm_of(self.data.algorithm)
            block = block_size(algorithm)
        except UnsupportedAlgorithm:
            raise _Refused(SW.FUNCTION_NOT_SUPPORTED) from None
        if len(command.data) != block:
            raise _Refused(SW.WRONG_LENGTH)
        if challenge is None:
            raise _Refused(SW.REFERENCE_DATA_NOT_USABLE)
        if not hmac.compare_digest(encrypt(algorithm, key, pad(challenge, block)), command.data):
            return Answer(sw=SW_AUTH_FAILED, ef=ef, authenticated=False)
        return Answer(ef=ef, authenticated=True)
