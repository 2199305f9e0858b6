"""Just enough ATR parsing (ISO 7816-3 §8.2) to find the historical bytes.

The national reader interface reports 卡复位信息 as the ATR's historical bytes (docs/card-reference.md §6), so we
need them exactly; everything else about the ATR is the reader's business.
"""

from __future__ import annotations

from sscard.errors import BadRecord


def historical_bytes(atr: bytes) -> bytes:
    """The K historical bytes: skip TS, T0 and every interface byte the Y indicators announce."""
    if len(atr) < 2:
        raise BadRecord("atr", f"ATR of {len(atr)} bytes", "复位信息")
    count = atr[1] & 0x0F
    y = atr[1] >> 4
    pos = 2
    while True:
        pos += bin(y).count("1")
        if not y & 0x8:
            break
        if pos > len(atr):
            break
        y = atr[pos - 1] >> 4
    if pos + count > len(atr):
        raise BadRecord("atr", "historical bytes run past the end of the ATR", "复位信息")
    return atr[pos : pos + count]
