"""The simulated card, in process: personas, file system, every status word, the PIN counter.

Assertions are exact bytes.  The check-character algorithms and the TLV walk are written again
here from docs/card-reference.md §3, independently of both the simulator and ``sscard.ssc``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from sscard.errors import CardRemoved, ConfigError, NoCard, Timeout, TransportFailure
from sscard.sim import CardGone, SimulatedCard, list_personas, load_persona
from sscard.sim.encoding import record_files, split_name
from sscard.transports.base import Reader, Transport
from sscard.transports.sim import SimReader, SimTransport

SELECT_SSSE = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF"
SSSE_FCI = "6F19840F7378312E73682EC9E7BBE1B1A3D5CFA5069F0C03860101"
REQUIRED = {
    "typical",
    "long_name",
    "rare_char",
    "letter_card_number",
    "expired",
    "pin_blocked",
    "not_ssc",
    "v1_t0",
    "no_sfi",
    "v3",
}
#: Declared value lengths (docs/card-reference.md §3); fixed-length values are sent at full length.
DECLARED_LENGTH = {
    0x01: 16,
    0x02: 1,
    0x03: 4,
    0x04: 12,
    0x05: 4,
    0x06: 4,
    0x07: 9,
    0x08: 18,
    0x09: 30,
    0x4E: 20,
    0x0A: 1,
    0x0B: 1,
    0x0C: 3,
    0x0D: 4,
}
#: Typical's records as bytes on the wire (tag, length, value).
TYPICAL_07 = "0709" + b"102307185".hex().upper()
TYPICAL_08 = "0812" + b"110101198503071235".hex().upper()
TYPICAL_09 = "091E" + "D5C5C8FD" + "00" * 26


def card(persona: str = "typical", **kwargs: object) -> SimulatedCard:
    return SimulatedCard(load_persona(persona), **kwargs)  # type: ignore[arg-type]


def tx(target: SimulatedCard, apdu: str) -> str:
    """Send hex, get hex (upper case, spaces in the argument allowed for readability)."""
    return target.process(bytes.fromhex(apdu.replace(" ", ""))).hex().upper()


def selected(persona: str = "typical", **kwargs: object) -> SimulatedCard:
    target = card(persona, **kwargs)
    assert tx(target, SELECT_SSSE).endswith("9000")
    return target


# --- independent check-character algorithms (docs/card-reference.md §3) ------------------------------------


def card_number_ok(number: str) -> bool:
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    values = [int(c) if c.isdigit() else ord(c) - ord("A") + 10 for c in number[:8]]
    r = 11 - sum(w * v for w, v in zip(weights, values, strict=True)) % 11
    return number[8] == {10: "X", 11: "0"}.get(r, str(r))


def ssn_ok(ssn: str) -> bool:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(w * int(c) for w, c in zip(weights, ssn[:17], strict=True))
    return ssn[17] == "10X98765432"[total % 11]


def test_check_algorithms_against_the_reference_sample() -> None:
    assert card_number_ok("X00000019") and ssn_ok("111111198101011110")
    assert not card_number_ok("X00000018") and not ssn_ok("111111198101011111")


# --- personas ---------------------------------------------------------------------------------


def test_required_personas_are_bundled() -> None:
    assert set(list_personas()) >= REQUIRED


@pytest.mark.parametrize("name", list_personas())
def test_persona_loads_and_encodes_to_declared_lengths(name: str) -> None:
    persona = load_persona(name)
    assert persona.name == name and persona.description
    if not persona.ssc:
        return
    for fid, records in record_files(persona).items():
        for record in records:
            tag, length, value = record[0], record[1], record[2:]
            assert length == len(value), f"{fid:04X}/{tag:02X}"
            if tag not in persona.raw:
                assert length == DECLARED_LENGTH[tag], f"{fid:04X}/{tag:02X}"


@pytest.mark.parametrize("name", [n for n in list_personas() if n != "bad_check"])
def test_persona_check_characters_pass(name: str) -> None:
    persona = load_persona(name)
    if persona.ef05 is None or persona.ef06 is None:
        return
    assert card_number_ok(persona.ef05.card_number)
    assert ssn_ok(persona.ef06.ssn)
    # The resident ID number carries the birth date and, in its 17th digit, the gender's parity.
    assert persona.ef06.birth_date is not None
    assert persona.ef06.ssn[6:14] == persona.ef06.birth_date.strftime("%Y%m%d")
    assert persona.ef06.gender == ("1" if int(persona.ef06.ssn[16]) % 2 else "2")
    code = persona.ef05.identification_code
    assert code[3:8] == bytes.fromhex("D156000005")


def test_personas_keep_their_promises() -> None:
    today = dt.date.today()
    typical = load_persona("typical")
    assert typical.spec_version == "2.00" and typical.ef05 and typical.ef05.expiry_date
    assert typical.ef05.expiry_date.year >= 2035 and typical.ef06 and typical.ef06.name == "张三"
    assert typical.ef05.identification_code[:3].hex() == "110100"
    expired = load_persona("expired")
    assert expired.ef05 and expired.ef05.expiry_date and expired.ef05.expiry_date < today
    assert load_persona("pin_blocked").pin.tries_left == 0
    assert load_persona("letter_card_number").ef05.card_number[:8].isdigit() is False  # type: ignore[union-attr]
    assert load_persona("v1_t0").spec_version == "1.00" and load_persona("v3").spec_version == "3.00"
    assert not load_persona("not_ssc").ssc


def test_rare_char_name_needs_gb18030() -> None:
    persona = load_persona("rare_char")
    assert persona.ef06 is not None
    with pytest.raises(UnicodeEncodeError):
        persona.ef06.name.encode("gbk")
    record = record_files(persona)[0xEF06][1]
    assert record.hex().upper() == "091E" + "C1F5FE9F" + "20" * 26  # 刘䶮, padded with spaces
    assert record[2:].rstrip(b" ").decode("gb18030") == "刘䶮"


def test_long_name_is_split_on_a_character_boundary() -> None:
    persona = load_persona("long_name")
    assert persona.ef06 is not None
    records = {r[0]: r[2:] for r in record_files(persona)[0xEF06]}
    head = records[0x09].rstrip(b"\x00").decode("gb18030")
    tail = records[0x4E].rstrip(b"\x00").decode("gb18030")
    assert len(records[0x09]) == 30 and len(records[0x4E]) == 20
    assert head + tail == persona.ef06.name == "穆罕默德·阿不都热西提·艾合买提江"
    assert tail == "提江"


def test_split_name_rules() -> None:
    assert split_name("张三", "1.00") == ("张三", "")
    assert split_name("一" * 14 + "𠮷", "2.00") == ("一" * 14, "𠮷")  # a 4-byte character is not cut
    with pytest.raises(ValueError, match="no extension"):
        split_name("一" * 16, "1.00")
    with pytest.raises(ValueError, match="does not fit"):
        split_name("一" * 26, "2.00")


def test_pin_is_not_in_repr() -> None:
    assert "123456" not in repr(load_persona("typical"))


def test_unknown_persona_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_persona("nobody")
    assert "typical" in info.value.message and "long_name" in info.value.message


def test_persona_from_a_path(tmp_path: Path) -> None:
    source = load_persona("typical").source
    assert source is None
    text = Path(__file__).parents[1].joinpath("src/sscard/sim/personas/typical.toml").read_text(encoding="utf-8")
    path = tmp_path / "mine.toml"
    path.write_text(text.replace('value = "123456"', 'value = "24680"'), encoding="utf-8")
    persona = load_persona(str(path))
    assert persona.name == "mine" and persona.pin.value == "24680" and persona.source == path


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (('protocol = "T=0"', 'protocol = "T=1"'), "T=1 is not offered"),
        (('card_number = "102307185"', 'card_number = "1023071"'), "card_number"),
        (('name = "张三"', 'name = "' + "一" * 26 + '"'), "name does not fit"),
        (('birth_date = "1985-03-07"', 'birth_date = "1985-13-07"'), "birth_date"),
        (("[ef06]", '[raw]\n"0D" = "XYZ"\n[ef06]'), "raw"),
        (("tries_left = 3", "tries_left = 4"), "tries_left"),
    ],
)
def test_bad_persona_files_are_config_errors(tmp_path: Path, change: tuple[str, str], complaint: str) -> None:
    text = Path(__file__).parents[1].joinpath("src/sscard/sim/personas/typical.toml").read_text(encoding="utf-8")
    assert change[0] in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(change[0], change[1]), encoding="utf-8")
    with pytest.raises(ConfigError, match=complaint):
        load_persona(str(path))


def test_a_bad_pin_in_a_persona_is_not_quoted(tmp_path: Path) -> None:
    text = Path(__file__).parents[1].joinpath("src/sscard/sim/personas/typical.toml").read_text(encoding="utf-8")
    path = tmp_path / "bad.toml"
    path.write_text(text.replace('value = "123456"', 'value = "12345X"'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"pin\.value") as info:
        load_persona(str(path))
    assert "12345X" not in str(info.value)


def test_t1_atr_needs_a_correct_tck(tmp_path: Path) -> None:
    text = Path(__file__).parents[1].joinpath("src/sscard/sim/personas/v3.toml").read_text(encoding="utf-8")
    path = tmp_path / "bad.toml"
    path.write_text(text.replace("B4F005", "B4F006"), encoding="utf-8")
    with pytest.raises(ConfigError, match="TCK"):
        load_persona(str(path))


def test_raw_override_replaces_a_value(tmp_path: Path) -> None:
    text = Path(__file__).parents[1].joinpath("src/sscard/sim/personas/typical.toml").read_text(encoding="utf-8")
    path = tmp_path / "raw.toml"
    path.write_text(text + '\n[raw]\n"0D" = "19851307"\n"4E" = ""\n', encoding="utf-8")
    target = selected(str(path))
    assert tx(target, "00B20D3000") == "0D04198513079000"
    assert tx(target, "00B24E3000") == "4E009000"


# --- SELECT -----------------------------------------------------------------------------------


def test_atr_and_protocol() -> None:
    assert card().atr.hex().upper() == "3B6D000000814E43238697150100A3C1E5" and card().protocol == "T=0"
    assert card("v3").protocol == "T=1"


def test_select_ssse_answers_the_fci() -> None:
    target = card()
    assert tx(target, SELECT_SSSE + "00") == SSSE_FCI + "9000"
    assert tx(target, SELECT_SSSE) == SSSE_FCI + "9000"
    assert tx(target, "00A4040C0F7378312E73682EC9E7BBE1B1A3D5CF") == "9000"
    assert tx(card("v3"), SELECT_SSSE) == SSSE_FCI[:-2] + "03" + "9000"  # SM4


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00A4040008A000000333010101", "6A82"),  # the bank application on an SSC
        ("00A4040400", "6A86"),
        ("00A40401" + SELECT_SSSE[8:], "6A86"),
        ("00A4080002EF05", "6A86"),
        ("00A4020002EF05", "6A82"),  # EF before the application is selected
        ("00A40000033F0000", "6700"),
    ],
)
def test_select_errors(apdu: str, sw: str) -> None:
    assert tx(card(), apdu)[-4:] == sw


def test_select_by_fid_and_mf() -> None:
    target = selected()
    assert tx(target, "00A4020002EF05") == "9000" and target.current_ef == 0xEF05
    assert tx(target, "00A4000002EF06") == "9000" and target.current_ef == 0xEF06
    assert tx(target, "00A4020002EF09") == "6A82" and target.current_ef == 0xEF06
    assert tx(target, "00A40000023F00") == "9000" and target.current_ef is None
    assert tx(target, "00A4020002EF05") == "6A82"  # back at MF: SSSE's files are not visible
    assert tx(target, "00B2072C00") == "6A82"


def test_not_ssc_is_a_bank_card() -> None:
    target = card("not_ssc")
    assert tx(target, SELECT_SSSE) == "6A82"
    assert tx(target, "00A4040008A00000033301010100").endswith("9000")
    assert tx(target, "00B2072C00") == "6A82"


# --- READ RECORD: three addressing modes (docs/card-reference.md §2) ---------------------------------------


def test_read_record_sfi_by_number_and_by_identifier() -> None:
    target = selected()
    assert tx(target, "00B2072C0B") == TYPICAL_07 + "9000"  # SFI 5, record 7 (docs/card-reference.md §2 example)
    assert tx(target, "00B2072800") == TYPICAL_07 + "9000"  # SFI 5, identifier 07
    assert tx(target, "00B2083000") == TYPICAL_08 + "9000"  # SFI 6, identifier 08
    assert tx(target, "00B2023400") == TYPICAL_09 + "9000"  # SFI 6, record 2 is tag 09
    assert tx(target, "00B2093000") == TYPICAL_09 + "9000"
    assert target.current_ef == 0xEF06  # SFI addressing makes the EF current (ISO 7816-4)


def test_ef06_record_numbers_are_not_tags() -> None:
    target = selected("long_name")
    assert tx(target, "00B2073400")[:4] == "4E14"  # record 7 is the extension
    assert tx(target, "00B24E3000")[:4] == "4E14"
    assert tx(target, "00B2083400") == "6A83"  # there is no record 8
    assert tx(target, "00B2043400") == "0B01059000"  # record 4 is 民族 (05 维吾尔族)


def test_read_record_current_ef() -> None:
    target = selected()
    assert tx(target, "00B2080000") == "6986"  # nothing selected yet
    assert tx(target, "00A4020002EF05") == "9000"
    assert tx(target, "00B2070000") == TYPICAL_07 + "9000"
    assert tx(target, "00B2070400") == TYPICAL_07 + "9000"
    assert tx(target, "00B2080000") == "6A83"  # 08 lives in EF06


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00B24E3000", "6A83"),  # a 2.00 card without extension
        ("00B2FF2C00", "6A83"),
        ("00B2014C00", "6A82"),  # SFI 9: no such file
        ("00B2012D00", "6A86"),  # mode 101
        ("00B2012E00", "6A86"),
        ("00B2012F00", "6A86"),
        ("00B2012900", "6A86"),
        ("00B2002C00", "6A86"),  # record number 0
        ("00B2013C00", "6981"),  # SFI 7 is the (binary) fingerprint
        ("00B2072C01AA00", "6700"),  # READ RECORD has no command data
    ],
)
def test_read_record_errors(apdu: str, sw: str) -> None:
    assert tx(selected(), apdu) == sw


def test_no_sfi_persona_refuses_sfi_but_reads_after_select() -> None:
    target = selected("no_sfi")
    assert tx(target, "00B2072800") == "6A81"
    assert tx(target, "00A4020002EF05") == "9000"
    assert tx(target, "00B2070000") == "0709" + b"23000981X".hex().upper() + "9000"


# --- Le, 6Cxx and 61xx ------------------------------------------------------------------------


def test_le_rules_lenient_card() -> None:
    target = selected()
    assert tx(target, "00B2072C05") == "6C0B"  # Le shorter than the record
    assert tx(target, "00B2072C0B") == TYPICAL_07 + "9000"
    assert tx(target, "00B2072C20") == TYPICAL_07 + "9000"  # longer: the whole record
    assert tx(target, "00B2072C") == TYPICAL_07 + "9000"  # no Le
    assert tx(target, "00B2072C00") == TYPICAL_07 + "9000"  # Le 00 = 256


def test_strict_le_and_get_response_on_t0_card() -> None:
    target = card("v1_t0")
    assert tx(target, SELECT_SSSE + "00") == "611B"
    assert tx(target, "00C000001B") == SSSE_FCI + "9000"
    assert tx(target, "00B2072C20") == "6C0B"  # strict: Le must match
    assert tx(target, "00B2072C0A") == "6C0B"
    assert tx(target, "00B2072C0B") == "610B"
    assert tx(target, "00C0000010") == "6C0B"  # wrong Le in GET RESPONSE
    assert tx(target, "00C000000B") == "0709" + b"420007129".hex().upper() + "9000"
    assert tx(target, "00C000000B") == "6985"  # nothing pending any more
    assert tx(target, "00B2072C00") == "610B"  # Le 00 is always accepted


def test_get_response_in_pieces_and_cleared_by_other_commands() -> None:
    target = card("v1_t0")
    assert tx(target, SELECT_SSSE) == "611B"
    assert tx(target, "00C0000010") == SSSE_FCI[:32] + "610B"
    assert tx(target, "00C000000B") == SSSE_FCI[32:] + "9000"
    assert tx(target, SELECT_SSSE) == "611B"
    assert tx(target, "00A40000023F00") == "9000"  # no data: no 61xx
    assert tx(target, "00C000001B") == "6985"


def test_get_response_errors() -> None:
    target = card()
    assert tx(target, "00C0000010") == "6985"
    assert tx(target, "00C0010010") == "6A86"
    assert tx(target, "00C00000") == "6700"


# --- READ BINARY ------------------------------------------------------------------------------


def test_read_binary_photo_and_fingerprint() -> None:
    target = selected()
    photo = target.persona.photo
    assert len(photo) == 2560 and photo[:2] == b"\xff\xd8" and photo[-2:] == b"\xff\xd9"
    assert photo == load_persona("typical").photo  # deterministic
    assert tx(target, "00B0000010") == "6986"
    assert tx(target, "00A4020002EF08") == "9000"
    assert tx(target, "00B0000010") == photo[:16].hex().upper() + "9000"
    assert tx(target, "00B0010010") == photo[256:272].hex().upper() + "9000"
    assert tx(target, "00B0000000") == photo[:256].hex().upper() + "9000"
    assert tx(target, "00B00000000000") == photo.hex().upper() + "9000"  # extended Le 0000
    assert tx(target, "00B00000000A00") == photo.hex().upper() + "9000"  # Le 2560
    assert tx(target, "00B009F020") == photo[0x9F0:].hex().upper() + "9000"  # past the end: the rest
    assert tx(target, "00B00A0001") == "6B00"
    assert tx(target, "00B07FFF01") == "6B00"
    fingerprint = target.persona.fingerprint
    assert len(fingerprint) == 0x300
    assert tx(target, "00B0870008") == fingerprint[:8].hex().upper() + "9000"  # SFI 7
    assert tx(target, "00B0870108") == fingerprint[1:9].hex().upper() + "9000"
    assert tx(target, "00B0850008") == "6981"  # EF05 has records
    assert tx(target, "00B0800008") == "6A86"  # SFI 0
    assert tx(target, "00B0A70008") == "6A86"


def test_read_binary_strict_and_chained() -> None:
    target = card("v1_t0")
    assert tx(target, SELECT_SSSE) == "611B"
    assert tx(target, "00C000001B") == SSSE_FCI + "9000"
    assert tx(target, "00A4020002EF07") == "9000"
    assert tx(target, "00B002F020") == "6C10"  # only 16 bytes left, strict Le
    assert tx(target, "00B002F010") == "6110"
    assert tx(target, "00C0000010") == target.persona.fingerprint[0x2F0:].hex().upper() + "9000"
    assert tx(target, "00B00000000300") == "6100"  # 768 bytes: 256 at a time
    fingerprint = target.persona.fingerprint
    assert tx(target, "00C0000000") == fingerprint[:256].hex().upper() + "6100"
    assert tx(target, "00C0000000") == fingerprint[256:512].hex().upper() + "6100"
    assert tx(target, "00C0000000") == fingerprint[512:].hex().upper() + "9000"


# --- access conditions: 3rd generation --------------------------------------------------------


def test_v3_needs_external_authentication_for_ef06_07_08() -> None:
    target = selected("v3")
    assert tx(target, "00B2072C00") == "0709" + b"540001637".hex().upper() + "9000"
    assert tx(target, "00B2083000") == "6982"
    assert tx(target, "00B0870008") == "6982"
    assert tx(target, "00A4020002EF08") == "9000"  # selecting is free, reading is not
    assert tx(target, "00B0000008") == "6982"
    target.security.external_auth_ok = True  # what EXTERNAL AUTHENTICATE will do (docs/card-reference.md §5)
    assert tx(target, "00B2083000") == "0812" + b"540102198208080012".hex().upper() + "9000"
    target.power_on()
    assert not target.security.external_auth_ok


def test_locked_application_answers_9303() -> None:
    target = card("locked")
    assert tx(target, "0020000003123456") == "9000"  # before SSSE is selected
    assert tx(target, SELECT_SSSE) == SSSE_FCI + "9000"
    assert tx(target, "00B2072C00") == "9303"
    assert tx(target, "0020000003123456") == "9303"


# --- GET CHALLENGE ----------------------------------------------------------------------------


def test_get_challenge_is_random_and_remembered() -> None:
    target = selected(rng=lambda n: bytes(range(1, n + 1)))
    assert tx(target, "0084000008") == "01020304050607089000"
    assert target.security.challenge == bytes(range(1, 9))
    assert tx(target, "0084000004") == "010203049000"
    assert tx(target, "0084000005") == "6700"
    assert tx(target, "0084000100") == "6A86"
    real = selected()
    first, second = tx(real, "0084000008"), tx(real, "0084000008")
    assert len(first) == 20 and first != second
    real.power_on()
    assert real.security.challenge is None


# --- VERIFY and the PIN counter ---------------------------------------------------------------


def test_pin_counter_sequence_and_status_query() -> None:
    target = selected()
    assert tx(target, "00200000") == "63C3"
    assert tx(target, "0020000003111111") == "63C2"
    assert tx(target, "00200000") == "63C2"  # the query never changes the counter
    assert tx(target, "00200000") == "63C2"
    assert tx(target, "0020000003111111") == "63C1"
    assert tx(target, "00200000") == "63C1"
    assert tx(target, "0020000003111111") == "63C0"
    assert tx(target, "00200000") == "6983"
    assert tx(target, "0020000003123456") == "6983"  # even the right PIN, once blocked
    assert target.tries_left == 0 and not target.pin_verified


def test_correct_pin_resets_counter_and_verifies_until_power_off() -> None:
    target = selected()
    assert tx(target, "0020000003111111") == "63C2"
    assert tx(target, "0020000003123456") == "9000"
    assert target.tries_left == 3 and target.pin_verified
    assert tx(target, "00200000") == "9000"
    assert tx(target, "0020000003111111") == "63C2"  # a wrong try drops the verified state
    assert tx(target, "00200000") == "63C2"
    assert tx(target, "0020000003123456") == "9000"
    target.power_on()
    assert tx(target, "00200000") == "63C3" and target.tries_left == 3


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("002000000112", "6700"),  # Lc 1
        ("002000000712345678901234", "6700"),  # Lc 7
        ("002000000312345A", "6A80"),  # not BCD
        ("0020000003FF3456", "6A80"),
        ("0020000103123456", "6A86"),
        ("0020010003123456", "6A86"),
        ("0020000000", "6700"),  # case 2 is not a status query
    ],
)
def test_verify_format_errors_never_count(apdu: str, sw: str) -> None:
    target = selected()
    assert tx(target, apdu) == sw
    assert target.tries_left == 3


def test_pin_status_unsupported_persona() -> None:
    target = selected("no_sfi")
    assert tx(target, "00200000") == "6700"
    assert tx(target, "0020000003111111") == "63C2"
    assert tx(target, "00200000") == "6700" and target.tries_left == 2


def test_pin_blocked_persona() -> None:
    target = selected("pin_blocked")
    assert tx(target, "00200000") == "6983"
    assert tx(target, "0020000003123456") == "6983"
    assert tx(target, "805E0100071234 56FF654321") == "6983"


def test_odd_length_pin_is_f_padded(tmp_path: Path) -> None:
    text = Path(__file__).parents[1].joinpath("src/sscard/sim/personas/typical.toml").read_text(encoding="utf-8")
    path = tmp_path / "odd.toml"
    path.write_text(text.replace('value = "123456"', 'value = "12345"'), encoding="utf-8")
    target = selected(str(path))
    assert tx(target, "0020000003123450") == "63C2"
    assert tx(target, "002000000312345F") == "9000"


# --- CHANGE PIN -------------------------------------------------------------------------------


def test_change_pin() -> None:
    target = selected()
    assert tx(target, "805E010007 123456 FF 654321") == "9000"
    assert target.pin_verified and target.tries_left == 3
    assert tx(target, "0020000003123456") == "63C2"
    assert tx(target, "0020000003654321") == "9000"
    assert tx(target, "805E010007 654321 FF 2468 0F") == "9000"  # odd-length new PIN
    assert tx(target, "00200000 03 24680F") == "9000"
    assert load_persona("typical").pin.value == "123456"  # the persona file is never written
    assert target.persona.pin.value == "123456"


def test_change_pin_wrong_old_counts_like_verify() -> None:
    target = selected()
    assert tx(target, "805E010007 111111 FF 654321") == "63C2"
    assert tx(target, "805E010007 111111 FF 654321") == "63C1"
    assert tx(target, "00200000") == "63C1"
    assert tx(target, "805E010007 111111 FF 654321") == "63C0"
    assert tx(target, "805E010007 123456 FF 654321") == "6983"


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("805E010006 123456 654321", "6A80"),  # no separator
        ("805E010004 123456 FF", "6A80"),  # no new PIN
        ("805E010005 FF 12345678", "6A80"),  # no old PIN
        ("805E010007 123456 FF 65432A", "6A80"),
        ("805E01000B 123456 FF 12345678901234", "6A80"),  # new PIN too long
        ("805E0000 07 123456 FF 654321", "6A86"),  # RELOAD PIN needs a MAC: not here
        ("805E0101 07 123456 FF 654321", "6A86"),
        ("805E0100", "6700"),
        ("005E010007 123456 FF 654321", "6E00"),  # CHANGE PIN is a proprietary-class command
    ],
)
def test_change_pin_errors(apdu: str, sw: str) -> None:
    target = selected()
    assert tx(target, apdu) == sw
    assert target.tries_left == 3


# --- everything else --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00CA9F7F00", "6D00"),  # GET DATA: unknown INS
        ("0082000A08" + "00" * 8, "6984"),  # EXTERNAL AUTHENTICATE without GET CHALLENGE
        ("84240000 08 0102030405060708", "6D00"),
        ("A0A40000023F00", "6E00"),  # CLA not 00/80/84
        ("80A40000023F00", "6E00"),  # SELECT is ISO class
        ("00B2", "6700"),  # shorter than a header
        ("00A404000F7378", "6700"),  # Lc does not match
    ],
)
def test_other_status_words(apdu: str, sw: str) -> None:
    assert tx(selected(), apdu)[-4:] == sw


def test_apdu_count_and_remove_after() -> None:
    target = card(remove_after=2)
    assert target.present
    tx(target, SELECT_SSSE)
    assert tx(target, "00B2072C00") == TYPICAL_07 + "9000"
    assert target.apdu_count == 2 and not target.present
    with pytest.raises(CardGone):
        target.process(bytes.fromhex("00B2072C00"))
    with pytest.raises(CardGone):
        target.power_on()


def test_power_on_resets_volatile_state_only() -> None:
    target = selected()
    tx(target, "00A4020002EF05")
    tx(target, "0020000003111111")
    target.power_on()
    assert target.current_ef is None and tx(target, "00B2070000") == "6986"
    assert tx(target, "00B2072C00") == "6A82"  # back at MF
    assert target.tries_left == 2


# --- the in-process transport (sscard.transports.sim) -----------------------------------------


def test_sim_reader_and_transport_implement_the_interfaces() -> None:
    reader = SimReader(card(), "sim:typical")
    assert isinstance(reader, Reader) and reader.card_present()
    reader.wait_for_card(timeout=0)
    transport = reader.connect()
    assert isinstance(transport, Transport) and isinstance(transport, SimTransport)
    assert transport.name == "sim:typical" and transport.protocol == "T=0"
    assert transport.atr == load_persona("typical").atr
    with transport as entered, entered.transaction():
        assert entered.transmit(bytes.fromhex(SELECT_SSSE)).hex().upper() == SSSE_FCI + "9000"
    with pytest.raises(TransportFailure):
        transport.transmit(bytes.fromhex(SELECT_SSSE))


def test_connect_powers_the_card_on() -> None:
    target = selected()
    tx(target, "0020000003123456")
    reader = SimReader(target, "sim")
    transport = reader.connect()
    assert not target.pin_verified
    assert transport.transmit(bytes.fromhex("00200000")) == b"\x63\xc3"


def test_pulled_card_raises_card_removed_then_no_card() -> None:
    target = card(remove_after=1)
    reader = SimReader(target, "sim:typical")
    transport = reader.connect()
    assert transport.transmit(bytes.fromhex(SELECT_SSSE))[-2:] == b"\x90\x00"
    assert not reader.card_present()  # gone as soon as the last answer is out
    with pytest.raises(CardRemoved):
        transport.transmit(bytes.fromhex("00B2072C00"))
    with pytest.raises(CardRemoved):
        transport.transmit(bytes.fromhex("00B2072C00"))
    assert not reader.card_present()
    with pytest.raises(NoCard):
        reader.connect()
    with pytest.raises(Timeout):
        reader.wait_for_card(timeout=0.01)
    assert target.apdu_count == 1


def test_a_card_bug_is_not_disguised_as_a_removal(monkeypatch: pytest.MonkeyPatch) -> None:
    target = card()
    transport = SimReader(target, "sim").connect()

    def broken(apdu: bytes) -> bytes:
        raise RuntimeError("simulator bug")

    monkeypatch.setattr(target, "process", broken)
    with pytest.raises(RuntimeError, match="simulator bug"):
        transport.transmit(bytes.fromhex(SELECT_SSSE))


def test_card_pulled_before_connect_is_no_card() -> None:
    reader = SimReader(card(remove_after=0), "sim")
    with pytest.raises(NoCard):
        reader.connect()
    assert not reader.card_present()


def test_reader_remove_and_insert() -> None:
    reader = SimReader(card(), "sim")
    transport = reader.connect()
    reader.remove()
    with pytest.raises(CardRemoved):
        transport.transmit(bytes.fromhex(SELECT_SSSE))
    with pytest.raises(NoCard):
        reader.connect()
    reader.insert(card("v3"))
    reader.wait_for_card(timeout=0)
    assert reader.connect().protocol == "T=1"
    with pytest.raises(CardRemoved):  # the old connection stays dead
        transport.transmit(bytes.fromhex(SELECT_SSSE))
