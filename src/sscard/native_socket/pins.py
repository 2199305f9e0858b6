"""Where the PIN of iVerifyPIN/iChangePIN comes from: the kiosk page, or the reader's PIN pad.

Both run inside the card lock, after the server checked the card (no card, blocked); the PIN is
asked for once, never retried, never logged, and wiped after the card answered.
"""

from __future__ import annotations

import contextlib
import secrets
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from sscard.errors import ControlUnsupported, PinEntryCancelled, PinEntryTimeout, PinFormat
from sscard.native_socket.protocol import BadCall
from sscard.ssc.application import PinOutcome, PinState
from sscard.ssc.pin import Pin
from sscard.terminal import Terminal


class PinSource(Protocol):
    """Where the PIN of an ``iVerifyPIN``/``iChangePIN`` comes from.  Runs inside the card lock.

    ``caller``: the program that asked, when the socket can tell (``"name (PID n)"``), so the
    resident sees who wants the PIN.
    """

    def verify(self, terminal: Terminal, timeout: float, caller: str | None = None) -> PinOutcome: ...

    def change(self, terminal: Terminal, timeout: float, caller: str | None = None) -> PinOutcome: ...


@dataclass
class _Pending:
    operation: str
    done: threading.Event = field(default_factory=threading.Event)
    pins: tuple[Pin, ...] = ()
    cancelled: bool = False


def _pin_of(given: str | bytearray | Pin | None) -> Pin:
    """The answer's PIN; a missing or non-ASCII one is an empty Pin, refused as PIN_FORMAT (−33)."""
    if isinstance(given, Pin):
        return given
    if isinstance(given, bytearray):
        return Pin(given)
    if isinstance(given, str):
        try:
            return Pin.from_text(given)
        except PinFormat:
            pass
    return Pin(bytearray())


class PagePinSource:
    """The kiosk page types the PIN: publish ``pin_requested``, wait for :meth:`answer`.

    ``publish`` gets ``{"kind": "pin_requested", "request": ID, "operation": "verify"|"change",
    "timeout": seconds, "caller": "name (PID n)" | None}`` (the service forwards it on
    ``/v1/events``); ``POST /v1/pin-entry`` calls :meth:`answer`.  When the request closes —
    answered, cancelled, timed out — ``{"kind": "pin_request_closed", "request": ID, "reason":
    "answered" | "cancelled" | "timeout"}`` follows, so every page showing the pad takes it down.
    """

    def __init__(self, publish: Callable[[dict[str, Any]], None]) -> None:
        self.publish = publish
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def answer(
        self,
        request: str,
        *,
        pin: str | bytearray | Pin | None = None,
        old: str | bytearray | Pin | None = None,
        new: str | bytearray | Pin | None = None,
        cancel: bool = False,
    ) -> bool:
        """Deliver the answer to request ``request``; False when no such request is waiting.

        A PIN of the wrong shape is still delivered (and refused as PIN_FORMAT, −33, by the
        terminal before anything reaches the card), so the caller learns the right code.
        """
        with self._lock:
            pending = self._pending.get(request)
            if pending is None or pending.done.is_set():
                return False
            if cancel:
                pending.cancelled = True
            else:
                given = (pin,) if pending.operation == "verify" else (old, new)
                pending.pins = tuple(_pin_of(p) for p in given)
            pending.done.set()
        for given_pin in (pin, old, new):  # what the request does not use is wiped now
            if isinstance(given_pin, Pin) and all(given_pin is not kept for kept in pending.pins):
                given_pin.wipe()
        return True

    @contextlib.contextmanager
    def _ask(self, operation: str, timeout: float, caller: str | None) -> Iterator[tuple[Pin, ...]]:
        request = secrets.token_hex(8)
        pending = _Pending(operation)
        with self._lock:
            self._pending[request] = pending
        reason = "timeout"
        try:
            self.publish(
                {
                    "kind": "pin_requested",
                    "request": request,
                    "operation": operation,
                    "timeout": round(timeout, 3),
                    "caller": caller,
                }
            )
            answered = pending.done.wait(timeout)
            with self._lock:
                self._pending.pop(request, None)
                pending.done.set()  # a late answer finds the request closed
            if not answered:
                raise PinEntryTimeout(f"no answer to request {request} in {timeout:g} s")
            if pending.cancelled:
                reason = "cancelled"
                raise PinEntryCancelled(f"request {request}")
            reason = "answered"
            yield pending.pins
        finally:
            for p in pending.pins:
                p.wipe()
            self.publish({"kind": "pin_request_closed", "request": request, "reason": reason})

    def verify(self, terminal: Terminal, timeout: float, caller: str | None = None) -> PinOutcome:
        with self._ask("verify", timeout, caller) as (pin,):
            return terminal.verify(pin)

    def change(self, terminal: Terminal, timeout: float, caller: str | None = None) -> PinOutcome:
        with self._ask("change", timeout, caller) as (old, new):
            return terminal.change_pin(old, new)


# PC/SC part 10 (pcsc-lite's reader.h): SCARD_CTL_CODE(3400) and the feature tags.
CM_IOCTL_GET_FEATURE_REQUEST = 0x42000000 + 3400
FEATURE_VERIFY_PIN_DIRECT = 0x06
FEATURE_MODIFY_PIN_DIRECT = 0x07
#: Status words a PIN pad reader answers with (PC/SC part 10): timeout, cancel, PINs differ.
SW_PINPAD_TIMEOUT, SW_PINPAD_CANCEL, SW_PINPAD_MISMATCH = 0x6400, 0x6401, 0x6402
#: zh-CN, for the reader's own prompts.
LANG_ZH_CN = 0x0804


