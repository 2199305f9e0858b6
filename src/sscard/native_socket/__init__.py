"""The Unix-domain socket that ``libSSCardDriver.so`` and ``libHeaSecReadInfo.so`` talk to (docs/native.md).

Kiosk programs written against the national reader interface (docs/card-reference.md §6.5) link the C library
in ``native/``; each of its calls is one request on this socket, answered by calling the
:class:`~sscard.terminal.Terminal` facade, so the C side needs no JSON parser and no Python runs
inside the host program.  The wire protocol (docs/native.md, "Wire protocol")::

    request   SSCARD1 TAB FUNCTION TAB ENCODING TAB OUTSIZE TAB PIN_TIMEOUT_MS [TAB ARG]... LF
    answer    RC TAB LENGTH LF, then LENGTH bytes of pOutInfo (encoded, no NUL)

Arguments escape ``\\``, TAB, LF and CR as ``\\\\``, ``\\t``, ``\\n``, ``\\r``.  ``ENCODING`` is
``gbk`` (encoded with Python's GB18030 codec, so a character GBK lacks comes out as GB18030
bytes) or ``utf-8``; the answer never exceeds ``OUTSIZE - 1`` bytes and a result line that does
not fit is refused rather than cut.

One card operation at a time: every call goes through the ``runner`` the caller gives (the
service passes its own, so socket clients queue with HTTP clients).  PINs come from a
:class:`PinSource` — the kiosk page (``page``) or the reader's own PIN pad (``pinpad``, PC/SC
part 10) — and never appear in a log, an event or an error.

    python -m sscard.native_socket --socket PATH --reader READER     # for tests and docs

The package: ``protocol`` (the wire format, the calls' errors), ``pins`` (PIN sources: the page,
PC/SC part 10 PIN pads), ``server`` (the server, runners, systemd socket activation, the entry
point), ``heasec`` (``libHeaSecReadInfo.so``'s own operations: ``ReadSFZ``, ``GetPersonInfo``).
"""

from __future__ import annotations

from sscard.native_socket.pins import (
    CM_IOCTL_GET_FEATURE_REQUEST,
    FEATURE_MODIFY_PIN_DIRECT,
    FEATURE_VERIFY_PIN_DIRECT,
    Control,
    PagePinSource,
    PinpadPinSource,
    PinSource,
    modify_structure,
    parse_features,
    pinpad_outcome,
    verify_structure,
)
from sscard.native_socket.protocol import (
    DEFAULT_SOCKET,
    EXTRA_RETURN_CODES,
    PROTOCOL,
    Answer,
    BadCall,
    Parts,
    PinEntryCancelled,
    PinEntryTimeout,
    Request,
    encode,
    encode_answer,
    encode_parts,
    escape,
    national_code,
    parse_request,
    unescape,
)
from sscard.native_socket.server import (
    NOT_SUPPORTED,
    SYSTEMD_SOCKET_UNIT,
    NativeSocketServer,
    Runner,
    async_runner,
    lock_runner,
    main,
    systemd_socket,
)

__all__ = [
    "CM_IOCTL_GET_FEATURE_REQUEST",
    "DEFAULT_SOCKET",
    "EXTRA_RETURN_CODES",
    "FEATURE_MODIFY_PIN_DIRECT",
    "FEATURE_VERIFY_PIN_DIRECT",
    "NOT_SUPPORTED",
    "PROTOCOL",
    "SYSTEMD_SOCKET_UNIT",
    "Answer",
    "BadCall",
    "Control",
    "NativeSocketServer",
    "PagePinSource",
    "Parts",
    "PinEntryCancelled",
    "PinEntryTimeout",
    "PinSource",
    "PinpadPinSource",
    "Request",
    "Runner",
    "async_runner",
    "encode",
    "encode_answer",
    "encode_parts",
    "escape",
    "lock_runner",
    "main",
    "modify_structure",
    "national_code",
    "parse_features",
    "parse_request",
    "pinpad_outcome",
    "systemd_socket",
    "unescape",
    "verify_structure",
]
