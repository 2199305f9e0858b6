"""Several readers and slots: slot kinds, iType order, configuration, and the choice through pcscd.

Reader names below are the forms pcsc-lite gives real multi-slot terminals (one USB device, one
PC/SC reader per slot); the end-to-end tests use vpcd's two slots as a contact and a contactless
reader, configured by name.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sscard.config import Config, load_config
from sscard.errors import ConfigError, NoCard, NoReader
from sscard.readers import SlotKind, card_readers, open_reader, sam_readers, slot_kind
from sscard.terminal import Terminal
from support import pcsc_env

ACS_ICC = "ACS ACR1281 1S Dual Reader [ACR1281 1S Dual Reader ICC] 00 00"
ACS_PICC = "ACS ACR1281 1S Dual Reader [ACR1281 1S Dual Reader PICC] 01 00"
ACS_SAM = "ACS ACR1281 1S Dual Reader [ACR1281 1S Dual Reader SAM] 02 00"
IDENTIV = "Identiv uTrust 3700 F CL Reader [uTrust 3700 F CL Reader] 00 00"
OMNIKEY = "HID Global OMNIKEY 5422 Smartcard Reader [OMNIKEY 5422 Smartcard Reader] 00 00"
OMNIKEY_CL = "HID Global OMNIKEY 5422 Smartcard Reader [OMNIKEY 5422 Contactless] 01 00"
SAMSUNG = "Samsung Cloud Card Reader 00 00"  # neither a SAM nor a CL slot, despite the letters
KIOSK = [ACS_ICC, ACS_PICC, ACS_SAM]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        (ACS_ICC, SlotKind.CONTACT),
        (ACS_PICC, SlotKind.CONTACTLESS),
        (ACS_SAM, SlotKind.SAM),
        (IDENTIV, SlotKind.CONTACTLESS),
        (OMNIKEY, SlotKind.CONTACT),
        (OMNIKEY_CL, SlotKind.CONTACTLESS),
        (SAMSUNG, SlotKind.CONTACT),
    ],
)
def test_slot_kind_from_name_keywords(name: str, kind: SlotKind) -> None:
    assert slot_kind(name, Config()) is kind


def test_slot_keywords_are_configuration() -> None:
    vendor = "Acme Kiosk Reader [Slot NFC] 01 00"
    assert slot_kind(vendor, Config()) is SlotKind.CONTACT
    assert slot_kind(vendor, Config(contactless_keywords=("NFC",))) is SlotKind.CONTACTLESS
    assert slot_kind("Acme [PSAM1] 02 00", Config(sam_keywords=("PSAM1",))) is SlotKind.SAM


@pytest.mark.parametrize(
    ("itype", "expected"),
    [(1, [ACS_ICC]), (2, [ACS_PICC]), (3, [ACS_ICC, ACS_PICC]), (4, [ACS_PICC, ACS_ICC])],
)
def test_itype_orders_the_card_readers_and_never_offers_the_sam(itype: int, expected: list[str]) -> None:
    assert card_readers(KIOSK, Config(itype=itype)) == expected
    assert sam_readers(KIOSK, Config(itype=itype)) == [ACS_SAM]


def test_configured_names_override_keywords() -> None:
    config = Config(reader="Virtual PCD 00 00", contactless_reader="Virtual PCD 00 01", sam_reader="SAM")
    names = ["Virtual PCD 00 00", "Virtual PCD 00 01", *KIOSK]
    assert card_readers(names, config) == ["Virtual PCD 00 00", "Virtual PCD 00 01"]
    assert card_readers(names, Config(**{**config.__dict__, "itype": 4})) == ["Virtual PCD 00 01", "Virtual PCD 00 00"]
    assert sam_readers(names, config) == [ACS_SAM]


def test_a_reader_name_alone_pins_that_reader_and_its_slots() -> None:
    names = [OMNIKEY, *KIOSK]
    assert card_readers(names, Config(reader="ACR1281")) == [ACS_ICC, ACS_PICC]
    assert card_readers(names, Config(reader="OMNIKEY", itype=2)) == []
    assert card_readers(names, Config()) == [OMNIKEY, ACS_ICC, ACS_PICC]


def test_configuration_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "sscard.toml"
    path.write_text(
        """
[reader]
name = "ICC"
contactless = "PICC"
sam = "SAM"
itype = 4
busy_wait = 1.5

