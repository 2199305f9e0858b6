"""The APDU trace format (docs/trace-format.md) and the one place PIN-bearing data is redacted.

A trace is reviewable text: a header of ``# key: value`` lines (ATR, protocol, reader, source,
date), then one exchange per line, ``COMMAND -> RESPONSE`` in upper-case hex.  Data of commands
that carry a PIN or a key cryptogram (docs/design.md §9) is written as ``**`` per byte, so a trace can be
committed, attached to a bug report or logged without leaking a resident's PIN.  The header bytes,
Lc and Le stay visible so a replay still checks that the right command was sent.

Everything that logs or records APDUs goes through :func:`redact_command`; nothing else may format
a command APDU for output.  Responses that are logged (not recorded) go through
:class:`ResponseMask`, which hides the resident's personal data the same way (PIPL, docs/trace-format.md
"Personal data"), unless the process opted in with :func:`sscard.privacy.show_personal_data`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sscard.errors import PrivateFileError, TraceInvalid
from sscard.files import create_private_file, read_regular_file
from sscard.privacy import personal_data_shown

FORMAT_VERSION = "1"
MASK = "**"
#: The largest trace file loaded (a whole read with a photo is some 30 KB): more is TRACE_INVALID.
TRACE_FILE_LIMIT = 16 * 1024 * 1024
#: The values the ``protocol`` header may take.
PROTOCOLS = ("T=0", "T=1")

#: INS codes whose command data is never logged or recorded: VERIFY (20), ISO CHANGE REFERENCE DATA
#: and this card's UNBLOCK PIN (24, docs/card-reference.md §2), RESET RETRY COUNTER (2C), this card's CHANGE and
#: RELOAD PIN (5E), EXTERNAL AUTHENTICATE (82).
REDACTED_INS: frozenset[int] = frozenset({0x20, 0x24, 0x2C, 0x5E, 0x82})


def _data_span(apdu: bytes) -> tuple[int, int]:
    """Start and end offsets of the command data field, (4, 4) when there is none."""
    body_len = len(apdu) - 4
    if body_len <= 1:
        return 4, 4
    if apdu[4] != 0:
        lc = apdu[4]
        if body_len in (1 + lc, 2 + lc):
            return 5, 5 + lc
        return 5, len(apdu)  # malformed: hide everything after the header
    if body_len == 3:
        return 4, 4
    lc = int.from_bytes(apdu[5:7], "big") if len(apdu) >= 7 else 0
    if lc and body_len in (3 + lc, 5 + lc):
        return 7, 7 + lc
    return 5, len(apdu)


def is_redacted(apdu: bytes) -> bool:
    """Whether ``apdu`` (a whole command, or just its 4-byte header) may carry a PIN or a key cryptogram.

    The one predicate for "PIN-bearing": redaction here, and the APDU processors, which never
    resend or continue such a command (issue 11).
    """
    return len(apdu) >= 4 and apdu[1] in REDACTED_INS


def carries_secret(apdu: bytes) -> bool:
    """Whether a whole command APDU carries a PIN or a key cryptogram: a redacted INS with data.

    VERIFY without data (the tries-left query) carries nothing.  A replay cannot check such data
    (the trace holds ``**``), so replay readers refuse it unless opened for tests.
    """
    if not is_redacted(apdu):
        return False
    start, end = _data_span(apdu)
    return end > start


def redact_command(apdu: bytes) -> str:
    """Upper-case hex of a command APDU with secret data bytes replaced by ``**``."""
    if not is_redacted(apdu):
        return apdu.hex().upper()
    start, end = _data_span(apdu)
    return apdu[:start].hex().upper() + MASK * (end - start) + apdu[end:].hex().upper()


#: READ RECORD in record-identifier mode (``00 B2 tag (SFI << 3)``, P2's low bits 000: P1 is the
#: element's tag; the social security card, docs/card-reference.md §3, and the health card) for elements that
#: are not personal data: the SSC's EF05 card identification code 01 (卡识别码: the chip's
#: identifier, not an attribute of its holder; its bytes also reach the PSAM as diversification
#: data and partly stand in the ATR, and card-authentication debugging needs them), card type 02,
#: spec version 03, issuer 04, issue date 05, expiry date 06 (the health card's 01, 02, 03, 06 are
#: its type, version, issuer and issue date).  Every other record is masked: the card number 07
#: (卡号: the holder's account number, printed on the card, masked like a PAN), all of EF06 (SSN
#: 08, name 09 and 4E, gender 0A, nation 0B -- ethnic origin, sensitive under PIPL art. 28 --,
#: birthplace 0C, birth date 0D), the health card's card number 08 (the resident ID number), and
#: any tag not known.
PUBLIC_RECORD_TAGS: frozenset[int] = frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0x06})
INS_READ_RECORD, INS_READ_BINARY, INS_GET_RESPONSE, INS_GET_PROCESSING_OPTIONS = 0xB2, 0xB0, 0xC0, 0xA8
#: EMV templates whose contents are masked (their tag and length kept): a READ RECORD answer's
#: record template 70 (PAN 5A, track 2 57, cardholder name 5F20, transaction logs) and GPO's
#: format-2 answer 77 (track 2 carries the PAN).  GPO's format 1 (80: AIP and AFL) stays in clear.
EMV_MASKED_TEMPLATES: frozenset[int] = frozenset({0x70, 0x77})


def _ber_header(data: bytes) -> int:
    """Length of a one-byte-tag BER-TLV header at the start of ``data`` (tag, 1-3 length bytes)."""
    if len(data) < 2:
        return len(data)
    first = data[1]
    return 2 if first < 0x80 else min(len(data), 2 + (first & 0x7F))


class ResponseMask:
    """Formats logged responses with personal data masked: ``**`` per byte of an element's value,
    its tag and length bytes and the status word kept, so a trace still shows what was read and how
    long it was.  READ BINARY data (the photo, EF08) is masked whole; so is anything that does not
    start with the tag it should.

    Stateful, one per connection: the data of a personal READ RECORD or READ BINARY answered with
    ``61xx`` arrives in the GET RESPONSE exchanges that follow, which are masked too.
    """

    def __init__(self) -> None:
        #: Of a personal answer continued by GET RESPONSE: header bytes (tag, length) still to show,
        #: and the tags it may start with; None when the last answer was not personal or complete.
        self._pending: tuple[int, frozenset[int]] | None = None

    def response(self, command: bytes, response: bytes) -> str:
        """Upper-case hex of ``response`` (data + SW) to ``command`` (the whole APDU or its 4-byte
        header: only CLA INS P1 P2 are looked at), personal data as ``**``."""
        plan = self._plan(command)
        if len(response) < 2:
            self._pending = None
            return response.hex().upper()
        data, sw = response[:-2], response[-2:]
        if plan is None or not data:
            # Nothing personal, or a bare status word (61xx: the data follows in GET RESPONSE).
            self._pending = plan if sw[0] == 0x61 else None
            return response.hex().upper()
        keep, tags = plan
        if keep and data[0] not in tags:
            keep = 0  # not the TLV it should be: its first bytes may be the value itself
        elif keep:
            keep = _ber_header(data)
            if data[0] == 0x80 and 0x80 in tags:
                self._pending = None
                return response.hex().upper()  # GPO format 1 (AIP, AFL): nothing personal
        self._pending = (max(0, keep - len(data)), tags) if sw[0] == 0x61 else None
        if personal_data_shown():
            return response.hex().upper()
        return data[:keep].hex().upper() + MASK * (len(data) - min(keep, len(data))) + sw.hex().upper()

    def _plan(self, command: bytes) -> tuple[int, frozenset[int]] | None:
        """None when the answer to ``command`` holds nothing personal; else (header bytes that may
        be shown, the tags the answer may start with)."""
        if len(command) < 4:
            return None
        ins, p1, p2 = command[1], command[2], command[3]
        if ins == INS_GET_RESPONSE:
            return self._pending
        if ins == INS_READ_RECORD:
            if p2 & 0x07 == 0:  # record-identifier mode: P1 is the tag
                return None if p1 in PUBLIC_RECORD_TAGS else (2, frozenset({p1}))
            return (2, EMV_MASKED_TEMPLATES)  # record-number mode (EMV records): every record
        if ins == INS_READ_BINARY:
            return (0, frozenset())
        if ins == INS_GET_PROCESSING_OPTIONS:
            return (2, EMV_MASKED_TEMPLATES | {0x80})
        return None


def command_matches(pattern: str, apdu: bytes) -> bool:
    """Whether ``apdu`` is the command recorded as ``pattern`` (``**`` matches any one byte)."""
    if len(pattern) != 2 * len(apdu):
        return False
    actual = apdu.hex().upper()
    return all(p in (MASK, a) for p, a in zip(_pairs(pattern), _pairs(actual), strict=True))


def _pairs(text: str) -> list[str]:
    return [text[i : i + 2] for i in range(0, len(text), 2)]


@dataclass(frozen=True)
class Exchange:
    """One command (hex pattern, redacted where secret) and the card's whole response (data + SW)."""

    command: str
    response: bytes

    def line(self) -> str:
        return f"{self.command} -> {self.response.hex().upper()}"


