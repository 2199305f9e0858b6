"""Command and response APDUs over ``bytes`` (ISO 7816-3 §12.1, ISO 7816-4 §5.1).

Both short and extended lengths are encoded and parsed.  ``Le`` follows the ISO convention as a
number of bytes: ``256`` is sent as ``00`` in a short APDU and ``65536`` as ``0000`` in an extended one.
``Le=None`` means no Le field at all (cases 1 and 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from sscard.errors import TransportFailure

SHORT_MAX_LC = 255
SHORT_MAX_LE = 256
EXTENDED_MAX = 65535
EXTENDED_MAX_LE = 65536


@dataclass(frozen=True)
class Command:
    """One command APDU.  ``extended=None`` picks extended lengths only when short ones cannot carry it."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"{name} out of range: {value}")
        if len(self.data) > EXTENDED_MAX:
            raise ValueError("command data longer than 65535 bytes")
        if self.le is not None and not 0 < self.le <= EXTENDED_MAX_LE:
            raise ValueError(f"Le out of range: {self.le}")

    @property
    def header(self) -> bytes:
        return bytes((self.cla, self.ins, self.p1, self.p2))

    @property
    def is_extended(self) -> bool:
        if self.extended is not None:
            return self.extended
        return len(self.data) > SHORT_MAX_LC or (self.le is not None and self.le > SHORT_MAX_LE)

    def with_le(self, le: int) -> Command:
        return Command(self.cla, self.ins, self.p1, self.p2, self.data, le, self.extended)

    def to_bytes(self) -> bytes:
        out = bytearray(self.header)
        if self.is_extended:
            if self.data:
                out += b"\x00" + len(self.data).to_bytes(2, "big") + self.data
            if self.le is not None:
                le = self.le % EXTENDED_MAX_LE
                out += (b"" if self.data else b"\x00") + le.to_bytes(2, "big")
        else:
            if len(self.data) > SHORT_MAX_LC or (self.le is not None and self.le > SHORT_MAX_LE):
                raise ValueError("data or Le too long for a short APDU")
            if self.data:
                out += bytes((len(self.data),)) + self.data
            if self.le is not None:
                out.append(self.le % SHORT_MAX_LE)
        return bytes(out)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Command:
        """Parse the four ISO cases, short or extended.  Raises ``ValueError`` on a malformed APDU."""
        if len(raw) < 4:
            raise ValueError("APDU shorter than its 4-byte header")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, le=body[0] or SHORT_MAX_LE, extended=False)
        if body[0] != 0:
            lc = body[0]
            if len(body) == 1 + lc:
                return cls(cla, ins, p1, p2, body[1:], extended=False)
            if len(body) == 2 + lc:
                return cls(cla, ins, p1, p2, body[1:-1], body[-1] or SHORT_MAX_LE, extended=False)
            raise ValueError("short Lc does not match the APDU length")
        if len(body) == 3:
            le = int.from_bytes(body[1:3], "big") or EXTENDED_MAX_LE
            return cls(cla, ins, p1, p2, le=le, extended=True)
        if len(body) < 3:
            raise ValueError("truncated extended length")
        lc = int.from_bytes(body[1:3], "big")
        if lc == 0:
            raise ValueError("extended Lc of zero")
        if len(body) == 3 + lc:
            return cls(cla, ins, p1, p2, body[3:], extended=True)
        if len(body) == 5 + lc:
            le = int.from_bytes(body[-2:], "big") or EXTENDED_MAX_LE
            return cls(cla, ins, p1, p2, body[3:-2], le, extended=True)
        raise ValueError("extended Lc does not match the APDU length")

    def __bytes__(self) -> bytes:
        return self.to_bytes()


@dataclass(frozen=True)
class Response:
    """A response APDU: data and the 16-bit status word."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == 0x9000

    @classmethod
    def from_bytes(cls, raw: bytes) -> Response:
        if len(raw) < 2:
            raise TransportFailure(f"response of {len(raw)} bytes has no status word")
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")
