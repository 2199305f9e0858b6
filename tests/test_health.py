"""The resident health card (issue 12, item 3): layout file, records, the read, vendor formats.

In process the card is the simulator (``sim:health*`` personas, :mod:`sscard.sim.health`, which
never imports :mod:`sscard.health`); the PSAM is the simulated PSAM and the software key service
reads the published test keys.  Through pcscd the card sits in vpcd slot 0 and is read over
:mod:`sscard.transports.pcsc`, the path a hardware reader takes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sscard.apdu.command import Command
from sscard.apdu.processors import standard_stack
from sscard.config import Config
from sscard.errors import (
    AuthRequired,
    BadRecord,
    CardRemoved,
    ConfigError,
    NoCard,
    NotSsc,
    PsamKeyMissing,
    SscardError,
    TerminalAuthFailed,
    UsageError,
)
from sscard.health import HealthCard, RecordFlaggedInvalid, load_layout, parse_record, read_health_card
from sscard.health.application import HealthApplication, load_auth_profile, mask_id_number
from sscard.health.layout import Element, build_record
from sscard.national.health import (
    VENDOR_CODES,
    ddf1ef05_info,
    field_names,
    iR_DDF1EF05Info,
    iR_DDF1EF06Info,
    vendor_code,
)
from sscard.psam.keys import KeyService, PsamKeyService, SoftwareKeyService
from sscard.readers import open_sam_reader, published_test_keys_path
from sscard.sim import SimulatedCard, load_persona
from sscard.sim.persona import Persona
from sscard.transports.sim import SimReader
from support import pcsc_env

LAYOUT = load_layout()
ELEMENTS = LAYOUT.elements
#: A sample value per encoding that fits every element of the bundled layout using it.
SAMPLES = {
    "an": lambda e: "1" * e.min_len if e.pattern is None else None,
    "cn": lambda e: "1" * (2 * e.max_len),
    "bcd_date": lambda e: dt.date(2020, 1, 15),
    "gbk": lambda e: "卫生" if e.max_len >= 4 else "",
    "binary": lambda e: "AB" * e.min_len,
}
NOT_PRINTABLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")
SPECIAL = {"card_number": "11010519491231002X", "gender_code": "2", "version": "1.00"}


def sample(element: Element) -> object:
    return SPECIAL.get(element.key, SAMPLES[element.encoding](element))


def software_keys(keyset: str = "test") -> SoftwareKeyService:
    return SoftwareKeyService.from_file(published_test_keys_path(), keyset, allowed=True)


def psam(name: str = "psam") -> PsamKeyService:
    return PsamKeyService(open_sam_reader(Config(sam_reader=f"sim:{name}")).connect(), load_auth_profile())


def read_sim(persona: str | Persona, key_service: KeyService | None = None, **card: Any) -> HealthCard:
    loaded = persona if isinstance(persona, Persona) else load_persona(persona)
    transport = SimReader(SimulatedCard(loaded, **card), name=f"sim:{loaded.name}").connect()
    with transport.transaction():
        return read_health_card(standard_stack(transport), transport.atr, key_service)


def persona_file(tmp_path: Path, base: str, replace: dict[str, str]) -> Persona:
    text = (Path(__file__).parents[1] / "src/sscard/sim/personas" / f"{base}.toml").read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"{base}-changed.toml"
    path.write_text(text, encoding="utf-8")
    return load_persona(str(path))


# -- the layout file ------------------------------------------------------------------------


def test_the_layout_file_holds_the_six_known_ef05_tags_confirmed_and_ef06_marked_unconfirmed() -> None:
    ef05 = {f"{e.tag:02X}": e for e in LAYOUT.of_file("EF05")}
    assert {tag for tag, e in ef05.items() if e.confirmed} == {"01", "02", "03", "06", "08", "39"}
    assert ef05["08"].key == "card_number" and ef05["08"].max_len == 18
    ef06 = LAYOUT.of_file("EF06")
    assert ef06 and not any(e.confirmed for e in ef06)
    assert LAYOUT.files["EF06"].needs_auth and not LAYOUT.files["EF05"].needs_auth
    assert LAYOUT.apdu.select_ddf1.hex().upper() == "00A4000002DDF1"


@pytest.mark.parametrize("element", ELEMENTS, ids=lambda e: f"{e.file}-{e.tag:02X}-{e.key}")
def test_every_element_of_the_layout_round_trips(element: Element) -> None:
    value = sample(element)
    record = build_record(element, value)
    assert record[0] == element.tag and record[1] == len(record) - 2
    assert parse_record(element, record) == value
    assert element.name_zh and element.name_en and element.key


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ('encoding = "gbk"', "encoding must be one of"),
        ('read_mode = "sfi"', "read_mode must be one of"),
        ('tag = "03"', "appears twice"),
        ('file = "EF06"', "is not one of the [files] tables"),
        ("max_len = 30", "lengths"),
    ],
)
def test_a_broken_layout_file_is_a_config_error_naming_the_problem(tmp_path: Path, change: str, problem: str) -> None:
    broken = {
        'encoding = "gbk"': 'encoding = "utf8"',
        'read_mode = "sfi"': 'read_mode = "guess"',
        'tag = "03"': 'tag = "02"',
        'file = "EF06"': 'file = "EF07"',
        "max_len = 30": "max_len = 300",
    }[change]
    text = (Path(__file__).parents[1] / "src/sscard/health/data/layout.toml").read_text(encoding="utf-8")
    path = tmp_path / "layout.toml"
    path.write_text(text.replace(change, broken, 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_layout(path)


def test_a_corrected_layout_is_used_as_given(tmp_path: Path) -> None:
    """Data, not code: a deployment that reads EF05 by SELECT EF only changes one line."""
    text = (Path(__file__).parents[1] / "src/sscard/health/data/layout.toml").read_text(encoding="utf-8")
    path = tmp_path / "layout.toml"
    path.write_text(text.replace('read_mode = "sfi"', 'read_mode = "select"'), encoding="utf-8")
    layout = load_layout(path)
    card = SimulatedCard(load_persona("health"))
    transport = SimReader(card, name="sim:health").connect()
    result = HealthApplication(standard_stack(transport), layout).read(transport.atr)
    assert result.card_number == "11010519491231002X"
    headers = [h.hex().upper() for h in card.command_log]
    assert "00A40200" in headers and not any(h.startswith("00B2") and h[6:8] != "00" for h in headers)


# -- parsing records: bad input is BAD_RECORD naming the element -------------------------------

CARD_NUMBER = LAYOUT.element("EF05", "card_number")
ISSUE_DATE = LAYOUT.element("EF05", "issue_date")
ISSUER = LAYOUT.element("EF05", "issuer_name")
CITY = LAYOUT.element("EF05", "city_code")


@pytest.mark.parametrize(
    ("element", "data", "reason"),
    [
        (ISSUE_DATE, b"", "truncated record (0 bytes)"),
        (ISSUE_DATE, b"\x06", "truncated record (1 bytes)"),
        (ISSUE_DATE, bytes.fromhex("0504 20200115"), "expected tag 06, got 05"),
        (ISSUE_DATE, bytes.fromhex("0605 20200115"), "length byte says 5, the record holds 4"),
        (ISSUE_DATE, bytes.fromhex("0603 202001"), "length 3, expected 4"),
        (ISSUE_DATE, bytes.fromhex("0604 2020011A"), "not BCD"),
        (ISSUE_DATE, bytes.fromhex("0604 20201315"), "not a calendar date"),
        (CITY, bytes.fromhex("3902 11A1"), "not BCD"),
        (ISSUER, bytes.fromhex("0302 FFFE"), "not GB18030"),
        (ISSUER, bytes.fromhex("0302 410D"), "control characters"),
        (CARD_NUMBER, b"\x08\x12" + b"11010519491231002Y", "unexpected characters"),
        (CARD_NUMBER, b"\x08\x11" + b"11010519491231002", "length 17, expected 18"),
    ],
)
def test_malformed_records_are_bad_record_naming_the_element(element: Element, data: bytes, reason: str) -> None:
    with pytest.raises(BadRecord) as caught:
        parse_record(element, data)
    assert caught.value.code == "BAD_RECORD" and not isinstance(caught.value, RecordFlaggedInvalid)
    assert caught.value.element == element.key and reason in caught.value.reason
    assert element.name_zh in caught.value.message_zh


def test_errors_about_personal_data_never_quote_it() -> None:
    with pytest.raises(BadRecord) as caught:
        parse_record(CARD_NUMBER, b"\x08\x12" + b"11010519491231002Y")
    assert "1101051949" not in str(caught.value) and "withheld" in caught.value.reason
    birth = LAYOUT.element("EF06", "birth_date")
    with pytest.raises(BadRecord) as caught:
        parse_record(birth, bytes.fromhex("0D04 19491331"))
    assert "1949" not in str(caught.value) and "not a calendar date" in caught.value.reason
    assert {e.key for e in ELEMENTS if e.personal} == {"card_number", "name", "birth_date"}


@pytest.mark.parametrize("data", [bytes.fromhex("FF04FFFFFFFF"), bytes.fromhex("0604FFFFFFFF"), b"\xff"])
def test_a_record_flagged_ff_is_record_invalid(data: bytes) -> None:
    with pytest.raises(RecordFlaggedInvalid) as caught:
        parse_record(ISSUE_DATE, data)
    error = caught.value
    assert error.code == "BAD_RECORD" and error.element == "issue_date" and error.to_dict()["flag"] == "FF"
    assert "发卡日期" in error.message_zh and vendor_code(error) == 112


@settings(max_examples=500, deadline=None)
@given(element=st.sampled_from(ELEMENTS), data=st.binary(max_size=40))
def test_fuzzed_records_parse_or_raise_bad_record_only(element: Element, data: bytes) -> None:
    try:
        value = parse_record(element, data)
    except BadRecord as exc:
        assert exc.element == element.key
        return
    assert data[0] == element.tag and data[1] == len(data) - 2  # only a well-formed TLV gets this far
    assert value is None or isinstance(value, str | dt.date)


@settings(max_examples=300, deadline=None)
@given(element=st.sampled_from(ELEMENTS), value=st.binary(max_size=32))
def test_fuzzed_values_inside_a_well_formed_tlv(element: Element, value: bytes) -> None:
    """The value decoders alone: a right tag and length, then anything; never a crash."""
    try:
        parse_record(element, bytes((element.tag, len(value))) + value)
    except BadRecord as exc:
        assert exc.element == element.key


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="gb18030", exclude_categories=NOT_PRINTABLE), max_size=15))
def test_gbk_text_round_trips(text: str) -> None:
    text = text.rstrip(" ")
    if len(text.encode("gb18030")) > ISSUER.max_len:
        return
    assert parse_record(ISSUER, build_record(ISSUER, text)) == text


# -- the read over the in-process simulated card --------------------------------------------


def test_a_health_card_with_a_free_ef06_reads_whole_without_a_key_service() -> None:
    card = read_sim("health")
    assert card.kind == "health" and card.card_number == "11010519491231002X"
    assert card.issuer_name == "北京市卫生健康委员会" and card.issue_date == dt.date(2020, 1, 15)
    assert card.city_code == "110100" and card.version == "1.00" and card.card_type == "1"
    assert card.cardholder is not None and card.cardholder.name == "李四" and card.cardholder.gender == "男"
    assert card.cardholder.birth_date == dt.date(1949, 12, 31) and card.cardholder.nation == "汉族"
    assert card.warnings == () and card.authenticated_by is None


def test_without_a_key_service_a_locked_ef06_leaves_the_cardholder_out_with_auth_required() -> None:
    card = read_sim("health_locked_ef06")
    assert card.cardholder is None and card.card_number == "44030419900307123X" == card.id_number
    assert [w.code for w in card.warnings] == ["AUTH_REQUIRED"]
    data = card.to_json()
    assert data["kind"] == "health" and data["cardholder"] is None
    assert data["card"]["card_number"] == "44030419900307123X"
    assert data["warnings"][0]["code"] == "AUTH_REQUIRED" and "authenticated_by" not in data


@pytest.mark.parametrize("service", ["software", "psam"])
@pytest.mark.parametrize(("persona", "name"), [("health_locked_ef06", "王芳"), ("health", "李四")])
def test_a_key_service_unlocks_ef06(service: str, persona: str, name: str) -> None:
    keys = software_keys() if service == "software" else psam()
    card_sim = SimulatedCard(load_persona(persona))
    transport = SimReader(card_sim, name=f"sim:{persona}").connect()
    card = read_health_card(standard_stack(transport), transport.atr, keys)
    assert card.cardholder is not None and card.cardholder.name == name
    assert card.warnings == () and card.authenticated_by == keys.describe()
    assert card.to_json()["authenticated_by"] == keys.describe()
    # GET RESPONSE fetches an answer on a T=0 card: not a command of its own.
    headers = [h.hex().upper() for h in card_sim.command_log if h[1] != 0xC0]
    challenge = headers.index("00840000")
    assert headers[challenge + 1].startswith("0082000A")  # the card's very next command
    assert not any(h.startswith("0020") for h in headers)  # no PIN, ever


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        (lambda: psam("psam_wrong_keys"), TerminalAuthFailed),
        (lambda: software_keys("forged"), TerminalAuthFailed),
        (lambda: psam("psam_no_rk"), PsamKeyMissing),
    ],
)
def test_a_failing_key_service_fails_the_read(keys: Callable[[], KeyService], error: type[SscardError]) -> None:
    with pytest.raises(error):
        read_sim("health_locked_ef06", keys())


def test_the_flagged_record_persona_is_bad_record_112() -> None:
    with pytest.raises(RecordFlaggedInvalid) as caught:
        read_sim("health_bad_record")
    assert caught.value.element == "issue_date" and vendor_code(caught.value) == 112


def test_a_bad_id_check_character_is_a_warning(tmp_path: Path) -> None:
    persona = persona_file(
        tmp_path, "health", {'card_number = "11010519491231002X"': 'card_number = "110105194912310021"'}
    )
    card = read_sim(persona)
    assert [w.code for w in card.warnings] == ["ID_NUMBER_CHECK"] and card.card_number == "110105194912310021"


def test_a_card_refusing_sfi_addressing_is_read_with_select_ef(tmp_path: Path) -> None:
    persona = persona_file(tmp_path, "health", {"algorithm = 1": "algorithm = 1\nsfi = false"})
    card_sim = SimulatedCard(persona)
    transport = SimReader(card_sim, name="sim:nosfi").connect()
    card = read_health_card(standard_stack(transport), transport.atr)
    assert card.cardholder is not None and card.cardholder.name == "李四"
    headers = [h.hex().upper() for h in card_sim.command_log]
    assert headers.count("00A40200") == 2  # EF05 then EF06, each selected once


def test_a_card_without_ddf1_is_not_ssc_naming_the_health_application() -> None:
    with pytest.raises(NotSsc) as caught:
        read_sim("typical")
    assert "DDF1" in caught.value.message


def test_personal_data_stays_out_of_repr() -> None:
    card = read_sim("health")
    shown = repr(card)
    assert "11010519491231002X" not in shown and "**************002X" in shown
    assert "李四" not in shown and "1949" not in shown
    assert mask_id_number("11010519491231002X") == "**************002X" and mask_id_number(None) is None


def _apdus(persona: str, key_service: KeyService | None = None) -> int:
    card = SimulatedCard(load_persona(persona))
    transport = SimReader(card, name="count").connect()
    read_health_card(standard_stack(transport), transport.atr, key_service)
    return card.apdu_count


@pytest.mark.parametrize(
    ("persona", "keys"), [("health", False), ("health_locked_ef06", False), ("health_locked_ef06", True)]
)
def test_pulled_at_every_apdu_in_process_is_card_removed(persona: str, keys: bool) -> None:
    """Never a partial result: every prefix of the read ends in CARD_REMOVED, the whole read succeeds."""
    service = software_keys() if keys else None
    total = _apdus(persona, service)
    assert total >= (14 if keys else 8)
    for index in range(1, total):
        with pytest.raises(CardRemoved):
            read_sim(persona, service, remove_after=index)
    assert read_sim(persona, service, remove_after=total).card_number


# -- the vendor formats -----------------------------------------------------------------------


def test_iR_DDF1EF05Info_joins_the_ef05_fields_in_layout_order() -> None:
    card = read_sim("health")
    text = ddf1ef05_info(card)
    assert text == "1|1.00|北京市卫生健康委员会|20200115|11010519491231002X|110100|"
    assert field_names("EF05") == ("卡的类别", "规范版本", "发卡机构名称", "发卡日期", "卡号", "应用城市代码")
    assert iR_DDF1EF05Info(lambda: card) == (0, text)


def test_iR_DDF1EF06Info_without_a_key_service_is_105() -> None:
    code, message = iR_DDF1EF06Info(lambda: read_sim("health_locked_ef06"))
    assert code == 105 and "终端认证" in message
    code, text = iR_DDF1EF06Info(lambda: read_sim("health_locked_ef06", software_keys()))
    assert (code, text) == (0, "王芳|2|01|19900307|")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("x"), 101),
        (NotSsc("SELECT DDF1 answered 6A82"), 102),
        (BadRecord("issue_date", "length 3, expected 4"), 103),
        (CardRemoved(), 104),
        (NoCard(), 104),
        (AuthRequired("EF06"), 105),
        (PsamKeyMissing("RKSSSE"), 105),
        (TerminalAuthFailed(), 106),
        (RecordFlaggedInvalid("issue_date", "发卡日期", 0xFF), 112),
    ],
)
def test_vendor_return_codes(error: SscardError, code: int) -> None:
    assert vendor_code(error) == code
    assert vendor_code(None) == 0


def test_the_vendor_table_names_only_real_error_codes() -> None:
    import sscard.errors as errors

    known = {cls.code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, SscardError)}
    assert set(VENDOR_CODES) <= known
    assert set(VENDOR_CODES.values()) <= {101, 102, 103, 104, 105, 106, 112}


# -- through pcscd + vpcd -----------------------------------------------------------------------


PcscRead = Callable[..., HealthCard]


@pytest.fixture
def pcsc_read(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str) -> Iterator[PcscRead]:
    from sscard.transports.pcsc import PcscReader

    def run(key_service: KeyService | None = None) -> HealthCard:
        transport = PcscReader(vpcd_reader).connect()
        try:
            with transport.transaction():
                return read_health_card(standard_stack(transport), transport.atr, key_service)
        finally:
            transport.close()

    yield run


@pytest.mark.pcscd
def test_health_cards_read_through_pcscd(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str, pcsc_read: PcscRead) -> None:
    link = vpcd_card("health")
    card = pcsc_read()
    assert card.cardholder is not None and card.cardholder.name == "李四"
    assert card.card_number == "11010519491231002X"
    link.remove()
    pcsc_env.wait_for_reader(vpcd_reader, present=False)
    link = vpcd_card("health_locked_ef06")
    locked = pcsc_read()
    assert locked.cardholder is None and [w.code for w in locked.warnings] == ["AUTH_REQUIRED"]
    unlocked = pcsc_read(software_keys())
    assert unlocked.cardholder is not None and unlocked.cardholder.name == "王芳"
    assert unlocked.to_json()["kind"] == "health"
    link.remove()
    pcsc_env.wait_for_reader(vpcd_reader, present=False)


@pytest.mark.pcscd
def test_a_health_card_pulled_mid_read_through_pcscd_is_card_removed(
    vpcd_card: pcsc_env.InsertCard, vpcd_reader: str, pcsc_read: PcscRead
) -> None:
    """Every APDU of the authenticated read: the card vanishes from under pcscd, never a result."""
    keys = software_keys()
    total = _apdus("health_locked_ef06", keys)
    failures = []
    for index in range(1, total):
        link = vpcd_card("health_locked_ef06", remove_after=index)
        try:
            result = pcsc_read(keys)
            failures.append(f"pulled after {index} APDUs, got {result!r}")
        except CardRemoved:
            pass
        link.remove()
        pcsc_env.wait_for_reader(vpcd_reader, present=False)
    assert not failures


# -- the simulated health card itself -------------------------------------------------------


def _card(persona: str = "health_locked_ef06") -> SimulatedCard:
    card = SimulatedCard(load_persona(persona), rng=lambda n: bytes(range(n)))
    card.power_on()
    return card


def _sw(card: SimulatedCard, apdu: str) -> str:
    return card.process(bytes.fromhex(apdu)).hex().upper()[-4:]


def test_the_simulated_health_card_answers_like_a_card() -> None:
    card = _card("health")
    assert _sw(card, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF") == "6A82"  # no SSSE here
    assert card.process(bytes.fromhex("00A4000002DDF1")).hex().upper() == "6F0C8402DDF1A5069F0C03860101" + "9000"
    assert _sw(card, "00B2082805") == "6C14"  # tag 08 in EF05 by SFI: 18 bytes + tag + length
    assert card.process(bytes.fromhex("00B2082814"))[:2] == b"\x08\x12"
    assert _sw(card, "00B2400000") == "6A83"  # tag 40 is nowhere in the current EF05
    assert _sw(card, "00A4020002EF07") == "6A82"
    assert _sw(card, "0020000003123456") == "6D00"  # no PIN in DDF1
    assert _sw(card, "00A40000023F00") == "9000" and _sw(card, "00B2082814") == "6A82"  # back in MF


def test_the_simulated_external_authentication_rules() -> None:
    card = _card()
    assert _sw(card, "00A4000C02DDF1") == "9000"  # P2 0C: no FCI, so no 61xx on this T=0 card
    assert _sw(card, "00B20930") == "6982"  # EF06 (SFI 6), locked
    assert _sw(card, "0082000A10" + "00" * 16) == "6984"  # no challenge outstanding
    assert _sw(card, "0084000008") == "6108"  # T=0: the challenge waits for GET RESPONSE
    assert _sw(card, "0082000B10" + "00" * 16) == "6A88"  # another key reference
    assert _sw(card, "0084000008") == "6108"  # T=0: the challenge waits for GET RESPONSE
    assert _sw(card, "0082000A10" + "00" * 16) == "6300"  # wrong cryptogram
    assert _sw(card, "00B20930") == "6982"


def test_a_good_authentication_lasts_until_another_df_is_selected() -> None:
    keys, profile = software_keys(), load_auth_profile()
    card = SimulatedCard(load_persona("health_locked_ef06"))
    transport = SimReader(card, name="sim:auth").connect()
    connection = standard_stack(transport)
    application = HealthApplication(connection)
    application.read(transport.atr, keys, profile)
    assert card.security.external_auth_ok
    assert application.read_element(LAYOUT.element("EF06", "name")) == "王芳"
    connection.send(Command.from_bytes(bytes.fromhex("00A40000023F00")))
    application.select()
    with pytest.raises(AuthRequired):
        application.read_element(LAYOUT.element("EF06", "name"))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ('card_number = "11010519491231002X"', "health.ef05.card_number is missing"),
        ('gender = "1"', "health.ef06 has unknown keys"),
        ("algorithm = 1", "health.algorithm must be a byte value"),
        ('issue_date = "2020-01-15"', "health.ef05.issue_date must be a date"),
    ],
)
def test_a_broken_health_section_is_a_config_error(tmp_path: Path, change: str, problem: str) -> None:
    replacement = {
        'card_number = "11010519491231002X"': "",
        'gender = "1"': 'sex = "1"',
        "algorithm = 1": "algorithm = 999",
        'issue_date = "2020-01-15"': 'issue_date = "15.01.2020"',
    }[change]
    with pytest.raises(ConfigError, match=re.escape(problem)):
        persona_file(tmp_path, "health", {change: replacement})


def test_apdu_economy_one_select_then_one_read_per_element() -> None:
    """No SELECT EF on a card with SFI addressing: 1 + 6 EF05 + 4 EF06 reads; +2 to authenticate."""
    assert _apdus("health") == 1 + len(LAYOUT.of_file("EF05")) + len(LAYOUT.of_file("EF06")) == 11
    card = SimulatedCard(load_persona("health"))
    transport = SimReader(card, name="count").connect()
    read_health_card(standard_stack(transport), transport.atr, software_keys())
    assert card.apdu_count == 13


def test_a_social_security_card_that_also_carries_ddf1_reads_as_both(tmp_path: Path) -> None:
    """The simulator's DDF1 hook leaves the SSC application untouched on a card with both."""
    from sscard.terminal import Terminal

    section = (Path(__file__).parents[1] / "src/sscard/sim/personas/health.toml").read_text(encoding="utf-8")
    section = section[section.index("[health]") :]
    path = tmp_path / "both.toml"
    base = (Path(__file__).parents[1] / "src/sscard/sim/personas/typical.toml").read_text(encoding="utf-8")
    path.write_text(base + "\n" + section, encoding="utf-8")
    with Terminal.open(f"sim:{path}") as terminal:
        ssc = terminal.read()
    assert ssc.cardholder.full_name == "张三"
    health = read_sim(load_persona(str(path)))
    assert health.cardholder is not None and health.cardholder.name == "李四"
