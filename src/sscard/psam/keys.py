"""Key services: who computes the cryptograms of card authentication (docs/card-auth.md).

Every service answers one question — ``E(diversified key, pad(data))`` for a key, the card's
algorithm and its factors — which is all internal authentication (the expected answer of a
genuine card) and external authentication (the cryptogram that unlocks EF06) need:

* :class:`PsamKeyService` asks a PSAM in a SAM slot (docs/card-reference.md §5), the normal kiosk set-up;
* :class:`SoftwareKeyService` computes with master keys from a file: for the simulator and tests
  only, refused unless explicitly allowed and loudly logged when used;
* the HSM two-step (:mod:`sscard.psam.hsm`) is not a service here: its cryptograms come back in a
  second call, so the terminal drives it in two halves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from sscard import _toml as tomllib
from sscard.apdu.command import Command
from sscard.apdu.processors import TraceSink, standard_stack
from sscard.apdu.sw import SW
from sscard.errors import AlgorithmUnsupported, ConfigError, PrivateFileError, PsamError, PsamKeyMissing, PsamMissing
from sscard.files import read_regular_file
from sscard.psam.crypto import Algorithm, derive, encrypt, pad
from sscard.psam.profile import KeyUse, Profile
from sscard.transports.base import Transport

log = logging.getLogger("sscard.psam")

SW_KEY_NOT_FOUND = 0x6A88
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_INCORRECT_P1P2 = 0x6A86


class KeyService(Protocol):
    """Computes authentication cryptograms; ``describe()`` names it in logs and session records."""

    def cryptogram(self, key: KeyUse, algorithm: Algorithm, factors: Sequence[bytes], data: bytes) -> bytes: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


class PsamKeyService:
    """A PSAM in its own PC/SC reader: select, diversify, encrypt — one transaction per cryptogram."""

    def __init__(self, transport: Transport, profile: Profile, trace_sink: TraceSink | None = None) -> None:
        self.transport = transport
        self.profile = profile
        self.trace_sink = trace_sink

    def describe(self) -> str:
        return f"PSAM in {self.transport.name!r} (profile {self.profile.name})"

    def close(self) -> None:
        self.transport.close()

    def cryptogram(self, key: KeyUse, algorithm: Algorithm, factors: Sequence[bytes], data: bytes) -> bytes:
        if algorithm is Algorithm.SSF33:
            raise AlgorithmUnsupported("SSF33", "no PSAM profile computes SSF33 here")
        profile = self.profile
        with self.transport.transaction():
            connection = standard_stack(self.transport, self.trace_sink)
            select = Command.from_bytes(profile.psam_select)
            answer = connection.send(select)
            if answer.sw in (SW.FILE_NOT_FOUND, SW.INS_NOT_SUPPORTED, SW.CLA_NOT_SUPPORTED):
                raise PsamMissing(f"the card in {self.transport.name!r} has no PSAM application ({answer.sw:04X})")
            _check(answer.sw, key.name, algorithm)
            cla, ins = profile.psam_diversify
            answer = connection.send(Command(cla, ins, key.usage, int(algorithm), b"".join(factors)))
            _check(answer.sw, key.name, algorithm, diversify=True)
            padded = pad(algorithm, data)
            cla, ins, p1, p2 = profile.psam_encrypt
            answer = connection.send(Command(cla, ins, p1, p2, padded, le=256))
            _check(answer.sw, key.name, algorithm)
            if len(answer.data) != len(padded):
                raise PsamError(answer.sw, f"encrypt returned {len(answer.data)} bytes for {len(padded)}")
            return answer.data


def _check(sw: int, key: str, algorithm: Algorithm, *, diversify: bool = False) -> None:
    """PSAM status → error.  Only diversify names the key (P1) and the algorithm (P2), so only its
    ``6A88``/``6A81``/``6A86`` say "no such key" or "no such algorithm"; elsewhere they are PSAM_ERROR."""
    if sw == SW.OK:
        return
    if diversify and sw == SW_KEY_NOT_FOUND:
        raise PsamKeyMissing(key.upper(), f"PSAM answered {sw:04X}")
    if diversify and sw in (SW_FUNCTION_NOT_SUPPORTED, SW_INCORRECT_P1P2):
        raise AlgorithmUnsupported(algorithm.name, f"PSAM answered {sw:04X}")
    raise PsamError(sw)


#: Environment switch that, like ``[keys] allow_software = true``, permits software keys.
ALLOW_SOFTWARE_ENV = "SSCARD_ALLOW_SOFTWARE_KEYS"


class SoftwareKeyService:
    """Master keys from a file.  For the simulator and tests: a kiosk must use a PSAM or an HSM.

    The file (TOML): ``[keysets.NAME]`` tables of 16-byte hex master keys named ``ia_3des``,
    ``rk_3des``, ``ia_sm4``, ``rk_sm4``; ``keyset`` picks one (docs/card-auth.md, "Software keys").
    """

    def __init__(self, masters: Mapping[tuple[str, Algorithm], bytes], source: str) -> None:
        self.masters = dict(masters)
        self.source = source

    @classmethod
    def from_file(cls, path: str | Path, keyset: str = "test", *, allowed: bool) -> SoftwareKeyService:
        if not allowed:
            raise ConfigError(
                "software keys are for the simulator and tests only; enable them explicitly with "
                f"[keys] allow_software = true or {ALLOW_SOFTWARE_ENV}=1"
            )
        try:
            # A regular file only: a FIFO or device at the key path would hang (issue 11).
            data = tomllib.loads(read_regular_file(path).decode("utf-8"))
            table = data["keysets"][keyset]
        except PrivateFileError as exc:
            raise ConfigError(f"cannot load key set {keyset!r} from {path}: {exc.fields['problem']}") from None
        except (OSError, KeyError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot load key set {keyset!r} from {path}: {exc!r}") from None
        masters: dict[tuple[str, Algorithm], bytes] = {}
        names = {"ia": "ia", "rk": "rkssse"}
        algorithms = {"3des": Algorithm.DES3, "sm4": Algorithm.SM4}
        for field, value in table.items():
            prefix, _, suffix = str(field).partition("_")
            if prefix in names and suffix in algorithms:
                key = bytes.fromhex(str(value))
                if len(key) != 16:
                    raise ConfigError(f"key {field} in {path} is not 16 bytes")
                masters[(names[prefix], algorithms[suffix])] = key
        log.warning(
            "SOFTWARE KEYS IN USE (%s, key set %r): for the simulator and tests only, never on a kiosk", path, keyset
        )
        return cls(masters, f"{path}#{keyset}")

    def describe(self) -> str:
        return f"software keys {self.source} (TEST ONLY)"

    def close(self) -> None:
        return None

    def cryptogram(self, key: KeyUse, algorithm: Algorithm, factors: Sequence[bytes], data: bytes) -> bytes:
        if algorithm is Algorithm.SSF33:
            raise AlgorithmUnsupported("SSF33", "no public implementation exists")
        master = self.masters.get((key.name, algorithm))
        if master is None:
            raise PsamKeyMissing(key.name.upper(), f"{self.source} has no {algorithm.name} key {key.name}")
        log.warning("software key %s/%s used (TEST ONLY)", key.name, algorithm.name)
        return encrypt(algorithm, derive(algorithm, master, factors), pad(algorithm, data))
