"""The SSSE application: select, read the data elements, PIN status, VERIFY and CHANGE PIN.

Everything here speaks APDUs through an :class:`~sscard.apdu.ApduConnection` and maps status words
to domain errors (docs/design.md §3); it knows nothing of PC/SC, readers or transactions — the terminal
facade above owns those.

APDU economy (docs/card-reference.md §2): one SELECT of the SSSE application, then one READ RECORD per element
with SFI addressing in record-identifier mode (``P1`` = tag, ``P2`` = SFI << 3), so no SELECT EF
is needed.  Le is the declared value length + 2, the value real readers send, so a card that
insists on an exact Le (answering ``6Cxx``) costs no extra round trip for fixed-length elements.
Only when the card refuses SFI addressing do we fall back to SELECT EF + current-EF reads.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sscard.apdu import SW, ApduConnection, ApduError, Command
from sscard.apdu.processors import transceive
from sscard.apdu.sw import tries_left
from sscard.errors import AuthRequired, CardError, CardLocked, NotSsc, PinBlocked, PinFormat, PinIncorrect
from sscard.ssc.pin import PIN_MAX, PIN_MIN, Pin, PinLike
from sscard.ssc.pin import wipe as _wipe
from sscard.ssc.records import (
    EF05_TAGS,
    EF06_TAGS,
    ELEMENTS,
    CardholderData,
    IssuerData,
    cardholder_from_elements,
    issuer_from_elements,
    parse_element,
)

#: DDF SSSE (docs/card-reference.md §1): ASCII "sx1.sh." + GBK "社会保障".
SSSE_AID = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")
#: File identifiers under SSSE (docs/card-reference.md §1); the SFI is the low five bits.
EF_FID = {0x05: 0xEF05, 0x06: 0xEF06, 0x07: 0xEF07, 0x08: 0xEF08}
#: READ BINARY step (short Le 00) and the most a binary EF may hold before we call it malformed.
BINARY_STEP = 256
BINARY_LIMIT = 0x8000
#: ``progress(bytes_so_far, total_or_None)``.
Progress = Callable[[int, int | None], None]

#: Status words by which a card says "no SFI addressing here" (seen: 6A81, 6A86, 6A82, 6B00, 6986).
SFI_REFUSED = frozenset({SW.FUNCTION_NOT_SUPPORTED, SW.INCORRECT_P1P2, SW.FILE_NOT_FOUND, SW.WRONG_P1P2})
#: Status words by which a card says "VERIFY without data is not a status query here".
PIN_STATUS_UNSUPPORTED = frozenset(
    {SW.WRONG_LENGTH, SW.INS_NOT_SUPPORTED, SW.INCORRECT_P1P2, SW.WRONG_P1P2, SW.WRONG_DATA, SW.FUNCTION_NOT_SUPPORTED}
)
#: Re-exported: the PIN rules and the secret holder live in :mod:`sscard.ssc.pin`.
__all__ = [
    "PIN_MAX",
    "PIN_MIN",
    "Pin",
    "PinLike",
    "PinOutcome",
    "PinState",
    "Progress",
    "SscApplication",
    "SsseInfo",
    "encode_pin",
    "validate_pin",
]
#: Algorithm flags of the FCI tag 9F0C (docs/card-reference.md §1).
ALGORITHMS = {0x01: "3DES", 0x02: "SSF33", 0x03: "SM4"}


@dataclass(frozen=True)
class SsseInfo:
    """What the SELECT SSSE answer tells us: the FCI and the card's algorithm flag (docs/card-reference.md §1)."""

    fci: bytes
    algorithm: int

    @property
    def algorithm_name(self) -> str:
        return ALGORITHMS.get(self.algorithm, f"unknown ({self.algorithm:02X})")


class PinState(str, enum.Enum):
    """PIN outcomes a kiosk UI must tell apart (Web eID's PIN outcome set, docs/design.md §3)."""

    VERIFIED = "verified"
    INCORRECT = "incorrect"
    BLOCKED = "blocked"
    #: The status query is unsupported; the card's state is unknown without spending a try.
    UNKNOWN = "unknown"
    #: The card has tries left and the PIN has not been presented in this session.
    NOT_VERIFIED = "not_verified"


@dataclass(frozen=True)
class PinOutcome:
    """The result of a PIN status query, VERIFY or CHANGE PIN.  Never contains the PIN."""

    state: PinState
    tries_left: int | None = None

    @property
    def ok(self) -> bool:
        return self.state is PinState.VERIFIED

    def raise_for_error(self) -> PinOutcome:
        """For callers who prefer exceptions: PIN_INCORRECT / PIN_BLOCKED, else ``self``."""
        if self.state is PinState.INCORRECT:
            raise PinIncorrect(self.tries_left if self.tries_left is not None else 0)
        if self.state is PinState.BLOCKED:
            raise PinBlocked()
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "tries_left": self.tries_left}


