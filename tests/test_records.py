"""Data-element formats (docs/card-reference.md §3): round trips, boundary lengths, bad input, fuzzing.

Pattern from construct's own declarativeunittest: for each format, parse(data) == value and
build(value) == data, including the edges of the allowed lengths.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sscard.errors import BadRecord
from sscard.ssc import checks
from sscard.ssc.records import (
    EF05_TAGS,
    EF06_TAGS,
    ELEMENTS,
    CardholderData,
    IdentificationCode,
    IssuerData,
    build_element,
    cardholder_from_elements,
    parse_element,
    validate,
)

IDENT = IdentificationCode(bytes.fromhex("639900D15600000500BF7C7A48FB4966"))

# (tag, wire bytes, value): exact pairs, both directions.
ROUND_TRIPS = [
    (0x01, "0110639900D15600000500BF7C7A48FB4966", IDENT),
    (0x02, "020133", "3"),
    (0x03, "0304332E3030", "3.00"),
    (0x04, "040C12345678901234567890FFFF", "12345678901234567890"),
    (0x04, "040C123456789012345678901234", "123456789012345678901234"),  # no padding at all
    (0x04, "040CFFFFFFFFFFFFFFFFFFFFFFFF", ""),  # all padding
    (0x05, "050420101001", dt.date(2010, 10, 1)),
    (0x05, "050400000000", None),  # unset date
    (0x06, "060420991231", dt.date(2099, 12, 31)),
    (0x07, "0709583030303030303139", "X00000019"),
    (0x08, "0812" + b"111111198101011110".hex(), "111111198101011110"),
    (0x09, "091E" + "D5C5C8FD".ljust(60, "0"), "张三"),
    (0x09, "091E" + ("D5C5" * 15), "张" * 15),  # exactly 30 bytes, no padding
    (0x09, "091E" + "00" * 30, ""),
    (0x4E, "4E14" + "B0A2".ljust(40, "0"), "阿"),
    (0x0A, "0A0131", "1"),
    (0x0B, "0B0101", "01"),
    (0x0B, "0B0156", "56"),
    (0x0C, "0C03110101", "110101"),
    (0x0C, "0C031101FF", "1101"),
    (0x0D, "0D0419810101", dt.date(1981, 1, 1)),
    (0x0D, "0D0420000229", dt.date(2000, 2, 29)),
]


@pytest.mark.parametrize(("tag", "wire", "value"), ROUND_TRIPS)
def test_parse_and_build_round_trip(tag: int, wire: str, value: object) -> None:
    data = bytes.fromhex(wire)
    assert parse_element(tag, data) == value
    assert build_element(tag, value) == data


def test_rare_character_needs_gb18030() -> None:
    name = "王䶮"
    with pytest.raises(UnicodeEncodeError):
        name.encode("gbk")
    wire = build_element(0x09, name)
    assert wire[:2] == b"\x09\x1e"
    assert parse_element(0x09, wire) == name


def test_space_padded_name_is_trimmed() -> None:
    wire = b"\x09\x1e" + "李四".encode("gb18030").ljust(30, b" ")
    assert parse_element(0x09, wire) == "李四"


def test_short_name_record_is_accepted() -> None:
    """Some cards send the name without padding; the length byte is authoritative."""
    assert parse_element(0x09, b"\x09\x04" + "张三".encode("gb18030")) == "张三"


def test_full_name_joins_extension() -> None:
    holder = cardholder_from_elements({0x09: "买买提·艾力", 0x4E: "·阿不都热合曼"})
    assert holder.full_name == "买买提·艾力·阿不都热合曼"
    assert CardholderData().full_name is None


BAD = [
    (0x05, "", "truncated"),
    (0x05, "05", "truncated"),
    (0x05, "0504201010", "truncated"),  # length says 4, 3 bytes follow
    (0x05, "06042010100190", "expected tag 05"),
    (0x05, "05032010100", None),  # odd hex: caught below
    (0x05, "0504201013AA", "not BCD"),
    (0x05, "050420101301", "not a calendar date"),
    (0x05, "05052010100100", "length 5"),
    (0x05, "05042010100100", "trailing"),
    (0x03, "0304332E3000", "unexpected characters"),
    (0x07, "0709583030303030303139FF", "trailing"),
    (0x07, "0709783030303030303139", "unexpected characters"),  # lower-case x
    (0x07, "0708583030303030303139", None),
    (0x08, "0812" + "FF" * 18, "not ASCII"),
    (0x09, "091F" + "41" * 31, "length 31"),
    (0x09, "0902FFFF", "not GB18030"),
    (0x09, "0904D5C500C8", "NUL byte"),
    (0x09, "0903D5C50D", "control characters"),
    (0x0B, "0B01A1", "not BCD"),
    (0x0C, "0C03F10101", "not BCD"),
    (0x01, "010F639900D15600000500BF7C7A48FB49", "length 15"),
    (0x01, "0110A39900D15600000500BF7C7A48FB4966", "not BCD"),
]


@pytest.mark.parametrize(("tag", "wire", "reason"), [b for b in BAD if len(b[1]) % 2 == 0])
def test_bad_records_name_the_element(tag: int, wire: str, reason: str | None) -> None:
    with pytest.raises(BadRecord) as info:
        parse_element(tag, bytes.fromhex(wire))
    error = info.value
    assert error.code == "BAD_RECORD"
    assert error.element == ELEMENTS[tag].key
    assert ELEMENTS[tag].label_zh in error.message_zh
    if reason:
        assert reason in error.reason


@settings(max_examples=400, deadline=None)
@given(tag=st.sampled_from(sorted(ELEMENTS)), data=st.binary(max_size=40))
def test_fuzz_parsers_only_raise_bad_record(tag: int, data: bytes) -> None:
    try:
        value = parse_element(tag, data)
    except BadRecord as error:
        assert error.element == ELEMENTS[tag].key
    else:
        # Whatever parsed must build back to something that parses to the same value.
        assert parse_element(tag, build_element(tag, value)) == value


@settings(max_examples=300, deadline=None)
@given(tag=st.sampled_from(sorted(ELEMENTS)), value=st.binary(min_size=0, max_size=32))
def test_fuzz_well_framed_values(tag: int, value: bytes) -> None:
    """Correct tag and length with random content: still only BAD_RECORD or a clean value."""
    data = bytes((tag, len(value))) + value
    try:
        parse_element(tag, data)
    except BadRecord as error:
        assert error.element == ELEMENTS[tag].key


NON_PRINTABLE = ("Cc", "Cs", "Zl", "Zp", "Zs", "Cf", "Co", "Cn")


@given(st.text(alphabet=st.characters(codec="gb18030", exclude_categories=NON_PRINTABLE), max_size=15))
def test_fuzz_names_round_trip(name: str) -> None:
    encoded = name.encode("gb18030")
    if len(encoded) > 30:
        with pytest.raises(Exception, match="at most 30"):
            build_element(0x09, name)
        return
    assert parse_element(0x09, build_element(0x09, name)) == name.rstrip()


def test_element_table_matches_reference() -> None:
    assert EF05_TAGS == (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07)
    assert EF06_TAGS == (0x08, 0x09, 0x4E, 0x0A, 0x0B, 0x0C, 0x0D)
    lengths = {t: ELEMENTS[t].max_len for t in ELEMENTS}
    assert lengths == {
        1: 16,
        2: 1,
        3: 4,
        4: 12,
        5: 4,
        6: 4,
        7: 9,
        8: 18,
        9: 30,
        0x4E: 20,
        0x0A: 1,
        0x0B: 1,
        0x0C: 3,
        0x0D: 4,
    }


# --- check characters (docs/card-reference.md §3) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "valid"),
    [("X00000019", True), ("X00000018", False), ("A12345678", False), ("x00000019", False), ("X0000001", False)],
)
def test_card_number_check(number: str, valid: bool) -> None:
    assert checks.card_number_valid(number) is valid


def test_card_number_check_char_special_values() -> None:
    # Find first-8 strings whose remainder gives r = 10 ('X') and r = 11 ('0').
    results = {checks.card_number_check_char(f"{n:08d}") for n in range(200)}
    assert {"X", "0"} <= results


@pytest.mark.parametrize(
    ("ssn", "valid"),
    [
        ("111111198101011110", True),
        ("11010519491231002X", True),
        ("110105194912310021", False),
        ("11010519491231002x", False),
        ("1101051949123100", False),
    ],
)
def test_ssn_check(ssn: str, valid: bool) -> None:
    assert checks.ssn_valid(ssn) is valid


def test_validate_warnings() -> None:
    issuer = IssuerData(
        identification_code=IdentificationCode(bytes.fromhex("110100AAAAAAAAAA00BF7C7A48FB4966")),
        card_number="X00000018",
        expiry_date=dt.date(2020, 1, 1),
    )
    holder = CardholderData(ssn="110105194912310021", birth_date=dt.date(1950, 1, 1), gender_code="7", nation_code="77")
    codes = [w.code for w in validate(issuer, holder, dt.date(2026, 1, 1))]
    assert codes == [
        "CARD_NUMBER_CHECK",
        "IDENTIFICATION_CODE_RID",
        "CARD_EXPIRED",
        "SSN_CHECK",
        "BIRTH_DATE_MISMATCH",
        "UNKNOWN_GENDER_CODE",
        "UNKNOWN_NATION_CODE",
    ]
    for warning in validate(issuer, holder, dt.date(2026, 1, 1)):
        assert warning.message and warning.message_zh


def test_validate_clean_card_has_no_warnings() -> None:
    issuer = IssuerData(identification_code=IDENT, card_number="X00000019", expiry_date=dt.date(2030, 1, 1))
    holder = CardholderData(ssn="111111198101011110", birth_date=dt.date(1981, 1, 1), gender_code="1", nation_code="01")
    assert validate(issuer, holder, dt.date(2026, 1, 1)) == []
    assert holder.gender == "男" and holder.nation == "汉族"
