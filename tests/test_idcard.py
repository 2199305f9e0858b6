"""Resident ID-card readers (docs/card-reference.md §9), over real pseudo-terminals and pyserial.

Frames in these tests are built by the helpers below, which compute length and checksum
themselves (docs/design.md §8): each test reads as protocol, and neither sscard.idcard's builder nor
the simulator's is trusted to check itself.  The simulated reader sits on the master end of a pty;
the middleware opens the slave end through :class:`~sscard.transports.serial.SerialPort`, the same
pyserial path a USB reader takes.  Nothing is mocked.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sscard.errors import (
    BadRecord,
    DeviceNotFound,
    DeviceRemoved,
    DeviceTimeout,
    FrameError,
    IdCardError,
    IdCardNoCard,
    IdCardReadFailed,
    IdCardSelectFailed,
    SscardError,
)
from sscard.idcard import (
    CMD_FIND,
    CMD_READ,
    CMD_SAM_STATUS,
    CMD_SELECT,
    LONG_TERM,
    IdCardReader,
    IdCardRecord,
    build_request,
    decode_text,
    parse_read_data,
    parse_response,
)
from sscard.sim.serial_idcard import PHOTO_MARKER, SimulatedIdCardReader, list_idcards, load_idcard
from sscard.transports.serial import SerialPort

# --- frame builders: length and checksum computed here --------------------------------------

SYNC = bytes.fromhex("AAAAAA9669")
FIELDS = (  # docs/card-reference.md §9: (field, width in bytes), UCS-2 little-endian
    ("name", 30),
    ("gender", 2),
    ("nation", 4),
    ("birth_date", 16),
    ("address", 70),
    ("id_number", 36),
    ("issuer", 30),
    ("valid_from", 16),
    ("valid_to", 16),
    ("reserved", 36),
)


def xor(data: bytes) -> int:
    out = 0
    for byte in data:
        out ^= byte
    return out


def frame(*parts: bytes) -> bytes:
    """SYNC ‖ length of what follows (2, big-endian) ‖ parts ‖ XOR of length..parts."""
    body = b"".join(parts)
    length = (len(body) + 1).to_bytes(2, "big")
    return SYNC + length + body + bytes([xor(length + body)])


def request(cmd: str) -> bytes:
    return frame(bytes.fromhex(cmd))


def answer(status: int, data: bytes = b"") -> bytes:
    return frame(bytes([0x00, 0x00, status]), data)


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def ucs2(value: str, width: int, pad: str = " ") -> bytes:
    raw = value.encode("utf-16-le")
    return raw + pad.encode("utf-16-le") * ((width - len(raw)) // 2)


def text_block(pad: str = " ", flag: str = "", **values: str) -> bytes:
    """A 256-byte text block of 张三's card, with ``values`` replacing fields and ``flag`` at byte 248."""
    fields = {
        "name": "张三",
        "gender": "1",
        "nation": "01",
        "birth_date": "19850307",
        "address": "北京市东城区景山前街4号",
        "id_number": "110101198503071235",
        "issuer": "北京市公安局东城分局",
        "valid_from": "20150618",
        "valid_to": "20350618",
        "reserved": "",
        **values,
    }
    block = b"".join(ucs2(fields[key], width, pad) for key, width in FIELDS)
    if flag:
        block = block[:248] + flag.encode("utf-16-le") + block[250:]
    return block


PHOTO = bytes(range(256)) * 4  # 1024 bytes


def read_answer(text: bytes, photo: bytes = PHOTO) -> bytes:
    """90 ‖ text length ‖ photo length ‖ text ‖ photo."""
    return answer(0x90, u16(len(text)) + u16(len(photo)) + text + photo)


TODAY = dt.date(2025, 1, 1)

# --- docs/card-reference.md §9, byte for byte ------------------------------------------------------------

REFERENCE_REQUESTS = [
    (CMD_FIND, "2001", "AAAAAA96690003200122"),
    (CMD_SELECT, "2002", "AAAAAA96690003200221"),
    (CMD_READ, "3001", "AAAAAA96690003300132"),
    (CMD_SAM_STATUS, "11FF", "AAAAAA9669000311FFED"),
]
REFERENCE_ANSWERS = [  # (literal, status byte, data)
    ("AAAAAA9669000800009F0000000097", 0x9F, bytes(4)),  # find OK
    ("AAAAAA9669000400008084", 0x80, b""),  # find failed
    ("AAAAAA9669000C00009000000000000000009C", 0x90, bytes(8)),  # select OK
    ("AAAAAA9669000400008185", 0x81, b""),  # select failed
    ("AAAAAA9669000400009094", 0x90, b""),  # SAM status OK
]


