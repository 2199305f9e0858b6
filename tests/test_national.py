"""National reader interface compatibility (docs/card-reference.md §6)."""

from __future__ import annotations

import datetime as dt

import pytest

from sscard.errors import CardError, NoCard, NotSsc, PinBlocked, PinIncorrect, TraceMismatch
from sscard.national import IREADCARDBAS_FIELDS, ireadcardbas, parse_ireadcardbas, return_code
from sscard.ssc.application import SsseInfo
from sscard.ssc.records import CardholderData, IdentificationCode, IssuerData
from sscard.terminal import CardRead

# The published sample of docs/card-reference.md §6, field for field.
SAMPLE = (
    "639900|111111198101011110|X00000019|639900D15600000500BF7C7A48FB4966|张三|00814E43238697159900BF7C7A|"
    "1.00|20101001|20201001|410100813475|MT170701000006|"
)


def sample_card() -> CardRead:
    issuer = IssuerData(
        identification_code=IdentificationCode(bytes.fromhex("639900D15600000500BF7C7A48FB4966")),
        card_type="1",
        spec_version="1.00",
        issuer_id="1",
        issue_date=dt.date(2010, 10, 1),
        expiry_date=dt.date(2020, 10, 1),
        card_number="X00000019",
    )
    holder = CardholderData(
        ssn="111111198101011110",
        name="张三",
        gender_code="1",
        nation_code="01",
        birthplace_code="639900",
        birth_date=dt.date(1981, 1, 1),
    )
    atr = bytes.fromhex("3B6D000000814E43238697159900BF7C7A")
    return CardRead("test", atr, SsseInfo(b"", 1), issuer, holder)


def test_ireadcardbas_reproduces_the_published_sample() -> None:
    assert ireadcardbas(sample_card(), "410100813475", "MT170701000006") == SAMPLE


def test_parse_round_trip() -> None:
    fields = parse_ireadcardbas(SAMPLE)
    assert list(fields) == list(IREADCARDBAS_FIELDS)
    assert fields["姓名"] == "张三" and fields["卡复位信息"] == "00814E43238697159900BF7C7A"
    with pytest.raises(ValueError, match="fields"):
        parse_ireadcardbas(SAMPLE[:-1])


def test_name_extension_is_joined() -> None:
    card = sample_card()
    holder = CardholderData(ssn="111111198101011110", name="买买提·艾力", name_extension="·阿不都")
    text = ireadcardbas(CardRead("t", card.atr, card.ssse, card.issuer, holder))
    assert parse_ireadcardbas(text)["姓名"] == "买买提·艾力·阿不都"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (None, 0),
        (NotSsc(), -1),
        (NoCard(), -2),
        (PinIncorrect(2), -51),
        (PinBlocked(), -52),
        (CardError(0x6982), -27010),
        (TraceMismatch("x"), -13),
    ],
)
def test_return_codes(error: object, code: int) -> None:
    assert return_code(error) == code  # type: ignore[arg-type]


# -- the national calls: return codes and the HSM variant ----------------------------------------


def test_national_calls_return_codes_and_strings() -> None:
    from sscard.config import Config
    from sscard.national import iReadCardBas, iReadCardBas_HSM_Step1, iReadCardBas_HSM_Step2
    from sscard.terminal import Terminal

    with Terminal.open("sim:typical", config=Config(terminal_id="410100813475")) as terminal:
        code, text = iReadCardBas(terminal, "MT170701000006")
    assert code == 0 and parse_ireadcardbas(text)["终端设备号"] == "MT170701000006"
    with Terminal.open("sim:not_ssc") as terminal:
        assert iReadCardBas(terminal)[0] == -1
    with Terminal.open("sim:v3") as terminal:
        code, message = iReadCardBas(terminal)
    assert code == -2203 and "终端认证" in message
    with Terminal.open("sim:v3", config=Config(key_service="hsm")) as terminal:
        code, step1 = iReadCardBas_HSM_Step1(terminal)
        assert code == 0 and step1.count("|") == 9
        assert iReadCardBas_HSM_Step2(terminal, step1, "garbage")[0] == -25
