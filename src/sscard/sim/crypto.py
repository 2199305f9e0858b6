"""The simulator's own card-authentication cryptography (docs/card-auth.md, docs/card-reference.md §5).

Both simulated devices use it: the card (:mod:`sscard.sim.card`) derives its diversified IA and
RKSSSE keys from its own data with it, and the PSAM (:mod:`sscard.sim.psam`) diversifies its master
keys with the factors a terminal sends.  It is written from docs/card-auth.md alone and never
imports :mod:`sscard.psam`: if the terminal side misread the document, the simulated card and PSAM
would not agree with it and the tests would say so.

What is here, and why:

* :func:`encrypt` — one ECB encryption with 3DES (flag ``01``, two-key, 8-byte block) or SM4
  (flag ``03``, 16-byte block), the two algorithms of the card's FCI flag (docs/card-reference.md §1).  ``02``
  SSF33 has no public implementation and raises :class:`UnsupportedAlgorithm`.
* :func:`pad` — the ``00`` right-padding of the cryptograms (docs/card-auth.md "Card commands").
* :func:`diversify` — the PBOC diversification ``div(K, F)`` (docs/card-auth.md "Diversification").
* :class:`FactorPart`, :func:`build_factor` — an 8-byte factor from the parts of a profile
  (``region``, ``idcode[a:b]``, ``atr_hist[a:b]``, ``card_number``, ``ascii:TEXT``, ``hex:HEX``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, modes
from cryptography.hazmat.primitives.ciphers.algorithms import SM4

try:  # cryptography >= 43 keeps TripleDES among the "decrepit" algorithms
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - cryptography 41/42
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES

#: Master and diversified keys are 16 bytes for both algorithms (docs/card-auth.md "Keys").
KEY_LENGTH = 16
#: A diversification factor is 8 bytes per level (docs/card-auth.md "Diversification").
FACTOR_LENGTH = 8


class Algorithm(enum.IntEnum):
    """The card's algorithm flag, FCI tag ``9F0C`` (docs/card-reference.md §1); also the PSAM's P2
    (docs/card-auth.md)."""

    TDES = 0x01
    SSF33 = 0x02
    SM4 = 0x03


class UnsupportedAlgorithm(ValueError):
    """An algorithm flag nobody here can compute: SSF33 (no public implementation) or an unknown flag."""


def algorithm_of(flag: int | None) -> Algorithm:
    """The algorithm for an FCI flag; an absent flag means ``01`` (docs/card-reference.md §1:
    "assume 01 when absent")."""
    if flag is None:
        return Algorithm.TDES
    try:
        return Algorithm(flag)
    except ValueError:
        raise UnsupportedAlgorithm(f"unknown algorithm flag {flag:02X}") from None


def block_size(algorithm: Algorithm) -> int:
    """8 bytes for 3DES, 16 for SM4 (docs/card-auth.md "Keys")."""
    if algorithm is Algorithm.TDES:
        return 8
    if algorithm is Algorithm.SM4:
        return 16
    raise UnsupportedAlgorithm(f"{algorithm.name} has no public implementation")


def _cipher(algorithm: Algorithm, key: bytes) -> CipherAlgorithm:
    if len(key) != KEY_LENGTH:
        raise ValueError(f"a key is {KEY_LENGTH} bytes, got {len(key)}")
    if algorithm is Algorithm.TDES:
        # Two-key 3DES (K1 K2 K1) given as the 24-byte key cryptography wants: its 16-byte form
        # is deprecated, and this form is the same cipher by definition (keying option 2).
        return TripleDES(key + key[:8])
    if algorithm is Algorithm.SM4:
        return SM4(key)
    raise UnsupportedAlgorithm(f"{algorithm.name} has no public implementation")


def encrypt(algorithm: Algorithm, key: bytes, data: bytes) -> bytes:
    """ECB encryption of a whole number of blocks: cryptograms and diversification are all ECB."""
    cipher = _cipher(algorithm, key)
    size = block_size(algorithm)
    if not data or len(data) % size:
        raise ValueError(f"{algorithm.name} encrypts whole {size}-byte blocks, got {len(data)} bytes")
    encryptor = Cipher(cipher, modes.ECB()).encryptor()  # noqa: S305 - ECB is what the card computes
    return encryptor.update(data) + encryptor.finalize()


def pad(data: bytes, block: int) -> bytes:
    """Right-pad with ``00`` to a whole number of blocks (docs/card-auth.md "Card commands").

    The cryptograms of INTERNAL/EXTERNAL AUTHENTICATE are ``E(K, pad(x))``: an 8-byte random is
    one 3DES block unchanged, and one SM4 block as ``x ‖ 8 × 00``.  Not ISO 9797 method 2 (no
    ``80``): the document says ``00``, and that is unconfirmed (docs/card-reference.md §5).
    """
    if block <= 0:
        raise ValueError("block size must be positive")
    return data + b"\x00" * (-len(data) % block)


def invert(data: bytes) -> bytes:
    """``~F``: every bit of F inverted (docs/card-auth.md "Diversification")."""
    return bytes(b ^ 0xFF for b in data)


def diversify(algorithm: Algorithm, key: bytes, factor: bytes) -> bytes:
    """One level of the PBOC diversification (docs/card-auth.md "Diversification").

    ``div(K, F) = E(K, F) ‖ E(K, ~F)`` for 3DES (two 8-byte blocks make a 16-byte key) and
    ``E(K, F ‖ ~F)`` for SM4 (one 16-byte block is the key).  Both are a single ECB encryption
    of ``F ‖ ~F``, written out per algorithm to mirror the document.
    """
    if len(factor) != FACTOR_LENGTH:
        raise ValueError(f"a factor is {FACTOR_LENGTH} bytes, got {len(factor)}")
    if algorithm is Algorithm.TDES:
        return encrypt(algorithm, key, factor) + encrypt(algorithm, key, invert(factor))
    return encrypt(algorithm, key, factor + invert(factor))


def diversify_levels(algorithm: Algorithm, master: bytes, factors: Iterable[bytes]) -> bytes:
    """``K0 = master; K(i+1) = div(Ki, Fi)``: the card key after every level (docs/card-auth.md)."""
    key = master
    for factor in factors:
        key = diversify(algorithm, key, factor)
    return key


# --- factors --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardData:
    """What factor parts read from a card: EF05 tags 01 and 07 as stored, and the ATR."""

    identification_code: bytes
    card_number: bytes
    atr: bytes


_SLICE = r"(?:\[(\d{1,3}):(\d{1,3})\])?"
_PART = re.compile(rf"(region|card_number)|(idcode|atr_hist){_SLICE}|ascii:([ -~]+)|hex:((?:[0-9A-Fa-f]{{2}})+)")


@dataclass(frozen=True)
class FactorPart:
    """One part of a factor (docs/card-auth.md, the table under "Diversification").

    ``idcode[a:b]`` and ``atr_hist[a:b]`` are Python slices (a inclusive, b exclusive), so
    ``idcode[8:16]`` is the 8 card-specific bytes at the end of the 16-byte code (docs/card-reference.md §3);
    without ``[a:b]`` the whole value.  A slice past the end gives the bytes there are: the factor
    is right-padded with ``00`` anyway.
    """

    text: str
    kind: str
    start: int | None = None
    stop: int | None = None
    literal: bytes = b""

    @classmethod
    def parse(cls, text: str) -> FactorPart:
        """A part from its profile spelling; :class:`ValueError` names what is wrong."""
        match = _PART.fullmatch(text)
        if match is None:
            raise ValueError(
                f"unknown factor part {text!r}; known: region, idcode[a:b], atr_hist[a:b], card_number, "
                "ascii:TEXT, hex:HEX"
            )
        simple, sliced, start, stop, ascii_text, hex_text = match.groups()
        if simple:
            return cls(text, simple)
        if sliced:
            if start is None or stop is None:
                return cls(text, sliced)
            if int(start) > int(stop):
                raise ValueError(f"factor part {text!r}: slice start after its end")
            return cls(text, sliced, int(start), int(stop))
        if ascii_text is not None:
            return cls(text, "ascii", literal=ascii_text.encode("ascii"))
        return cls(text, "hex", literal=bytes.fromhex(hex_text))

    def value(self, card: CardData) -> bytes:
        """This part's bytes for ``card``."""
        if self.kind == "region":
            # The region code is the 3 BCD bytes at the start of the identification code (docs/card-reference.md §3).
            return card.identification_code[:3]
        if self.kind == "card_number":
            return card.card_number
        if self.kind in ("ascii", "hex"):
            return self.literal
        source = card.identification_code if self.kind == "idcode" else historical_bytes(card.atr)
        return source[self.start : self.stop]


def build_factor(parts: Sequence[FactorPart], card: CardData) -> bytes:
    """Parts concatenated, then cut to 8 bytes or right-padded with ``00`` (docs/card-auth.md)."""
    raw = b"".join(part.value(card) for part in parts)
    return raw[:FACTOR_LENGTH].ljust(FACTOR_LENGTH, b"\x00")


def historical_bytes(atr: bytes) -> bytes:
    """The ATR's historical bytes (ISO 7816-3 §8.2): the ``atr_hist`` part, and iReadCardBas's 卡复位信息.

    T0's high nibble says which of TA1..TC1 follow and whether TD1 does; each TDi does the same for
    the next group; T0's low nibble counts the historical bytes after the interface bytes.
    """
    if len(atr) < 2:
        raise ValueError("an ATR has at least TS and T0")
    count = atr[1] & 0x0F
    pos, y = 2, atr[1] >> 4
    while True:
        pos += bin(y & 0x7).count("1")
        if not y & 0x8:
            break
        if pos >= len(atr):
            raise ValueError("ATR ends inside its interface bytes")
        y = atr[pos] >> 4
        pos += 1
    if pos + count > len(atr):
        raise ValueError("ATR shorter than its historical bytes")
    return atr[pos : pos + count]