@dataclass
class Trace:
    """A whole trace: header fields and the ordered exchanges."""

    header: dict[str, str] = field(default_factory=dict)
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def atr(self) -> bytes:
        return _atr(self.header.get("atr", ""), "<trace>")

    @property
    def protocol(self) -> str:
        return _protocol(self.header.get("protocol", "T=1"), "<trace>")

    def dump(self) -> str:
        lines = [f"# sscard-trace: {FORMAT_VERSION}"]
        lines += [f"# {key}: {value}" for key, value in self.header.items() if key != "sscard-trace"]
        lines.append("")
        lines += [exchange.line() for exchange in self.exchanges]
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> None:
        """Write the trace to a file created 0600: a trace holds a resident's card data (issue 11)."""
        create_private_file(path, self.dump().encode("utf-8"))

    @classmethod
    def parse(cls, text: str, origin: str = "<trace>") -> Trace:
        trace = cls()
        in_header = True
        for number, raw_line in enumerate(text.splitlines(), start=1):
            line = raw_line.strip()
            if not line:
                continue
            if line.startswith("#"):
                match = _HEADER.match(line)
                if in_header and match:
                    trace.header[match.group(1).lower()] = match.group(2).strip()
                continue
            in_header = False
            match = _EXCHANGE.match(line)
            if not match:
                raise TraceInvalid(f"{origin}:{number}: not an exchange line: {line[:60]!r}")
            trace.exchanges.append(Exchange(match.group(1).upper(), bytes.fromhex(match.group(2))))
        version = trace.header.get("sscard-trace")
        if version != FORMAT_VERSION:
            raise TraceInvalid(f"{origin}: not an sscard trace of format {FORMAT_VERSION} (got {version!r:.40})")
        # Checked here, once, so a bad header is TRACE_INVALID at load, never a ValueError later.
        _atr(trace.header.get("atr", ""), origin)
        _protocol(trace.header.get("protocol", "T=1"), origin)
        return trace

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        """Read and parse a trace file; an unreadable or non-UTF-8 file is TRACE_INVALID too."""
        try:
            text = read_regular_file(path, limit=TRACE_FILE_LIMIT).decode("utf-8")
        except PrivateFileError as exc:
            raise TraceInvalid(f"{path}: {exc.fields['problem']}") from None
        except UnicodeDecodeError as exc:
            raise TraceInvalid(f"{path}: not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise TraceInvalid(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
        return cls.parse(text, origin=str(path))


def _atr(value: str, origin: str) -> bytes:
    """The ``atr`` header as bytes: hex digits (blanks allowed), at most 33 bytes (ISO 7816-3)."""
    try:
        atr = bytes.fromhex(value)
    except ValueError:
        raise TraceInvalid(f"{origin}: header atr is not hex: {value[:40]!r}") from None
    if len(atr) > 33:
        raise TraceInvalid(f"{origin}: header atr is {len(atr)} bytes, longer than an ATR can be (33)")
    return atr


def _protocol(value: str, origin: str) -> str:
    if value not in PROTOCOLS:
        raise TraceInvalid(f"{origin}: header protocol must be T=0 or T=1, not {value[:20]!r}")
    return value


_HEADER = re.compile(r"^#\s*([A-Za-z][\w-]*)\s*:\s*(.*)$")
_EXCHANGE = re.compile(r"^((?:[0-9A-Fa-f]{2}|\*\*){4,})\s*->\s*((?:[0-9A-Fa-f]{2}){2,})$")