class Control(Protocol):
    """What the pinpad source needs of a connection: ``SCardControl(code, data) -> answer``."""

    def control(self, code: int, data: bytes) -> bytes: ...


def parse_features(answer: bytes) -> dict[int, int]:
    """The GET_FEATURE_REQUEST answer: TLVs of tag, length 4, control code (big-endian)."""
    features: dict[int, int] = {}
    i = 0
    while i + 2 <= len(answer):
        tag, length = answer[i], answer[i + 1]
        value = answer[i + 2 : i + 2 + length]
        if length == 4 and len(value) == 4:
            features[tag] = int.from_bytes(value, "big")
        i += 2 + length
    return features


def _bcd_template(digits: int) -> bytes:
    return b"\xff" * ((digits + 1) // 2)


def verify_structure(digits: int, timeout: int) -> bytes:
    """PIN_VERIFY_STRUCTURE for the SSC's VERIFY ``00 20 00 00 Lc BCD`` (F-padded, docs/card-reference.md §2).

    bmFormatString 0x81: units in bytes, PIN at offset 0 of the data, left-justified, BCD.
    bmPINBlockString: no length field, a block of ``ceil(digits/2)`` bytes; the template is
    ``FF`` so an odd last digit keeps its ``F`` pad.  Entry ends on the validation key (0x02).
    """
    block = _bcd_template(digits)
    apdu = bytes([0x00, 0x20, 0x00, 0x00, len(block)]) + block
    return (
        struct.pack(
            "<BBBBBHBBHB3sI",
            min(timeout, 255),
            0,
            0x81,
            len(block),
            0x00,
            (digits << 8) | digits,
            0x02,
            0x01,
            LANG_ZH_CN,
            0,
            b"\x00\x00\x00",
            len(apdu),
        )
        + apdu
    )


def modify_structure(digits: int, timeout: int) -> bytes:
    """PIN_MODIFY_STRUCTURE for CHANGE PIN ``80 5E 01 00 Lc old ‖ FF ‖ new`` (docs/card-reference.md §2)."""
    block = _bcd_template(digits)
    data = block + b"\xff" + block
    apdu = bytes([0x80, 0x5E, 0x01, 0x00, len(data)]) + data
    return (
        struct.pack(
            "<BBBBBBBHBBBHBBB3sI",
            min(timeout, 255),
            0,
            0x81,
            len(block),
            0x00,
            0,  # bInsertionOffsetOld
            len(block) + 1,  # bInsertionOffsetNew: after old ‖ FF
            (digits << 8) | digits,
            0x03,  # bConfirmPIN: confirm the new PIN, and ask for the old one
            0x02,
            0x03,
            LANG_ZH_CN,
            0,
            1,
            2,
            b"\x00\x00\x00",
            len(apdu),
        )
        + apdu
    )


def pinpad_outcome(answer: bytes) -> PinOutcome:
    """The card's (or the reader's) status word after a PIN pad operation, as an outcome."""
    if len(answer) < 2:
        raise BadCall("PIN pad answer shorter than a status word")
    sw = int.from_bytes(answer[-2:], "big")
    if sw == 0x9000:
        return PinOutcome(PinState.VERIFIED)
    if sw == SW_PINPAD_TIMEOUT:
        raise PinEntryTimeout("the PIN pad timed out")
    if sw == SW_PINPAD_CANCEL:
        raise PinEntryCancelled("cancelled on the PIN pad")
    if sw == SW_PINPAD_MISMATCH:
        from sscard.errors import PinMismatch

        raise PinMismatch()
    if sw & 0xFFF0 == 0x63C0:
        return PinOutcome(PinState.INCORRECT if sw & 0xF else PinState.BLOCKED, sw & 0xF)
    if sw in (0x6983, 0x6984):
        return PinOutcome(PinState.BLOCKED, 0)
    if sw in (0x6700, 0x6A80, 0x6403):
        raise PinFormat(f"PIN pad / card answered {sw:04X}")
    from sscard.errors import CardError

    raise CardError(sw)


class PinpadPinSource:
    """The reader's own PIN pad (PC/SC part 10): the PIN never reaches the host.

    Uses ``control(code, data)`` on the terminal's connection (``SCardControl`` on the PC/SC
    card handle; other transports raise ControlUnsupported, −14).  ``digits``: the PIN length the pad
    takes (SSC PINs are issued with 6); ``timeout`` is passed to the reader (at most 255 s).
    """

    def __init__(self, digits: int = 6) -> None:
        self.digits = digits

    def _run(self, terminal: Terminal, tag: int, structure: bytes) -> PinOutcome:
        """Find the feature and send the structure, inside one PC/SC transaction."""
        transport = terminal.transport  # connected by the status query just before
        if transport is None:
            raise ControlUnsupported("no card connection")
        channel: Control = transport
        with transport.transaction():
            code = parse_features(channel.control(CM_IOCTL_GET_FEATURE_REQUEST, b"")).get(tag)
            if code is None:
                raise BadCall("the reader has no PIN pad (FEATURE_VERIFY/MODIFY_PIN_DIRECT)")
            return pinpad_outcome(channel.control(code, structure))

    def verify(self, terminal: Terminal, timeout: float, caller: str | None = None) -> PinOutcome:
        return self._run(terminal, FEATURE_VERIFY_PIN_DIRECT, verify_structure(self.digits, int(timeout)))

    def change(self, terminal: Terminal, timeout: float, caller: str | None = None) -> PinOutcome:
        return self._run(terminal, FEATURE_MODIFY_PIN_DIRECT, modify_structure(self.digits, int(timeout)))