[reader.slots]
contactless_keywords = ["PICC", "NFC"]
""",
        encoding="utf-8",
    )
    config = load_config(path, env={})
    assert (config.reader, config.contactless_reader, config.sam_reader) == ("ICC", "PICC", "SAM")
    assert config.itype == 4 and config.busy_wait == 1.5
    assert config.contactless_keywords == ("PICC", "NFC") and config.sam_keywords == ("SAM",)
    env = {"SSCARD_ITYPE": "1", "SSCARD_SAM_READER": "PSAM", "SSCARD_CONTACTLESS_READER": "CL"}
    overridden = load_config(path, env=env)
    assert (overridden.itype, overridden.sam_reader, overridden.contactless_reader) == (1, "PSAM", "CL")
    assert overridden.with_overrides(itype=3, reader=None).itype == 3


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("[reader]\nitype = 5\n", {}),
        ("[reader]\nbusy_wait = -1\n", {}),
        ('[reader.slots]\nsam_keywords = "SAM"\n', {}),
        ("[reader.slots]\nsam_keywords = []\n", {}),
        ("", {"SSCARD_ITYPE": "contact"}),
        ("", {"SSCARD_ITYPE": "0"}),
    ],
)
def test_bad_reader_configuration_is_a_config_error(tmp_path: Path, text: str, env: dict[str, str]) -> None:
    path = tmp_path / "sscard.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env)
    assert caught.value.code == "CONFIG_ERROR" and caught.value.message_zh.startswith("配置错误")


# -- through pcscd: vpcd slot 0 as the contact reader, slot 1 as the contactless one ------------

SLOT0, SLOT1 = pcsc_env.reader_name(0), pcsc_env.reader_name(1)
TWO = Config(reader=SLOT0, contactless_reader=SLOT1)


def _with(itype: int) -> Config:
    return Config(reader=TWO.reader, contactless_reader=TWO.contactless_reader, itype=itype)


@pytest.mark.pcscd
@pytest.mark.parametrize(
    ("itype", "slots_with_cards", "expected"),
    [
        (3, (1,), SLOT1),  # auto, contact first: only the pad has a card
        (3, (0, 1), SLOT0),  # both: contact wins
        (4, (0, 1), SLOT1),  # both: contactless wins
        (2, (1,), SLOT1),
        (1, (0,), SLOT0),
    ],
)
def test_itype_picks_the_slot_through_pcscd(
    vpcd_card: pcsc_env.InsertCard, itype: int, slots_with_cards: tuple[int, ...], expected: str
) -> None:
    personas = {0: "typical", 1: "long_name"}
    for slot in slots_with_cards:
        vpcd_card(personas[slot], slot=slot)
    with Terminal.open(config=_with(itype)) as terminal:
        card = terminal.read()
    assert card.reader == expected
    assert (card.cardholder.full_name == "张三") == (expected == SLOT0), "the data is that slot's card"


@pytest.mark.pcscd
def test_contact_only_ignores_a_card_on_the_pad(vpcd_card: pcsc_env.InsertCard) -> None:
    vpcd_card("typical", slot=1)
    with Terminal.open(config=_with(1)) as terminal, pytest.raises(NoCard):
        terminal.read()


@pytest.mark.pcscd
def test_auto_waits_on_both_slots_at_once(vpcd_card: pcsc_env.InsertCard) -> None:
    reader = open_reader(None, config=_with(3))
    assert not reader.card_present()
    timer = threading.Timer(0.5, lambda: vpcd_card("typical", slot=1))
    started = time.monotonic()
    timer.start()
    try:
        reader.wait_for_card(timeout=10)
    finally:
        timer.join()
    assert time.monotonic() - started < 9
    transport = reader.connect()
    assert transport.name == SLOT1
    transport.close()


@pytest.mark.pcscd
def test_the_sam_slot_is_never_read_as_the_residents_card(vpcd_card: pcsc_env.InsertCard) -> None:
    """A PSAM always sits in its slot; with no name configured the resident's card must still win."""
    config = Config(sam_reader=SLOT1)
    vpcd_card("not_ssc", slot=1)  # stands in for the PSAM: a card that is not an SSC
    vpcd_card("typical", slot=0)
    with Terminal.open(config=config) as terminal:
        assert terminal.read().reader == SLOT0


@pytest.mark.pcscd
def test_no_card_reader_left_names_the_readers_and_their_kinds() -> None:
    with pytest.raises(NoReader) as caught:
        open_reader(None, config=Config(sam_reader="Virtual PCD"))
    assert "(sam)" in caught.value.message and SLOT0 in caught.value.message
