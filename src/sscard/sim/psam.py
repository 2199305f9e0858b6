"""A PSAM (secure access module) in software: the terminal's side of card authentication.

The PSAM of docs/card-auth.md "PSAM commands" (default profile): it holds master keys, diversifies
one with the factors the terminal read from the card, and encrypts the card's challenge or the
terminal's random with the result.  Like the card it is the other side of the wire, written from
the document alone (it never imports :mod:`sscard.psam`), and it sits in its own reader: in process
behind :class:`~sscard.transports.sim.SimReader`, or in vpcd slot 1 through
:class:`~sscard.sim.vpcd.VpcdLink`, the SAM slot of a kiosk.

It speaks T=0 manners throughout: every answer with data is ``61xx``, fetched by GET RESPONSE.

==============================  ==========================================================
command                         answers
==============================  ==========================================================
``00 A4 00 00 02 DF01``         ``9000`` (``3F00`` too, leaving DF01); other FIDs ``6A82``
``80 1A P1 P2 Lc F1‖F2…``       ``9000``; ``6A81`` P2 not an algorithm it has, ``6A88`` P1 not
                                a key it holds (``27`` IA, ``28`` RKSSSE), ``6700`` Lc not 8/16/24,
                                ``6985`` DF01 not selected
``80 FA 00 00 Lc data``         ``61xx``; ``6985`` no diversified key, ``6700`` not whole blocks
``00 C0 00 00 xx``              the pending answer; ``6Cxx`` Le too long, ``6985`` nothing pending
anything else                   ``6D00`` unknown INS, ``6E00`` CLA not 00/80 or not that INS's
==============================  ==========================================================

PSAM personas are TOML files in ``sscard/sim/psams/`` (or any path ending in ``.toml``)::

    description = "A PSAM with the test keys, 3DES and SM4"
    atr = "3B680000…"              # T=0: no TD1 (the same ATR rules as a card persona)
    protocol = "T=0"
    keyset = "test"                # [keysets.NAME] of sim/data/test-keys.toml ["test"]
    algorithms = [1, 3]            # flags it can compute: 1 3DES, 3 SM4 [both]
    keys = ["IA", "RKSSSE"]        # master keys it holds [both]

The diversified key lasts until the next diversify (a refused one included), SELECT or reset.
"""

from __future__ import annotations

import collections
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sscard import _toml as tomllib
from sscard.apdu.command import Command
from sscard.apdu.sw import SW
from sscard.errors import ConfigError
from sscard.sim.card import COMMAND_LOG_SIZE, CardGone
from sscard.sim.crypto import FACTOR_LENGTH, Algorithm, block_size, diversify_levels, encrypt
from sscard.sim.keys import DEFAULT_KEYSET, KeyUsage, load_test_keys
from sscard.sim.persona import _check_atr, _hex, _Table

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:  # pragma: no cover
        from importlib.abc import Traversable

#: The PSAM application (docs/card-auth.md: ``00 A4 00 00 02 DF 01``).
PSAM_DF = 0xDF01
MF_FID = 0x3F00
#: Up to three levels of diversification (docs/card-reference.md §5), 8 bytes each.
MAX_LEVELS = 3
_SHORT_MAX = 256
#: Algorithms a PSAM can be given: SSF33 has no implementation anywhere (docs/card-auth.md "Keys").
PSAM_ALGORITHMS = {1: Algorithm.TDES, 3: Algorithm.SM4}


@dataclass(frozen=True)
class PsamPersona:
    """One simulated PSAM: its ATR, which master keys it holds and which algorithms it computes."""

    name: str
    description: str
    atr: bytes
    protocol: str
    keyset: str
    algorithms: frozenset[Algorithm]
    keys: frozenset[KeyUsage]
    source: Path | None = None


class _Refused(Exception):
    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