@pytest.mark.parametrize(("cmd", "cmd_hex", "literal"), REFERENCE_REQUESTS)
def test_requests_are_the_reference_frames(cmd: bytes, cmd_hex: str, literal: str) -> None:
    assert build_request(cmd) == bytes.fromhex(literal)
    assert request(cmd_hex) == bytes.fromhex(literal)  # the test's own builder agrees


@pytest.mark.parametrize(("literal", "status", "data"), REFERENCE_ANSWERS)
def test_reference_answers_parse(literal: str, status: int, data: bytes) -> None:
    response = parse_response(bytes.fromhex(literal))
    assert response.sw == bytes([0, 0, status])
    assert response.status == status
    assert response.data == data
    assert answer(status, data) == bytes.fromhex(literal)


def test_read_answer_is_1295_bytes_with_the_reference_header() -> None:
    raw = read_answer(text_block())
    assert len(raw) == 1295
    # SYNC, length 0x0508 (1288 bytes follow), status 00 00 90, text length 256, photo length 1024
    assert raw[:14] == bytes.fromhex("AAAAAA9669 0508 000090 0100 0400")
    response = parse_response(raw)
    assert response.ok
    assert len(response.data) == 4 + 256 + 1024


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (answer(0x90)[:-1] + b"\x00", "checksum 00, computed 94"),
        (answer(0x90) + b"\x00", "length field says 4 bytes follow, frame has 5"),
        (SYNC + b"\x00\x02\x00\x00", "implausible length 2"),
        (SYNC + b"\xff\xff" + bytes(8), "implausible length 65535"),
        (b"\xaa\xaa\x96\x69\x00\x04\x00\x00\x90\x94", "no preamble AA AA AA 96 69"),
    ],
)
def test_bad_frames_are_frame_errors(raw: bytes, problem: str) -> None:
    with pytest.raises(FrameError) as caught:
        parse_response(raw)
    assert caught.value.fields["problem"] == problem


# --- the simulated reader on a pty ------------------------------------------------------------


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatedIdCardReader]:
    with SimulatedIdCardReader(load_idcard("zhangsan"), link=tmp_path / "idcard") as reader:
        yield reader


@pytest.fixture
def port(sim: SimulatedIdCardReader) -> Iterator[SerialPort]:
    with SerialPort(sim.path) as serial_port:
        yield serial_port


@pytest.fixture
def reader(port: SerialPort) -> IdCardReader:
    return IdCardReader(port, timeout=2.0)


ZHANGSAN_JSON = {
    "name": "张三",
    "gender": "男",
    "nation": "汉族",
    "birth_date": "1985-03-07",
    "address": "北京市东城区景山前街4号",
    "id_number": "110101198503071235",
    "issuer": "北京市公安局东城分局",
    "valid_from": "2015-06-18",
    "valid_to": "2035-06-18",
    "warnings": [],
}


