"""The APDU layer: command/response encoding (ISO 7816-3 §12.1, 7816-4 §5.1) and the processor stack.

Processors are driven through a :class:`ReplayTransport` built from a trace, the same strict replay
the facade tests use: every APDU the processors send is checked, and a leftover exchange fails.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sscard.apdu import processors
from sscard.apdu.command import Command, Response
from sscard.apdu.processors import (
    GetResponseProcessor,
    ResendWithLeProcessor,
    TracingProcessor,
    TransportConnection,
    standard_stack,
    transceive,
)
from sscard.apdu.sw import SW, ApduError, tries_left
from sscard.errors import TraceMismatch, TransportFailure
from sscard.transports.replay import ReplayTransport
from sscard.transports.trace import Exchange, Trace

H = bytes.fromhex
SSSE_AID = H("7378312E73682EC9E7BBE1B1A3D5CF")


def card(*pairs: tuple[str, str]) -> ReplayTransport:
    """A replayed card that expects exactly these (command, response) hex pairs, in order.

    Opened for tests (``accept_any_pin``): the processors are tested with PIN commands too.
    """
    exchanges = [Exchange(command.replace(" ", "").upper(), H(response)) for command, response in pairs]
    return ReplayTransport(Trace({"atr": "3B00", "protocol": "T=0"}, exchanges), accept_any_pin=True)


# --- Command encoding: the four ISO cases, short and extended ------------------------------------


@pytest.mark.parametrize(
    ("command", "encoded"),
    [
        # case 1
        (Command(0x00, 0xA4, 0x04, 0x00), "00A40400"),
        # case 2 short: Le 1..256, 256 sent as 00
        (Command(0x00, 0xB2, 0x08, 0x00, le=1), "00B2080001"),
        (Command(0x00, 0xB2, 0x08, 0x00, le=0x14), "00B2080014"),
        (Command(0x00, 0xB2, 0x08, 0x00, le=255), "00B20800FF"),
        (Command(0x00, 0xB2, 0x08, 0x00, le=256), "00B2080000"),
        # case 2 extended: Le 257 and the 65536 maximum (sent as 0000)
        (Command(0x00, 0xB0, 0x00, 0x00, le=257), "00B00000000101"),
        (Command(0x00, 0xB0, 0x00, 0x00, le=65535), "00B0000000FFFF"),
        (Command(0x00, 0xB0, 0x00, 0x00, le=65536), "00B00000000000"),
        (Command(0x00, 0xB0, 0x00, 0x00, le=256, extended=True), "00B00000000100"),
        # case 3 short and extended
        (Command(0x00, 0xA4, 0x02, 0x00, H("EF05")), "00A4020002EF05"),
        (Command(0x00, 0xA4, 0x04, 0x00, SSSE_AID), "00A404000F" + SSSE_AID.hex().upper()),
        (Command(0x00, 0xD6, 0x00, 0x00, b"\x11", extended=True), "00D6000000000111"),
        # case 4 short and extended
        (Command(0x00, 0x88, 0x00, 0x00, H("0102"), le=16), "00880000020102" + "10"),
        (Command(0x00, 0xA4, 0x04, 0x00, SSSE_AID, le=256), "00A404000F" + SSSE_AID.hex().upper() + "00"),
        (Command(0x00, 0x2A, 0x9E, 0x9A, b"\x01", le=257), "002A9E9A0000010101" + "01"),
        (Command(0x00, 0x2A, 0x9E, 0x9A, b"\x01", le=65536), "002A9E9A000001010000"),
    ],
)
def test_command_encoding(command: Command, encoded: str) -> None:
    assert command.to_bytes().hex().upper() == encoded
    assert bytes(command) == command.to_bytes()
    parsed = Command.from_bytes(H(encoded))
    assert (parsed.header, parsed.data, parsed.le) == (command.header, command.data, command.le)
    assert parsed.to_bytes() == command.to_bytes()


@pytest.mark.parametrize("lc", [1, 254, 255])
def test_short_lc_up_to_255(lc: int) -> None:
    command = Command(0x00, 0xD6, 0x00, 0x00, bytes(range(lc)))
    raw = command.to_bytes()
    assert not command.is_extended
    assert raw[4] == lc
    assert len(raw) == 5 + lc
    assert Command.from_bytes(raw) == Command(0x00, 0xD6, 0x00, 0x00, command.data, extended=False)


def test_lc_256_needs_extended_length() -> None:
    data = bytes(256)
    command = Command(0x00, 0xD6, 0x00, 0x00, data)
    raw = command.to_bytes()
    assert command.is_extended
    assert raw[4:7] == H("000100")
    assert raw[7:] == data
    assert Command.from_bytes(raw).data == data


def test_lc_256_and_le_256_together_are_extended() -> None:
    raw = Command(0x00, 0xD6, 0x00, 0x00, bytes(256), le=256).to_bytes()
    assert raw[4:7] == H("000100")
    assert raw[-2:] == H("0100")
    parsed = Command.from_bytes(raw)
    assert (len(parsed.data), parsed.le, parsed.is_extended) == (256, 256, True)


def test_largest_extended_command() -> None:
    data = bytes(65535)
    raw = Command(0x00, 0xD6, 0x00, 0x00, data, le=65536).to_bytes()
    assert raw[4:7] == H("00FFFF")
    assert raw[-2:] == H("0000")
    parsed = Command.from_bytes(raw)
    assert (len(parsed.data), parsed.le) == (65535, 65536)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cla": 0x100},
        {"ins": -1},
        {"p1": 0x100},
        {"le": 0},
        {"le": 65537},
        {"data": bytes(65536)},
    ],
)
def test_command_rejects_out_of_range_fields(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"cla": 0x00, "ins": 0xB0, "p1": 0x00, "p2": 0x00} | kwargs
    with pytest.raises(ValueError):
        Command(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "command",
    [
        Command(0x00, 0xD6, 0x00, 0x00, bytes(256), extended=False),
        Command(0x00, 0xB0, 0x00, 0x00, le=257, extended=False),
    ],
)
def test_forced_short_encoding_refuses_what_does_not_fit(command: Command) -> None:
    with pytest.raises(ValueError):
        command.to_bytes()


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "00A404",
        "00A4040005AABB",  # short Lc 5, 2 data bytes
        "00A4040002AABBCCDD",  # short Lc 2, 4 bytes follow
        "00B0000000FF",  # extended marker with a truncated length
        "00D6000000000011",  # extended Lc of zero
        "00D60000000003AABB",  # extended Lc 3, 2 data bytes
        "00D60000000001AABBCCDD",  # extended Lc 1, neither case 3 nor case 4
    ],
)
def test_malformed_command_apdus(raw: str) -> None:
    with pytest.raises(ValueError):
        Command.from_bytes(H(raw))


def test_with_le_keeps_everything_else() -> None:
    command = Command(0x80, 0x5E, 0x01, 0x00, b"\x01", le=4, extended=True)
    assert command.with_le(0x20) == Command(0x80, 0x5E, 0x01, 0x00, b"\x01", 0x20, True)


_lengths = st.one_of(st.integers(0, 8), st.integers(250, 260), st.integers(0, 600))
_le = st.one_of(st.none(), st.integers(1, 8), st.integers(250, 260), st.integers(65530, 65536), st.integers(1, 65536))


@st.composite
def commands(draw: st.DrawFn) -> Command:
    cla, ins, p1, p2 = draw(st.binary(min_size=4, max_size=4))
    data = draw(st.binary(min_size=0, max_size=0) | _lengths.flatmap(lambda n: st.binary(min_size=n, max_size=n)))
    le = draw(_le)
    fits_short = len(data) <= 255 and (le is None or le <= 256)
    extended = draw(st.sampled_from([None, True, False] if fits_short else [None, True]))
    return Command(cla, ins, p1, p2, data, le, extended)


@given(commands())
def test_command_round_trip(command: Command) -> None:
    raw = command.to_bytes()
    parsed = Command.from_bytes(raw)
    assert parsed.to_bytes() == raw
    assert (parsed.header, parsed.data, parsed.le) == (command.header, command.data, command.le)
    if command.data or command.le is not None:  # a case 1 APDU looks the same either way
        assert parsed.is_extended == command.is_extended


# --- Response --------------------------------------------------------------------------------


def test_response_parsing() -> None:
    response = Response.from_bytes(H("0304332E30309000"))
    assert response.data == H("0304332E3030")
    assert (response.sw, response.sw1, response.sw2, response.ok) == (0x9000, 0x90, 0x00, True)
    assert response.to_bytes() == H("0304332E30309000")
    only_sw = Response.from_bytes(H("6A82"))
    assert (only_sw.data, only_sw.sw, only_sw.ok) == (b"", SW.FILE_NOT_FOUND, False)


@pytest.mark.parametrize("raw", ["", "90"])
def test_response_without_status_word_is_a_transport_failure(raw: str) -> None:
    with pytest.raises(TransportFailure) as info:
        Response.from_bytes(H(raw))
    assert info.value.code == "TRANSPORT_ERROR"


def test_status_word_descriptions() -> None:
    assert SW.describe(0x6110) == "16 more bytes available"
    assert SW.describe(0x6C14) == "wrong Le, use 20"
    assert SW.describe(0x63C2) == "verification failed, 2 tries left"
    assert SW.describe(0x6A82) == "file not found"
    assert SW.describe(0x1234) == "unknown status"
    assert tries_left(0x63C0) == 0
    assert tries_left(0x6300) is None
    assert str(ApduError(0x6982)) == "SW 6982 (security status not satisfied)"


# --- Processors ------------------------------------------------------------------------------


def test_transport_connection_encodes_and_decodes() -> None:
    transport = card(("00A4020002EF05", "9000"))
    response = TransportConnection(transport).send(Command(0x00, 0xA4, 0x02, 0x00, H("EF05")))
    assert response == Response(b"", 0x9000)
    transport.assert_finished()


def test_get_response_chains_across_several_61xx() -> None:
    transport = card(
        ("00B2080014", "0812 6104"),
        ("00C0000004", "31313131 6102"),
        ("00C0000002", "3131 9000"),
    )
    response = GetResponseProcessor(TransportConnection(transport)).send(Command(0x00, 0xB2, 0x08, 0x00, le=0x14))
    assert response == Response(H("081231313131 3131"), 0x9000)
    transport.assert_finished()


def test_get_response_61_00_asks_for_256_bytes_and_keeps_the_final_sw() -> None:
    transport = card(("00A404000F" + SSSE_AID.hex(), "6100"), ("00C0000000", "AA" * 256 + "6A82"))
    response = GetResponseProcessor(TransportConnection(transport)).send(Command(0x00, 0xA4, 0x04, 0x00, SSSE_AID))
    assert response == Response(b"\xaa" * 256, 0x6A82)
    transport.assert_finished()


def test_get_response_uses_the_configured_class() -> None:
    transport = card(("80CA9F7F00", "6102"), ("80C0000002", "0102 9000"))
    response = GetResponseProcessor(TransportConnection(transport), cla=0x80).send(
        Command(0x80, 0xCA, 0x9F, 0x7F, le=256)
    )
    assert response.data == H("0102")


def test_resend_with_right_le_on_6cxx() -> None:
    transport = card(("00B2080020", "6C14"), ("00B2080014", "0812" + "31" * 18 + "9000"))
    response = ResendWithLeProcessor(TransportConnection(transport)).send(Command(0x00, 0xB2, 0x08, 0x00, le=0x20))
    assert response.ok
    assert response.data[:2] == H("0812")
    transport.assert_finished()


def test_resend_6c00_means_le_256_and_happens_once() -> None:
    transport = card(("00B0000010", "6C00"), ("00B0000000", "6C10"))
    response = ResendWithLeProcessor(TransportConnection(transport)).send(Command(0x00, 0xB0, 0x00, 0x00, le=0x10))
    assert response.sw == 0x6C10  # a card that keeps changing its mind gets no third try
    transport.assert_finished()


def test_get_response_gives_up_on_endless_empty_61xx() -> None:
    """A broken card answering 61xx with no data forever must not hang a kiosk."""
    rounds = processors.MAX_GET_RESPONSE_ROUNDS
    transport = card(("00B0000000", "6110"), *[("00C0000010", "6110")] * rounds)
    with pytest.raises(TransportFailure):
        GetResponseProcessor(TransportConnection(transport)).send(Command(0x00, 0xB0, 0x00, 0x00, le=256))
    assert transport.finished  # it stopped exactly at the cap, not one exchange later


def test_get_response_gives_up_past_the_longest_possible_response() -> None:
    chunks = processors.MAX_RESPONSE_BYTES // 255 + 1
    transport = card(("00B0000000", "AA" * 255 + "61FF"), *[("00C00000FF", "AA" * 255 + "61FF")] * chunks)
    with pytest.raises(TransportFailure):
        GetResponseProcessor(TransportConnection(transport)).send(Command(0x00, 0xB0, 0x00, 0x00, le=256))
    assert transport.position <= chunks + 1


def test_tracing_sink_receives_redacted_commands() -> None:
    seen: list[tuple[str, str, float]] = []
    transport = card(("0020000003******", "63C2"), ("00B2080014", "6102"), ("00C0000002", "0812 9000"))
    connection = TracingProcessor(TransportConnection(transport), lambda c, r, t: seen.append((c, r, t)))
    connection.send(Command(0x00, 0x20, 0x00, 0x00, H("123456")))
    GetResponseProcessor(connection).send(Command(0x00, 0xB2, 0x08, 0x00, le=0x14))
    assert [(c, r) for c, r, _ in seen] == [
        ("0020000003******", "63C2"),
        ("00B2080014", "6102"),
        ("00C0000002", "08129000"),
    ]
    assert all(elapsed >= 0 for _, _, elapsed in seen)
    assert "123456" not in repr(seen)


def test_tracing_logs_redacted_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    transport = card(("0020000003******", "9000"))
    with caplog.at_level("DEBUG", logger="sscard.apdu"):
        TracingProcessor(TransportConnection(transport)).send(Command(0x00, 0x20, 0x00, 0x00, H("123456")))
    assert "0020000003******" in caplog.text
    assert "123456" not in caplog.text


def test_standard_stack_order() -> None:
    """GET RESPONSE outermost, resend next, tracing nearest the wire (processors.py docstring)."""
    stack = standard_stack(card())
    assert isinstance(stack, GetResponseProcessor)
    resend = stack.inner
    assert isinstance(resend, ResendWithLeProcessor)
    tracing = resend.inner
    assert isinstance(tracing, TracingProcessor)
    assert isinstance(tracing.inner, TransportConnection)


def test_standard_stack_traces_every_wire_exchange_of_a_resend_then_chain() -> None:
    """6Cxx, resend, 61xx, GET RESPONSE: the sink sees all four, the caller one joined response."""
    seen: list[str] = []
    transport = card(
        ("00B2090020", "6C1E"),
        ("00B209001E", "091C 6110"),
        ("00C0000010", "D5C5C8FD" + "00" * 12 + "9000"),
    )
    stack = standard_stack(transport, lambda command, response, _elapsed: seen.append(command))
    data = transceive(stack, Command(0x00, 0xB2, 0x09, 0x00, le=0x20))
    assert data == H("091CD5C5C8FD") + bytes(12)
    assert seen == ["00B2090020", "00B209001E", "00C0000010"]
    transport.assert_finished()


def test_transceive_raises_apdu_error_with_sw_and_data() -> None:
    stack = standard_stack(card(("00A4040000", "6A82")))
    with pytest.raises(ApduError) as info:
        transceive(stack, Command(0x00, 0xA4, 0x04, 0x00, le=256))
    assert info.value.sw == SW.FILE_NOT_FOUND


def test_processors_send_exactly_what_the_trace_expects() -> None:
    """The replayed card is strict: one wrong byte fails the test, with the exchange number."""
    stack = standard_stack(card(("00B2080014", "9000")))
    with pytest.raises(TraceMismatch, match="exchange 1"):
        stack.send(Command(0x00, 0xB2, 0x08, 0x00, le=0x15))
