"""Trace format, redaction, strict replay and recording (docs/trace-format.md, docs/design.md §6, §9).

The PIN used throughout is 123456 (packed BCD ``123456``); the test that matters most here is that
those digits never come out of redaction, a mismatch message, or a recorded trace file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import sscard
from sscard.apdu.command import Command
from sscard.apdu.processors import standard_stack, transceive
from sscard.errors import TraceMismatch, TransportFailure
from sscard.transports.base import Reader, Transport
from sscard.transports.replay import RecordingTransport, ReplayReader, ReplayTransport
from sscard.transports.trace import (
    FORMAT_VERSION,
    Exchange,
    Trace,
    command_matches,
    is_redacted,
    redact_command,
)

H = bytes.fromhex
PIN = "123456"
NEW_PIN = "654321"
SSSE = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF00"
FCI = "6F11840F7378312E73682EC9E7BBE1B1A3D5CF9000"


def redact(hex_apdu: str) -> str:
    return redact_command(H(hex_apdu.replace(" ", "")))


# --- redaction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "shown"),
    [
        # VERIFY (docs/card-reference.md §2): header and Lc visible, PIN masked
        ("00 20 00 00 03 123456", "0020000003******"),
        ("00 20 00 01 06 313233343536", "0020000106************"),
        # CHANGE PIN: old ‖ FF ‖ new
        ("80 5E 01 00 07 123456 FF 654321", "805E010007" + "**" * 7),
        # RELOAD PIN: new PIN + MAC
        ("80 5E 00 00 07 123456 AABBCCDD", "805E000007" + "**" * 7),
        # UNBLOCK PIN under secure messaging
        ("84 24 00 00 0B 123456 FF 654321 11223344", "842400000B" + "**" * 11),
        # ISO CHANGE REFERENCE DATA
        ("00 24 00 00 06 123456 654321", "0024000006" + "**" * 6),
        # RESET RETRY COUNTER
        ("00 2C 00 00 06 12345678 1234", "002C000006" + "**" * 6),
        # EXTERNAL AUTHENTICATE with RKSSSE (P2 0A): cryptogram masked, P2 visible
        ("00 82 00 0A 10" + "A5" * 16, "0082000A10" + "**" * 16),
        # ... and with an Le: it stays visible after the mask
        ("00 82 00 0A 10" + "A5" * 16 + "00", "0082000A10" + "**" * 16 + "00"),
    ],
)
def test_secret_command_data_is_masked(apdu: str, shown: str) -> None:
    assert is_redacted(H(apdu.replace(" ", "")))
    assert redact(apdu) == shown


@pytest.mark.parametrize(
    ("apdu", "shown"),
    [
        # extended case 3: 00 Lc(2) data
        ("00 20 00 00 00 0003 123456", "00200000000003******"),
        # extended case 4: 00 Lc(2) data Le(2)
        ("00 82 00 0A 00 0010" + "A5" * 16 + "0000", "0082000A000010" + "**" * 16 + "0000"),
        # long enough that it has to be extended
        ("80 5E 01 00 00 0101" + "12" * 257, "805E0100000101" + "**" * 257),
    ],
)
def test_extended_length_secret_data_is_masked(apdu: str, shown: str) -> None:
    assert redact(apdu) == shown


@pytest.mark.parametrize(
    "apdu",
    [
        SSSE,
        "00A4020002EF05",
        "00B2080014",
        "00B2072C0B",
        "0084000008",  # GET CHALLENGE
        "0088000010" + "0123456789ABCDEF0123456789ABCDEF",  # INTERNAL AUTHENTICATE: terminal random
        "00C0000010",
        "00200000",  # VERIFY without data: the tries-left query
        "0020000000",  # ... with an Le: no data to hide
    ],
)
def test_other_commands_are_written_in_full(apdu: str) -> None:
    assert redact(apdu) == apdu.upper()


@pytest.mark.parametrize(
    ("apdu", "shown"),
    [
        ("00 20 00 00 05 1234", "0020000005****"),  # Lc says 5, two bytes came
        ("00 20 00 00 02 123456 78", "0020000002********"),  # Lc says 2, four bytes came
        ("00 20 00 00 00 12", "0020000000**"),  # an extended marker with no room for a length
        ("00 20 00 00 00 0009 123456", "0020000000" + "**" * 5),  # extended Lc does not match
    ],
)
def test_malformed_verify_is_still_redacted(apdu: str, shown: str) -> None:
    """When Lc does not tell where the data ends, everything after it is hidden."""
    assert redact(apdu) == shown
    assert "1234" not in redact(apdu)


def test_redaction_hides_the_pin_whatever_its_digits() -> None:
    for pin in ("7531", "999999999999", "13579", "12345678"):
        packed = pin + "F" * (len(pin) % 2)
        shown = redact(f"00200000{len(packed) // 2:02X}{packed}")
        assert pin not in shown
        assert set(shown[10:]) == {"*"}


# --- format: dump and parse ------------------------------------------------------------------


def sample_trace() -> Trace:
    return Trace(
        {"atr": "3B6D00000081544E43238697159900BF7C7A", "protocol": "T=0", "reader": "Virtual PCD 00 00"},
        [
            Exchange(SSSE, H(FCI)),
            Exchange("00200000", H("63C3")),
            Exchange("0020000003******", H("9000")),
            Exchange("00B2080014", H("6114")),
            Exchange("00C0000014", H("0812" + "31" * 18 + "9000")),
        ],
    )


def test_dump_parse_round_trip() -> None:
    trace = sample_trace()
    text = trace.dump()
    assert text.startswith(f"# sscard-trace: {FORMAT_VERSION}\n# atr: 3B6D")
    assert "0020000003****** -> 9000\n" in text
    parsed = Trace.parse(text)
    assert parsed.exchanges == trace.exchanges
    assert parsed.header == {"sscard-trace": FORMAT_VERSION, **trace.header}
    assert parsed.dump() == text
    assert (parsed.atr, parsed.protocol) == (H("3B6D00000081544E43238697159900BF7C7A"), "T=0")


def test_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "read.apdu"
    sample_trace().save(path)
    assert Trace.load(path).exchanges == sample_trace().exchanges


def test_parse_is_lenient_about_case_blanks_and_comments() -> None:
    text = (
        "#   SSCARD-Trace :  1  \n"
        "# Protocol: T=1\n"
        "\n"
        "00a4020002ef05->9000\n"
        "# a comment between exchanges, not a header\n"
        "   00b2080014   ->   0812313131319000   \n"
        "\n"
    )
    trace = Trace.parse(text)
    assert trace.header == {"sscard-trace": "1", "protocol": "T=1"}
    assert trace.exchanges == [
        Exchange("00A4020002EF05", H("9000")),
        Exchange("00B2080014", H("0812313131319000")),
    ]
    assert trace.atr == b""


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("00A4020002EF05 9000", 3),  # no arrow
        ("00A4020002EF0 -> 9000", 3),  # odd hex
        ("00A4 -> 9000", 3),  # shorter than a header
        ("00A4020002EF05 -> 90", 3),  # no status word
        ("00A4020002EF05 -> 90ZZ", 3),
        ("00A4020002EF05 -> 9000\nhello", 4),
    ],
)
def test_parse_errors_name_the_line(body: str, line: int) -> None:
    with pytest.raises(TraceMismatch, match=rf"t\.apdu:{line}: not an exchange line"):
        Trace.parse(f"# sscard-trace: 1\n\n{body}\n", origin="t.apdu")


@pytest.mark.parametrize("first", ["# sscard-trace: 2", "# sscard-trace: ", "# atr: 3B00"])
def test_parse_rejects_other_format_versions(first: str) -> None:
    with pytest.raises(TraceMismatch, match="not an sscard trace of format 1"):
        Trace.parse(f"{first}\n\n00A4020002EF05 -> 9000\n")


def test_command_matches_masks_one_byte_per_pair() -> None:
    assert command_matches("0020000003******", H("0020000003123456"))
    assert command_matches("0020000003******", H("0020000003999999"))
    assert not command_matches("0020000003******", H("002000000412345678"))  # other length
    assert not command_matches("0020000003******", H("0020000103123456"))  # other P2
    assert not command_matches("00B2080014", H("00B2080015"))


# --- strict replay ---------------------------------------------------------------------------


def test_replay_answers_in_order_with_header_atr_and_protocol() -> None:
    transport = ReplayTransport(sample_trace(), name="replay:sample", accept_any_pin=True)
    assert isinstance(transport, Transport)
    assert (transport.name, transport.atr.hex().upper(), transport.protocol) == (
        "replay:sample",
        "3B6D00000081544E43238697159900BF7C7A",
        "T=0",
    )
    connection = standard_stack(transport)
    with transport.transaction():
        assert transceive(connection, Command.from_bytes(H(SSSE))) == H(FCI)[:-2]
        assert connection.send(Command(0x00, 0x20, 0x00, 0x00)).sw == 0x63C3
        assert connection.send(Command(0x00, 0x20, 0x00, 0x00, H(PIN))).ok
        assert not transport.finished
        assert transceive(connection, Command(0x00, 0xB2, 0x08, 0x00, le=0x14))[:2] == H("0812")
    assert transport.finished
    transport.assert_finished()


def test_replay_rejects_an_unexpected_command_and_redacts_it() -> None:
    transport = ReplayTransport(sample_trace(), accept_any_pin=True)
    transport.transmit(H(SSSE))
    with pytest.raises(TraceMismatch) as info:
        transport.transmit(H("0020000003" + PIN))  # the trace expected the tries-left query here
    text = f"{info.value} {info.value.to_dict()}"
    assert "exchange 2" in text
    assert "expected 00200000" in text
    assert "got 0020000003******" in text
    assert PIN not in text
    assert transport.position == 1  # nothing consumed by the failed attempt


def test_replay_rejects_a_command_after_the_end() -> None:
    transport = ReplayTransport(Trace({}, [Exchange(SSSE, H(FCI))]), accept_any_pin=True)
    transport.transmit(H(SSSE))
    with pytest.raises(TraceMismatch, match=r"exchange 2: command after the end of the trace \(1 exchanges\)") as info:
        transport.transmit(H("0020000003" + PIN))
    assert PIN not in str(info.value)


def test_replay_reports_leftover_exchanges_but_close_never_raises() -> None:
    transport = ReplayTransport(sample_trace(), accept_any_pin=True)
    transport.transmit(H(SSSE))
    transport.close()  # cleanup must not mask the error that ended a test
    assert not transport.finished
    with pytest.raises(TraceMismatch, match=r"4 recorded exchange\(s\) left over") as info:
        transport.assert_finished()
    assert "next is exchange 2: 00200000" in str(info.value)
    with pytest.raises(TransportFailure):
        transport.transmit(H("00200000"))


def test_replay_reader_hands_out_a_fresh_replay_per_connect(tmp_path: Path) -> None:
    path = tmp_path / "t.apdu"
    sample_trace().save(path)
    reader = ReplayReader(path)
    assert isinstance(reader, Reader)
    assert reader.name == f"replay:{path}"
    assert reader.card_present()
    reader.wait_for_card(0)
    first = reader.connect()
    first.transmit(H(SSSE))
    second = reader.connect()
    assert second is not first
    assert reader.last is second
    assert second.transmit(H(SSSE)) == H(FCI)  # starts again from exchange 1
    assert second.atr == H("3B6D00000081544E43238697159900BF7C7A")
    with pytest.raises(TraceMismatch):
        second.assert_finished()


def test_replay_reader_refuses_a_file_that_is_not_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n", encoding="utf-8")
    with pytest.raises(TraceMismatch, match=re.escape(f"{path}:1")):
        ReplayReader(path)


# --- recording -------------------------------------------------------------------------------


def _run_session(transport: Transport) -> None:
    """The exchanges of sample_trace(), driven through the standard processor stack."""
    connection = standard_stack(transport)
    with transport.transaction():
        transceive(connection, Command.from_bytes(H(SSSE)))
        connection.send(Command(0x00, 0x20, 0x00, 0x00))
        connection.send(Command(0x00, 0x20, 0x00, 0x00, H(PIN)))
        transceive(connection, Command(0x00, 0xB2, 0x08, 0x00, le=0x14))


def test_recording_over_a_replay_reproduces_the_trace() -> None:
    original = sample_trace()
    recorder = RecordingTransport(
        ReplayTransport(original, name="replay:sample", accept_any_pin=True), source="unit test"
    )
    assert isinstance(recorder, Transport)
    _run_session(recorder)
    recorded = recorder.trace
    assert recorded.exchanges == original.exchanges
    assert recorded.header == {
        "atr": original.header["atr"],
        "protocol": "T=0",
        "reader": "replay:sample",
        "source": "unit test",
        "date": dt.date.today().isoformat(),
        "sscard": sscard.__version__,
    }
    # ... and the recording replays strictly in its turn
    again = ReplayTransport(Trace.parse(recorded.dump()), accept_any_pin=True)
    _run_session(again)
    again.assert_finished()


def test_recorded_trace_never_contains_the_pin(tmp_path: Path) -> None:
    change = "805E010007" + PIN + "FF" + NEW_PIN
    card = ReplayTransport(
        Trace(
            {"atr": "3B00"},
            [
                Exchange("0020000003******", H("63C2")),
                Exchange("0020000003******", H("9000")),
                Exchange("805E010007" + "**" * 7, H("9000")),
                Exchange("0082000A10" + "**" * 16, H("9000")),
            ],
        ),
        accept_any_pin=True,
    )
    recorder = RecordingTransport(card, source="pin test")
    recorder.transmit(H("0020000003" + NEW_PIN))
    recorder.transmit(H("0020000003" + PIN))
    recorder.transmit(H(change))
    recorder.transmit(H("0082000A10" + PIN * 5 + "AA"))
    path = tmp_path / "pin.apdu"
    recorder.save(path)
    text = path.read_text(encoding="utf-8")
    assert len(Trace.load(path).exchanges) == 4
    for secret in (PIN, NEW_PIN):
        assert secret not in text
        assert secret not in recorder.trace.dump()


def test_nothing_is_recorded_for_a_failed_transmit() -> None:
    recorder = RecordingTransport(ReplayTransport(Trace({}, [Exchange(SSSE, H(FCI))])), source="t")
    with pytest.raises(TraceMismatch):
        recorder.transmit(H("00A4020002EF05"))
    assert recorder.trace.exchanges == []
    recorder.transmit(H(SSSE))
    assert recorder.trace.exchanges == [Exchange(SSSE, H(FCI))]


class _CountingReplay(ReplayTransport):
    """A replay that notes when its transaction starts and ends and whether it was closed."""

    def __init__(self, trace: Trace) -> None:
        super().__init__(trace)
        self.events: list[str] = []

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        self.events.append("begin")
        try:
            yield
        finally:
            self.events.append("end")

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return self._held()

    def close(self) -> None:
        self.events.append("close")
        super().close()


def test_recording_delegates_transaction_and_close() -> None:
    inner = _CountingReplay(Trace({}, [Exchange(SSSE, H(FCI))]))
    recorder = RecordingTransport(inner, source="t")
    with recorder:
        with recorder.transaction():
            recorder.transmit(H(SSSE))
        assert inner.events == ["begin", "end"]
    assert inner.events == ["begin", "end", "close"]


def test_recording_trace_is_a_copy_and_the_source_stays_on_one_line() -> None:
    recorder = RecordingTransport(ReplayTransport(Trace({}, [Exchange(SSSE, H(FCI))])), source="line one\nline two")
    recorder.transmit(H(SSSE))
    trace = recorder.trace
    trace.header["operation"] = "read"
    trace.exchanges.clear()
    assert "operation" not in recorder.trace.header
    assert len(recorder.trace.exchanges) == 1
    assert recorder.trace.header["source"] == "line one line two"
    assert Trace.parse(recorder.trace.dump()).header["source"] == "line one line two"