def test_read_card_over_a_pty(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    record = reader.read_card(today=TODAY)
    assert sim.requests == [request("2001"), request("2002"), request("3001")]
    assert record.to_json() == ZHANGSAN_JSON
    assert (record.gender_code, record.gender, record.nation_code, record.nation) == ("1", "男", "01", "汉族")
    assert record.birth_date == dt.date(1985, 3, 7)
    assert record.valid_to == dt.date(2035, 6, 18)
    assert len(record.photo_wlt) == 1024
    assert record.photo_wlt.startswith(PHOTO_MARKER)


def test_the_photo_stays_out_of_repr_and_json(reader: IdCardReader) -> None:
    record = reader.read_card(today=TODAY)
    assert "photo" not in repr(record)
    assert set(record.to_json()) == set(ZHANGSAN_JSON)


def test_steps_one_at_a_time(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    reader.find()
    reader.select()
    record = reader.read(today=TODAY)
    assert record.name == "张三"
    assert sim.requests == [request("2001"), request("2002"), request("3001")]


def test_sam_status(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    assert reader.sam_status() is None
    assert sim.requests == [request("11FF")]
    sim.sam_status = 0x60  # SAM self-test failed
    with pytest.raises(IdCardError) as caught:
        reader.sam_status()
    assert caught.value.to_dict()["status"] == "60"


def _no_card(sim: SimulatedIdCardReader) -> None:
    sim.take_card()


def _select_fails(sim: SimulatedIdCardReader) -> None:
    sim.select_fails = True


def _read_fails(sim: SimulatedIdCardReader) -> None:
    sim.read_fails = True


@pytest.mark.parametrize(
    ("fault", "error", "code", "exchanges"),
    [
        (_no_card, IdCardNoCard, "ID_CARD_NO_CARD", [request("2001")]),
        (_select_fails, IdCardSelectFailed, "ID_CARD_SELECT_FAILED", [request("2001"), request("2002")]),
        (_read_fails, IdCardReadFailed, "ID_CARD_READ_FAILED", [request("2001"), request("2002"), request("3001")]),
    ],
)
def test_statuses_are_typed_errors(
    sim: SimulatedIdCardReader,
    reader: IdCardReader,
    fault: object,
    error: type[SscardError],
    code: str,
    exchanges: list[bytes],
) -> None:
    assert callable(fault)
    fault(sim)
    with pytest.raises(error) as caught:
        reader.read_card()
    assert caught.value.code == code
    assert caught.value.retriable
    assert sim.requests == exchanges
    # The resident puts the card down properly: the same reader goes on working.
    sim.select_fails = sim.read_fails = False
    sim.place(load_idcard("zhangsan"))
    assert reader.read_card(today=TODAY).name == "张三"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (bytes.fromhex("AAAAAA9669000400008084"), IdCardNoCard),  # docs/card-reference.md §9, find failed
        (answer(0x80), IdCardNoCard),
        (answer(0x81), IdCardSelectFailed),
        (answer(0x41), IdCardReadFailed),
        (answer(0x33), IdCardError),
    ],
)
def test_status_mapping(sim: SimulatedIdCardReader, reader: IdCardReader, raw: bytes, error: type[Exception]) -> None:
    sim.reply_with(raw)
    with pytest.raises(error):
        reader.find()


def test_other_statuses_keep_their_value(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    sim.reply_with(answer(0x33))
    with pytest.raises(IdCardError) as caught:
        reader.select()
    assert caught.value.to_dict()["status"] == "33"
    assert caught.value.code == "ID_CARD_ERROR"


# --- stray bytes, bad checksums, silence ------------------------------------------------------


@pytest.mark.parametrize(
    "stray",
    [
        b"\x00",
        b"\xff\x13\x11noise\r\n",
        b"\xaa\xaa\xaa\x96",  # a preamble cut short, then the real one
        b"\xaa\xaa\xaa\xaa\xaa\x96",  # almost a preamble, shifted
        SYNC + b"\x00\x04",  # a header cut short: its "frame" fails the checksum, the real one is inside
        SYNC + b"\xff\xff",  # a header with an implausible length
        bytes(1000),
    ],
    ids=["one-byte", "noise", "cut-preamble", "shifted-preamble", "cut-header", "implausible-length", "1000-bytes"],
)
def test_stray_bytes_before_an_answer_are_skipped(
    sim: SimulatedIdCardReader, reader: IdCardReader, stray: bytes
) -> None:
    sim.send_stray(stray, times=3)  # before find, select and read answers
    assert reader.read_card(today=TODAY).to_json() == ZHANGSAN_JSON


def test_stray_bytes_beyond_the_budget_are_a_frame_error(sim: SimulatedIdCardReader, port: SerialPort) -> None:
    reader = IdCardReader(port, timeout=2.0, resync_budget=16)
    sim.send_stray(b"\x55" * 64)
    with pytest.raises(FrameError) as caught:
        reader.find()
    assert caught.value.fields["problem"] == "no frame start within 16 bytes"
    # The rest of that answer is dropped before the next command.
    assert reader.read_card(today=TODAY).name == "张三"


def test_leftovers_of_an_earlier_exchange_are_dropped(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    sim.reply_with(answer(0x9F, bytes(4)) + answer(0x90, bytes(8)))  # one command, two answers
    reader.find()
    sim.requests.clear()
    assert reader.read_card(today=TODAY).name == "张三"
    assert sim.requests == [request("2001"), request("2002"), request("3001")]


def test_bad_checksum_is_a_frame_error_and_the_next_read_works(
    sim: SimulatedIdCardReader, reader: IdCardReader
) -> None:
    reader.find()
    reader.select()
    sim.corrupt_checksum()  # the 1295-byte read answer
    with pytest.raises(FrameError) as caught:
        reader.read()
    assert caught.value.code == "FRAME_ERROR"
    assert caught.value.fields["problem"].startswith("checksum ")
    assert reader.read_card(today=TODAY).to_json() == ZHANGSAN_JSON


def test_silent_device_times_out_within_the_timeout(sim: SimulatedIdCardReader, port: SerialPort) -> None:
    reader = IdCardReader(port, timeout=0.3)
    sim.silent = True
    started = time.monotonic()
    with pytest.raises(DeviceTimeout) as caught:
        reader.find()
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2.0
    assert caught.value.to_dict()["device"] == sim.path
    assert sim.requests == [request("2001")]  # it arrived; nothing came back
    sim.silent = False
    assert reader.read_card(today=TODAY).name == "张三"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (answer(0x9F, bytes(4))[:9], "truncated frame: 9 of 15 bytes within 0.3 s"),
        (b"\x13\x37" * 10, "20 bytes without a frame start within 0.3 s"),
        (SYNC + b"\xff", "truncated frame: 6 bytes, no length within 0.3 s"),
        (SYNC + b"\x7f\xff", "implausible length 32767"),
        (SYNC + b"\x00\x02" + answer(0x9F, bytes(4))[:9], "truncated frame: 9 of 15 bytes within 0.3 s"),
    ],
    ids=["cut-short", "noise", "header-cut-short", "implausible-length", "false-start-then-cut-short"],
)
def test_answers_that_never_become_a_frame(
    sim: SimulatedIdCardReader, port: SerialPort, raw: bytes, problem: str
) -> None:
    reader = IdCardReader(port, timeout=0.3)
    sim.reply_with(raw)
    with pytest.raises(FrameError) as caught:
        reader.find()
    assert caught.value.fields["problem"] == problem
    assert reader.read_card(today=TODAY).name == "张三"


# --- the reader unplugged and plugged back ----------------------------------------------------


def test_unplugged_mid_read_is_device_removed_and_plugging_back_resumes(
    sim: SimulatedIdCardReader, port: SerialPort, reader: IdCardReader
) -> None:
    sim.unplug_on = CMD_READ
    with pytest.raises(DeviceRemoved) as caught:
        reader.read_card()
    assert caught.value.code == "DEVICE_REMOVED"
    assert caught.value.to_dict()["device"] == sim.path
    assert sim.requests == [request("2001"), request("2002"), request("3001")]
    assert not port.connected
    assert not Path(sim.path).exists()  # the udev-style link went with the device

    sim.unplug_on = None
    sim.plug()
    port.reopen(timeout=5)
    assert port.connected
    assert reader.read_card(today=TODAY).to_json() == ZHANGSAN_JSON


def test_unplugged_between_reads(sim: SimulatedIdCardReader, port: SerialPort, reader: IdCardReader) -> None:
    assert reader.read_card(today=TODAY).name == "张三"
    sim.unplug()
    with pytest.raises(DeviceRemoved):
        reader.find()
    with pytest.raises(DeviceNotFound):
        port.reopen(timeout=0.2)  # still out
    sim.plug()
    port.reopen(timeout=5)
    assert reader.read_card(today=TODAY).name == "张三"


# --- decoding (docs/card-reference.md §9 text block) -------------------------------------------------------


def test_long_term_validity_and_a_full_width_address(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    sim.place(load_idcard("lisi_long_term"))
    record = reader.read_card(today=TODAY)
    assert record.valid_to == LONG_TERM
    assert record.to_json()["valid_to"] == "long-term"
    assert record.address == "广东省深圳市福田区福华一路1号福田中心区市民中心大厦A区123456室"
    assert len(record.address) == 35  # the whole field: no padding to trim
    assert (record.gender, record.nation) == ("女", "回族")
    assert not record.expired(dt.date(2099, 1, 1))
    assert record.warnings == ()


def test_wrong_check_character_is_a_warning(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    sim.place(load_idcard("wangwu_bad_check"))
    record = reader.read_card(today=TODAY)
    assert record.id_number == "310115199001010011"
    assert [w.code for w in record.warnings] == ["ID_NUMBER_CHECK"]
    assert record.to_json()["warnings"] == [
        {
            "code": "ID_NUMBER_CHECK",
            "message": "The ID number fails its check character (GB 11643).",
            "message_zh": "公民身份号码校验码不正确。",
        }
    ]


@pytest.mark.parametrize("pad", [" ", "\x00"])
def test_padding_is_trimmed(pad: str) -> None:
    record = decode_text(text_block(pad=pad), today=TODAY)
    assert record.to_json() == ZHANGSAN_JSON


def test_inner_spaces_stay() -> None:
    assert decode_text(text_block(name="ABDUL RAHMAN"), today=TODAY).name == "ABDUL RAHMAN"


@pytest.mark.parametrize(
    ("values", "codes"),
    [
        ({"birth_date": "19850308"}, ["BIRTH_DATE_MISMATCH"]),
        ({"gender": "2"}, ["GENDER_MISMATCH"]),
        ({"id_number": "110101198503071234"}, ["ID_NUMBER_CHECK"]),
        ({"id_number": "11010119850307123"}, ["ID_NUMBER_FORMAT"]),
        ({"nation": "99"}, ["UNKNOWN_NATION_CODE"]),
        ({"gender": "7"}, ["UNKNOWN_GENDER_CODE"]),
        ({"valid_to": "20241231"}, ["ID_CARD_EXPIRED"]),
        ({"valid_to": "20250101"}, []),  # valid through its last day
        ({"valid_to": "长期"}, []),
    ],
)
def test_cross_checks_are_warnings(values: dict[str, str], codes: list[str]) -> None:
    record = decode_text(text_block(**values), today=TODAY)
    assert [w.code for w in record.warnings] == codes
    assert all(w.message and w.message_zh for w in record.warnings)


def test_unknown_codes_have_no_label() -> None:
    record = decode_text(text_block(nation="99"), today=TODAY)
    assert (record.nation_code, record.nation, record.to_json()["nation"]) == ("99", None, None)


@pytest.mark.parametrize(
    ("flag", "kind"),
    [
        ("I", "foreigner's permanent residence card (2017 layout)"),
        ("Y", "foreigner's permanent residence card (2023 layout)"),
        ("J", "Hong Kong/Macau/Taiwan residence permit"),
    ],
)
def test_other_layouts_are_refused_not_misdecoded(flag: str, kind: str) -> None:
    with pytest.raises(IdCardError) as caught:
        decode_text(text_block(flag=flag))
    assert caught.value.code == "ID_CARD_ERROR"
    assert not caught.value.retriable
    assert kind in caught.value.message


def test_other_layouts_are_refused_over_the_wire(sim: SimulatedIdCardReader, reader: IdCardReader) -> None:
    reader.find()
    reader.select()
    sim.reply_with(read_answer(text_block(flag="I")))
    with pytest.raises(IdCardError):
        reader.read()


@pytest.mark.parametrize(("key", "value"), [("birth_date", "19851307"), ("valid_from", "2015061"), ("valid_to", "")])
def test_bad_dates_are_bad_records(key: str, value: str) -> None:
    with pytest.raises(BadRecord) as caught:
        decode_text(text_block(**{key: value}))
    assert caught.value.element == key


def test_read_data_lengths_must_add_up() -> None:
    data = u16(256) + u16(1024) + text_block() + PHOTO
    record = parse_read_data(data, today=TODAY)
    assert isinstance(record, IdCardRecord)
    assert record.photo_wlt == PHOTO
    with pytest.raises(FrameError):
        parse_read_data(data[:-1])
    with pytest.raises(FrameError):
        parse_read_data(u16(200) + u16(0) + text_block()[:200])  # consistent, but not the 256-byte layout


def test_bundled_idcard_personas_load() -> None:
    assert list_idcards() == ["lisi_long_term", "wangwu_bad_check", "zhangsan"]
    for name in list_idcards():
        persona = load_idcard(name)
        assert len(persona.text_block()) == 256
        assert len(persona.photo) == 1024