class SimulatedPsam:
    """One PSAM, built from a :class:`PsamPersona`; the same card interface as :class:`SimulatedCard`.

    ``remove_after``: after that many APDUs the PSAM is gone (:class:`~sscard.sim.card.CardGone`).
    """

    def __init__(self, persona: PsamPersona, *, remove_after: int | None = None) -> None:
        self.persona = persona
        self.remove_after = remove_after
        #: CLA INS P1 P2 of every command received, oldest first.
        self.command_log: collections.deque[bytes] = collections.deque(maxlen=COMMAND_LOG_SIZE)
        self.apdu_count = 0
        self._gone = False
        keyset = load_test_keys().keyset(persona.keyset)
        self._masters = {
            (usage, algorithm): keyset.master(usage, algorithm)
            for usage in persona.keys
            for algorithm in persona.algorithms
        }
        self._selected = False
        self._session: tuple[Algorithm, bytes] | None = None
        self._pending: bytes | None = None

    # -- the card interface (CardLike, and what VpcdLink needs) ------------------------------

    @property
    def atr(self) -> bytes:
        return self.persona.atr

    @property
    def protocol(self) -> str:
        return self.persona.protocol

    @property
    def present(self) -> bool:
        return not self._gone and (self.remove_after is None or self.apdu_count < self.remove_after)

    def power_on(self) -> None:
        """Reset: nothing selected, no diversified key, nothing pending; the master keys stay."""
        self._check_present()
        self._selected = False
        self._session = None
        self._pending = None

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with response data + SW1 SW2."""
        self._check_present()
        self.apdu_count += 1
        self.command_log.append(bytes(apdu[:4]))
        try:
            data, sw = self._dispatch(apdu)
        except _Refused as refused:
            data, sw = b"", refused.sw
        return data + sw.to_bytes(2, "big")

    # -- for tests --------------------------------------------------------------------------

    @property
    def selected(self) -> bool:
        """DF01 is the current application."""
        return self._selected

    @property
    def diversified(self) -> bool:
        """A diversified key waits for 80 FA."""
        return self._session is not None

    # -- dispatch ---------------------------------------------------------------------------

    def _check_present(self) -> None:
        if not self.present:
            self._gone = True
            raise CardGone(f"simulated PSAM {self.persona.name} pulled after {self.apdu_count} APDUs")

    def _dispatch(self, apdu: bytes) -> tuple[bytes, int]:
        if len(apdu) < 2 or apdu[1] != 0xC0:
            self._pending = None  # GET RESPONSE must come at once (ISO 7816-4 §7.6.1)
        try:
            command = Command.from_bytes(apdu)
        except ValueError:
            raise _Refused(SW.WRONG_LENGTH) from None
        if command.cla not in (0x00, 0x80):
            raise _Refused(SW.CLA_NOT_SUPPORTED)
        if command.ins == 0xA4 and command.cla == 0x00:
            self._select(command)
            return b"", SW.OK
        if command.ins == 0xC0 and command.cla == 0x00:
            return self._get_response(command)
        if command.ins == 0x1A and command.cla == 0x80:
            self._diversify(command)
            return b"", SW.OK
        if command.ins == 0xFA and command.cla == 0x80:
            result = self._encrypt(command)
            self._pending = result
            return b"", 0x6100 | (len(result) & 0xFF)
        if command.ins in (0xA4, 0xC0, 0x1A, 0xFA):
            raise _Refused(SW.CLA_NOT_SUPPORTED)
        raise _Refused(SW.INS_NOT_SUPPORTED)

    def _select(self, command: Command) -> None:
        """``00 A4 00 00 02 DF01`` (or ``3F00``): selecting anything drops the diversified key."""
        if command.p1 == 0x04:
            raise _Refused(SW.FILE_NOT_FOUND)  # no application selectable by name
        if command.p1 != 0x00 or command.p2 not in (0x00, 0x0C):
            raise _Refused(SW.INCORRECT_P1P2)
        if len(command.data) != 2:
            raise _Refused(SW.WRONG_LENGTH)
        fid = int.from_bytes(command.data, "big")
        if fid not in (PSAM_DF, MF_FID):
            raise _Refused(SW.FILE_NOT_FOUND)
        self._selected = fid == PSAM_DF
        self._session = None

    def _diversify(self, command: Command) -> None:
        """``80 1A P1 P2 Lc F1 ‖ F2 …``: the master key for P1 (usage) and P2 (algorithm), diversified."""
        self._session = None
        if not self._selected:
            raise _Refused(SW.CONDITIONS_NOT_SATISFIED)
        factors = command.data
        if not factors or len(factors) % FACTOR_LENGTH or len(factors) > MAX_LEVELS * FACTOR_LENGTH:
            raise _Refused(SW.WRONG_LENGTH)
        algorithm = PSAM_ALGORITHMS.get(command.p2)
        if algorithm is None or algorithm not in self.persona.algorithms:
            raise _Refused(SW.FUNCTION_NOT_SUPPORTED)
        try:
            master = self._masters[(KeyUsage(command.p1), algorithm)]
        except (ValueError, KeyError):
            raise _Refused(SW.REFERENCE_NOT_FOUND) from None
        levels = [factors[i : i + FACTOR_LENGTH] for i in range(0, len(factors), FACTOR_LENGTH)]
        self._session = (algorithm, diversify_levels(algorithm, master, levels))

    def _encrypt(self, command: Command) -> bytes:
        """``80 FA 00 00 Lc data``: ECB with the diversified key; data a whole number of blocks."""
        if command.p1 or command.p2:
            raise _Refused(SW.INCORRECT_P1P2)
        if self._session is None:
            raise _Refused(SW.CONDITIONS_NOT_SATISFIED)
        algorithm, key = self._session
        if not command.data or len(command.data) % block_size(algorithm):
            raise _Refused(SW.WRONG_LENGTH)
        return encrypt(algorithm, key, command.data)

    def _get_response(self, command: Command) -> tuple[bytes, int]:
        if command.p1 or command.p2:
            raise _Refused(SW.INCORRECT_P1P2)
        if command.data or command.le is None:
            raise _Refused(SW.WRONG_LENGTH)
        if self._pending is None:
            raise _Refused(SW.CONDITIONS_NOT_SATISFIED)
        rest = self._pending
        if command.le < _SHORT_MAX and command.le > len(rest):
            raise _Refused(0x6C00 | len(rest))
        chunk, rest = rest[: command.le], rest[command.le :]
        self._pending = rest or None
        return chunk, (0x6100 | len(rest)) if rest else SW.OK


# --- PSAM personas ----------------------------------------------------------------------------


def _psam_folder() -> Traversable:
    return resources.files("sscard.sim").joinpath("psams")


def list_psams() -> list[str]:
    """Names of the bundled PSAM personas, sorted."""
    return sorted(entry.name[: -len(".toml")] for entry in _psam_folder().iterdir() if entry.name.endswith(".toml"))


def load_psam(name_or_path: str) -> PsamPersona:
    """A bundled PSAM persona by name, or any PSAM persona file by path (anything ending in ``.toml``)."""
    if name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"PSAM persona file {name_or_path} not found")
        return _parse(path.stem, path.read_text(encoding="utf-8"), path)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name_or_path) or name_or_path not in list_psams():
        raise ConfigError(f"unknown PSAM persona {name_or_path!r}; available: {', '.join(list_psams())}")
    return _parse(name_or_path, _psam_folder().joinpath(f"{name_or_path}.toml").read_text(encoding="utf-8"), None)


def _parse(name: str, text: str, path: Path | None) -> PsamPersona:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"PSAM persona {name}: not valid TOML ({exc})") from None
    top = _Table(f"(PSAM) {name}", "", data)
    atr = _hex(top, "atr")
    protocol = top.text("protocol", r"T=[01]")
    _check_atr(top, atr, protocol)
    keyset = top.text("keyset", r"[A-Za-z0-9_-]+", DEFAULT_KEYSET)
    if keyset not in load_test_keys().keysets:
        raise top.error("keyset", "names no key set of sim/data/test-keys.toml")
    flags: list[object] = top.get("algorithms", list, [1, 3])
    if any(isinstance(flag, bool) or flag not in PSAM_ALGORITHMS for flag in flags):
        raise top.error("algorithms", f"may list only {sorted(PSAM_ALGORITHMS)} (got {flags})")
    usages: list[object] = top.get("keys", list, ["IA", "RKSSSE"])
    if any(usage not in KeyUsage.__members__ for usage in usages):
        raise top.error("keys", f"may list only {list(KeyUsage.__members__)} (got {usages})")
    return PsamPersona(
        name=name,
        description=top.get("description", str, ""),
        atr=atr,
        protocol=protocol,
        keyset=keyset,
        algorithms=frozenset(PSAM_ALGORITHMS[flag] for flag in flags if isinstance(flag, int)),
        keys=frozenset(KeyUsage[usage] for usage in usages if isinstance(usage, str)),
        source=path,
    )
