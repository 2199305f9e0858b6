"""The simulated card's data as typed values: what a persona file says, before encoding.

Apart from the loader (:mod:`sscard.sim.persona`, which validates and builds these) so that the
encoder (:mod:`sscard.sim.encoding`) and the card (:mod:`sscard.sim.card`) can name the types
without importing the loader, which itself uses the encoder (no import circle).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from sscard.sim.emv import BankData
from sscard.sim.health import HealthData
from sscard.sim.keys import DEFAULT_KEYSET

__all__ = ["Behaviour", "HolderInfo", "IssuerInfo", "Persona", "PinSettings"]


@dataclass(frozen=True)
class Behaviour:
    """How this card deviates from the easy path; each switch exercises one middleware fallback."""

    get_response: bool = False
    strict_le: bool = False
    sfi: bool = True
    pin_status: bool = True
    #: FIDs of the files that answer 6982 until EXTERNAL AUTHENTICATE succeeds (3rd-gen EF06,
    #: docs/card-reference.md §1).
    external_auth: frozenset[int] = frozenset()
    #: FCI tag 9F0C algorithm flag (docs/card-reference.md §1); ``None`` leaves the tag out.
    algorithm: int | None = 0x01
    locked: bool = False
    #: When set, VERIFY with a PIN and CHANGE PIN answer this status word (e.g. ``6C00``, ``6104``)
    #: without looking at the PIN: a card that invites the middleware to resend a PIN command.
    pin_sw: int | None = None


@dataclass(frozen=True)
class PinSettings:
    """The simulator's PIN.  ``value`` is kept out of ``repr`` so a logged persona never shows it."""

    value: str = field(default="123456", repr=False)
    tries_left: int = 3
    max_tries: int = 3


@dataclass(frozen=True)
class IssuerInfo:
    """EF05 source values (docs/card-reference.md §3, tags 01–07), before encoding."""

    identification_code: bytes
    card_type: str
    spec_version: str
    issuer_id: str
    issue_date: dt.date | None
    expiry_date: dt.date | None
    card_number: str


@dataclass(frozen=True)
class HolderInfo:
    """EF06 source values (docs/card-reference.md §3), before encoding; ``name`` is the full name."""

    ssn: str
    name: str
    name_padding: bytes
    gender: str
    nation: str
    birthplace: str
    birth_date: dt.date | None


@dataclass(frozen=True)
class Persona:
    """One simulated card's data and behaviour, as loaded from its TOML file."""

    name: str
    description: str
    ssc: bool
    atr: bytes
    protocol: str
    behaviour: Behaviour
    pin: PinSettings
    ef05: IssuerInfo | None
    ef06: HolderInfo | None
    #: tag -> exact value bytes replacing the encoded value (bad-data personas).
    raw: Mapping[int, bytes] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    photo: bytes = field(default=b"", repr=False)
    fingerprint: bytes = field(default=b"", repr=False)
    source: Path | None = None
    #: The ``[keysets.NAME]`` of ``sim/data/test-keys.toml`` this card's keys derive from.
    keyset: str = DEFAULT_KEYSET
    #: The bank (UnionPay/EMV) application, when the card carries one (``[bank]``, :mod:`sscard.sim.emv`).
    bank: BankData | None = None
    #: The resident health card's DDF1, from a ``[health]`` section (sim/health.py).
    health: HealthData | None = None

    @property
    def spec_version(self) -> str | None:
        return self.ef05.spec_version if self.ef05 else None
