"""The HSM two-step (加密机) of the national interface (docs/card-reference.md §6, docs/card-auth.md).

Step 1 reads what the HSM needs and ends with GET CHALLENGE, so the card's next command can be the
EXTERNAL AUTHENTICATE of step 2; the export is the national layout
``区号|ATR|算法标识|卡识别码|内认证过程因子|内认证原始数据|外认证过程因子|外认证原始数据|终端号|``.
Step 2 takes the HSM's answer ``内认证结果|外认证密文|`` (unconfirmed layout, kept here only),
unlocks the card, then checks the card's internal-authentication answer against the HSM's.

Everything step 2 needs is in the step-1 line itself, so the two steps may run in two processes
(``sscard read --hsm-step1`` / ``--hsm-step2``) as long as nothing else talks to the card between
them and the card stays powered.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from sscard.errors import HsmResponseInvalid
from sscard.psam.crypto import Algorithm

FIELDS = 9


def _hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise HsmResponseInvalid(f"{what} is not hex") from None


@dataclass(frozen=True)
class HsmStep1:
    """The export of step 1; also the state step 2 resumes from."""

    region_code: str
    atr: bytes
    algorithm: Algorithm
    identification_code: bytes
    ia_factors: bytes
    ia_data: bytes
    rk_factors: bytes
    challenge: bytes
    terminal_id: str

    def line(self) -> str:
        fields = (
            self.region_code,
            self.atr.hex().upper(),
            f"{int(self.algorithm):02X}",
            self.identification_code.hex().upper(),
            self.ia_factors.hex().upper(),
            self.ia_data.hex().upper(),
            self.rk_factors.hex().upper(),
            self.challenge.hex().upper(),
            self.terminal_id,
        )
        return "".join(f"{field}|" for field in fields)

    @classmethod
    def parse(cls, line: str) -> HsmStep1:
        """Read a step-1 line back (for a step 2 in another process); HsmResponseInvalid if malformed."""
        parts = line.strip().split("|")
        if len(parts) != FIELDS + 1 or parts[-1] != "":
            raise HsmResponseInvalid(f"a step-1 line has {FIELDS} fields each ending in '|'")
        try:
            algorithm = Algorithm(int(parts[2], 16))
        except ValueError:
            raise HsmResponseInvalid(f"algorithm flag {parts[2]!r}") from None
        return cls(
            region_code=parts[0],
            atr=_hex(parts[1], "ATR"),
            algorithm=algorithm,
            identification_code=_hex(parts[3], "card identification code"),
            ia_factors=_hex(parts[4], "internal-authentication factors"),
            ia_data=_hex(parts[5], "internal-authentication data"),
            rk_factors=_hex(parts[6], "external-authentication factors"),
            challenge=_hex(parts[7], "challenge"),
            terminal_id=parts[8],
        )


@dataclass(frozen=True)
class HsmAnswer:
    internal_result: bytes
    external_cryptogram: bytes

    @classmethod
    def parse(cls, text: str, algorithm: Algorithm, internal_length: int = 16) -> HsmAnswer:
        """``内认证结果|外认证密文|`` in hex: the internal result as long as the data step 1 sent
        (16 bytes), the external cryptogram one block of the card's algorithm."""
        parts = text.strip().split("|")
        if parts and parts[-1] == "":
            parts = parts[:-1]
        if len(parts) != 2:
            raise HsmResponseInvalid("expected two fields '内认证结果|外认证密文|'")
        try:
            internal, external = (binascii.unhexlify(part.strip()) for part in parts)
        except (binascii.Error, ValueError):
            raise HsmResponseInvalid("the fields are not hex") from None
        for name, value, length in (
            ("internal result", internal, internal_length),
            ("external cryptogram", external, algorithm.block),
        ):
            if len(value) != length:
                raise HsmResponseInvalid(f"{name} is {len(value)} bytes, not {length} ({algorithm.name})")
        return cls(internal, external)
