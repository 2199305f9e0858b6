"""Block ciphers and key diversification for card authentication (docs/card-auth.md, docs/card-reference.md §5).

Only what authentication needs: single-block ECB encryption with two-key 3DES or SM4 (through the
``cryptography`` library, never hand-written), PBOC-style diversification, and factor building.
The simulated card and PSAM implement the same rules independently in :mod:`sscard.sim`, so a
mistake here cannot be mirrored there and pass unnoticed.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, modes

try:  # cryptography >= 43 moved TripleDES to the "decrepit" module
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES  # type: ignore[no-redef,unused-ignore]
from cryptography.hazmat.primitives.ciphers.algorithms import SM4

from sscard.errors import AlgorithmUnsupported

FACTOR_LEN = 8


class Algorithm(enum.IntEnum):
    """The FCI algorithm flag ``9F0C 03 86 01 xx`` (docs/card-reference.md §1)."""

    DES3 = 0x01
    SSF33 = 0x02
    SM4 = 0x03

    @property
    def block(self) -> int:
        return 16 if self is Algorithm.SM4 else 8

    @classmethod
    def of(cls, flag: int) -> Algorithm:
        try:
            return cls(flag)
        except ValueError:
            raise AlgorithmUnsupported(f"flag {flag:02X}") from None


def encrypt(algorithm: Algorithm, key: bytes, data: bytes) -> bytes:
    """ECB over whole blocks; SSF33 has no public implementation and is refused (national −2202)."""
    if algorithm is Algorithm.SSF33:
        raise AlgorithmUnsupported("SSF33", "no public implementation exists")
    if len(key) != 16:
        raise ValueError(f"keys are 16 bytes, not {len(key)}")
    if len(data) % algorithm.block:
        raise ValueError(f"data must be whole {algorithm.block}-byte blocks, not {len(data)} bytes")
    # Two-key 3DES is K1 K2 K1: spelled out as 24 bytes, the form cryptography keeps supporting.
    cipher_algorithm = SM4(key) if algorithm is Algorithm.SM4 else TripleDES(key + key[:8])
    encryptor = Cipher(cipher_algorithm, modes.ECB()).encryptor()  # noqa: S305 - single-block key derivation
    return encryptor.update(data) + encryptor.finalize()


def pad(algorithm: Algorithm, data: bytes) -> bytes:
    """Right-pad with ``00`` to a whole block (docs/card-auth.md: 8-byte values become 16 for SM4)."""
    remainder = len(data) % algorithm.block
    return data + bytes(algorithm.block - remainder) if remainder else data


def _invert(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


def diversify(algorithm: Algorithm, key: bytes, factor: bytes) -> bytes:
    """One level: 3DES ``E(K,F) || E(K,~F)``; SM4 ``E(K, F || ~F)`` (PBOC convention)."""
    if len(factor) != FACTOR_LEN:
        raise ValueError(f"a diversification factor is {FACTOR_LEN} bytes, not {len(factor)}")
    if algorithm is Algorithm.SM4:
        return encrypt(algorithm, key, factor + _invert(factor))
    return encrypt(algorithm, key, factor) + encrypt(algorithm, key, _invert(factor))


def derive(algorithm: Algorithm, master: bytes, factors: Sequence[bytes]) -> bytes:
    key = master
    for factor in factors:
        key = diversify(algorithm, key, factor)
    return key


@dataclass(frozen=True)
class CardFacts:
    """What factors are built from: the card's own data, read before authenticating."""

    identification_code: bytes
    card_number: str
    atr_historical: bytes

    @property
    def region(self) -> bytes:
        return self.identification_code[:3]


_SLICE = re.compile(r"^(idcode|atr_hist)\[(\d*):(\d*)\]$")


def factor_part(part: str, card: CardFacts) -> bytes:
    """One named part of a factor (docs/card-auth.md, "Diversification")."""
    if part == "region":
        return card.region
    if part == "card_number":
        return card.card_number.encode("ascii")
    if part.startswith("ascii:"):
        return part[len("ascii:") :].encode("ascii")
    if part.startswith("hex:"):
        return bytes.fromhex(part[len("hex:") :])
    match = _SLICE.match(part)
    if match:
        source = card.identification_code if match[1] == "idcode" else card.atr_historical
        start = int(match[2]) if match[2] else None
        end = int(match[3]) if match[3] else None
        return source[start:end]
    raise ValueError(f"unknown factor part {part!r}")


def build_factor(parts: Sequence[str], card: CardFacts) -> bytes:
    """Parts concatenated, then cut to 8 bytes or right-padded with ``00``."""
    raw = b"".join(factor_part(part, card) for part in parts)
    return raw[:FACTOR_LEN].ljust(FACTOR_LEN, b"\x00")


def build_factors(levels: Sequence[Sequence[str]], card: CardFacts) -> list[bytes]:
    return [build_factor(level, card) for level in levels]