def encode_pin(pin: PinLike) -> bytearray:
    """Validate a PIN (4–12 digits, before anything is sent) and pack it as BCD.

    Returns a ``bytearray`` so the caller can wipe it after use.  The error never quotes the PIN.
    A :class:`~sscard.ssc.pin.Pin` (or ``bytearray`` of ASCII digits) is packed without a ``str``.
    """
    if not isinstance(pin, (str, bytearray, Pin)):
        raise PinFormat()
    return Pin.of(pin).packed()


def validate_pin(pin: PinLike) -> None:
    """Raise :class:`PinFormat` unless ``pin`` is 4–12 digits; sends nothing."""
    if isinstance(pin, Pin):
        pin.validate()
    else:
        _wipe(encode_pin(pin))


class SscApplication:
    """Operations of the SSSE application over one APDU connection (docs/card-reference.md §1–§4)."""

    def __init__(self, connection: ApduConnection) -> None:
        self.connection = connection
        #: ``False`` once the card has refused SFI addressing; then SELECT EF is used.
        self.sfi_supported: bool | None = None
        self._current_ef: int | None = None

    # -- selection --------------------------------------------------------------------------

    def select(self) -> SsseInfo:
        """SELECT SSSE by AID.  ``6A82`` means this is not a social security card (e.g. a bank card)."""
        self._current_ef = None
        try:
            fci = transceive(self.connection, Command(0x00, 0xA4, 0x04, 0x00, SSSE_AID, le=256))
        except ApduError as exc:
            if exc.sw in (SW.FILE_NOT_FOUND, SW.FUNCTION_NOT_SUPPORTED, SW.INS_NOT_SUPPORTED, SW.CLA_NOT_SUPPORTED):
                raise NotSsc(f"SELECT SSSE answered {exc.sw:04X}") from None
            raise self._card_error(exc) from None
        return SsseInfo(fci, _find_algorithm(fci))

    def _select_ef(self, ef: int) -> None:
        if self._current_ef == ef:
            return
        fid = EF_FID[ef].to_bytes(2, "big")
        try:
            transceive(self.connection, Command(0x00, 0xA4, 0x02, 0x00, fid))
        except ApduError as exc:
            raise self._card_error(exc) from None
        self._current_ef = ef

    # -- records ----------------------------------------------------------------------------

    def read_element(self, tag: int) -> Any:
        """One data element's value, ``None`` if the card has no such record (``6A83``)."""
        spec = ELEMENTS[tag]
        le = spec.max_len + 2
        response = None
        if self.sfi_supported is not False:
            response = self.connection.send(Command(0x00, 0xB2, tag, (spec.ef << 3) | 0x00, le=le))
            if response.sw in SFI_REFUSED and self.sfi_supported is None:
                self.sfi_supported = False
                response = None
            elif response.ok:
                self.sfi_supported = True
        if response is None:
            self._select_ef(spec.ef)
            response = self.connection.send(Command(0x00, 0xB2, tag, 0x00, le=le))
        if response.sw == SW.RECORD_NOT_FOUND:
            return None
        if response.sw == SW.SECURITY_STATUS_NOT_SATISFIED:
            raise AuthRequired(spec.key, element_zh=spec.label_zh)
        if not response.ok:
            raise self._card_error(ApduError(response.sw, response.data))
        return parse_element(tag, response.data)

    def read_elements(self, tags: Iterable[int]) -> dict[int, Any]:
        return {tag: self.read_element(tag) for tag in tags}

    def read_issuer(self) -> IssuerData:
        """EF05 (docs/card-reference.md §3, tags 01–07): free to read on every generation."""
        return issuer_from_elements(self.read_elements(EF05_TAGS))

    def read_cardholder(self, spec_version: str | None) -> CardholderData:
        """EF06 (docs/card-reference.md §3).  Tag 4E exists only on 2.00/3.00 cards, so 1.00 cards skip it."""
        tags = [t for t in EF06_TAGS if not (t == 0x4E and (spec_version or "").startswith("1."))]
        return cardholder_from_elements(self.read_elements(tags))

    # -- binary files (EF07 fingerprint, EF08 photo) ----------------------------------------

    def read_binary_file(self, ef: int, progress: Progress | None = None, limit: int = BINARY_LIMIT) -> bytes:
        """A whole binary EF: SELECT by FID, then READ BINARY in 256-byte steps to the end.

        The size is not known in advance (the cards seen answer SELECT without an FCP), so the
        end is a short answer or ``6B00`` (offset beyond the file).  ``progress(bytes_so_far,
        None)`` is called after every step.  ``6982`` is AuthRequired: EF07/EF08 need external
        authentication (docs/card-reference.md §1).
        """
        fid = EF_FID[ef].to_bytes(2, "big")
        answer = self.connection.send(Command(0x00, 0xA4, 0x02, 0x00, fid))
        if answer.sw == SW.SECURITY_STATUS_NOT_SATISFIED:
            raise AuthRequired(f"EF{ef:02X}", element_zh=f"EF{ef:02X}")
        if not answer.ok:
            raise self._card_error(ApduError(answer.sw, answer.data))
        self._current_ef = ef
        data = bytearray()
        while len(data) < limit:
            offset = len(data)
            response = self.connection.send(Command(0x00, 0xB0, offset >> 8, offset & 0xFF, le=BINARY_STEP))
            if response.sw == SW.SECURITY_STATUS_NOT_SATISFIED:
                raise AuthRequired(f"EF{ef:02X}", element_zh=f"EF{ef:02X}")
            if response.sw in (SW.WRONG_P1P2, 0x6282) and offset:
                break  # past the end (6B00), or end of file reached (6282)
            if not response.ok:
                raise self._card_error(ApduError(response.sw, response.data))
            data += response.data
            if progress is not None:
                progress(len(data), None)
            if len(response.data) < BINARY_STEP:
                break
        return bytes(data)

    # -- PIN --------------------------------------------------------------------------------

    def pin_status(self) -> PinOutcome:
        """VERIFY with no data: the tries left without spending one (where the card supports it)."""
        response = self.connection.send(Command(0x00, 0x20, 0x00, 0x00))
        if response.ok:
            return PinOutcome(PinState.VERIFIED)
        left = tries_left(response.sw)
        if left is not None:
            return PinOutcome(PinState.BLOCKED if left == 0 else PinState.NOT_VERIFIED, left)
        if response.sw in (SW.AUTH_METHOD_BLOCKED, SW.REFERENCE_DATA_NOT_USABLE):
            return PinOutcome(PinState.BLOCKED, 0)
        if response.sw == SW.APPLICATION_LOCKED:
            raise CardLocked()
        if response.sw in PIN_STATUS_UNSUPPORTED:
            return PinOutcome(PinState.UNKNOWN)
        raise self._card_error(ApduError(response.sw))

    def verify(self, pin: PinLike) -> PinOutcome:
        """VERIFY (docs/card-reference.md §2).  Sent exactly once: a wrong PIN is reported, never retried.

        The packed BCD is wiped after the exchange; a :class:`Pin` is the caller's to wipe.
        """
        packed = encode_pin(pin)
        try:
            response = self.connection.send(Command(0x00, 0x20, 0x00, 0x00, bytes(packed)))
        finally:
            _wipe(packed)
        return self._pin_outcome(response.sw)

    def change_pin(self, old: PinLike, new: PinLike) -> PinOutcome:
        """CHANGE PIN ``80 5E 01 00 Lc old ‖ FF ‖ new`` (docs/card-reference.md §2); both PINs validated first."""
        old_packed, new_packed = encode_pin(old), encode_pin(new)
        data = bytearray(old_packed)
        data += b"\xff"
        data += new_packed
        try:
            response = self.connection.send(Command(0x80, 0x5E, 0x01, 0x00, bytes(data)))
        finally:
            for buffer in (old_packed, new_packed, data):
                _wipe(buffer)
        return self._pin_outcome(response.sw)

    def _pin_outcome(self, sw: int) -> PinOutcome:
        if sw == SW.OK:
            return PinOutcome(PinState.VERIFIED)
        left = tries_left(sw)
        if left is not None:
            return PinOutcome(PinState.BLOCKED if left == 0 else PinState.INCORRECT, left)
        if sw in (SW.AUTH_METHOD_BLOCKED, SW.REFERENCE_DATA_NOT_USABLE):
            return PinOutcome(PinState.BLOCKED, 0)
        if sw in (SW.WRONG_LENGTH, SW.WRONG_DATA):
            raise PinFormat(f"card answered {sw:04X}")
        raise self._card_error(ApduError(sw))

    # -- errors -----------------------------------------------------------------------------

    @staticmethod
    def _card_error(exc: ApduError) -> Exception:
        if exc.sw == SW.APPLICATION_LOCKED:
            return CardLocked()
        return CardError(exc.sw, SW.describe(exc.sw))


def _find_algorithm(fci: bytes) -> int:
    """The algorithm flag ``9F0C 03 86 01 xx`` inside the FCI; ``01`` (3DES) when absent (docs/card-reference.md §1)."""
    marker = fci.find(b"\x9f\x0c")
    if marker >= 0:
        body = fci[marker + 3 : marker + 3 + fci[marker + 2]] if marker + 2 < len(fci) else b""
        if len(body) >= 3 and body[0] == 0x86 and body[1] == 0x01:
            return body[2]
    return 0x01
