"""The card-application seam (issue 12 items 1, 2, 3, 5) through the public facade.

Every read here goes through ``Terminal.read()``: in process over the simulated card, and (marked
``pcscd``, under the pcscd lock) through the real pcscd + vpcd with ``Terminal.open("Virtual PCD
00 00")``.  The expected values come from the persona TOML files.  The card's own command log
shows what reached the card: the bank read never sends a VERIFY.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sscard.bank import BankCard, mask_pan
from sscard.cardapp import APPLICATIONS, AppEntry, NoApplication, ReadContext, recorded_applications
from sscard.config import Config
from sscard.errors import BadRecord, CardRemoved, NotSsc, UsageError
from sscard.health import HealthCard
from sscard.sim import SimulatedCard, load_persona
from sscard.terminal import CardRead, Terminal
from sscard.transports.sim import SimReader
from support import pcsc_env
from test_terminal import TODAY, Wire, persona_data

ROOT = Path(__file__).resolve().parents[1]
VERIFY = 0x20
SOFTWARE_KEYS = Config(key_service="software", allow_software_keys=True)


def sim_terminal(persona: str, config: Config | None = None, **card: Any) -> tuple[Terminal, SimulatedCard]:
    simulated = SimulatedCard(load_persona(persona), **card)
    return Terminal(SimReader(simulated, f"sim:{persona}"), config=config or Config()), simulated


def no_verify(card: SimulatedCard) -> bool:
    return all(header[1] != VERIFY for header in card.command_log)


# -- each card read with its own kind -----------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "kind", "result"),
    [("typical", "ssc", CardRead), ("bank_only", "bank", BankCard), ("health", "health", HealthCard)],
)
def test_read_gives_whichever_application_the_card_carries(persona: str, kind: str, result: type) -> None:
    with Terminal.open(f"sim:{persona}", config=Config()) as terminal:
        card = terminal.read(today=TODAY)
    assert isinstance(card, result) and card.kind == kind and card.to_json()["kind"] == kind
    assert card.reader == f"sim:{persona}" and card.atr.hex().upper() == persona_data(persona)["atr"].upper()


def test_an_ssc_costs_no_extra_apdu_and_nothing_but_the_ssc_is_asked() -> None:
    auto, pinned = Wire(), Wire()
    with Terminal.open("sim:typical", trace_sink=auto, config=Config()) as terminal:
        terminal.read(today=TODAY)
    with Terminal.open("sim:typical", trace_sink=pinned, config=Config()) as terminal:
        terminal.read("ssc", today=TODAY)
    assert auto.lines == pinned.lines
    assert auto.commands()[0].startswith("00A404000F7378312E73682E")  # SELECT SSSE first
    assert not auto.commands("00A40000") and not auto.commands("00A404000E325041")  # no DDF1, no PPSE


def test_the_ssc_json_contract_only_gains_kind() -> None:
    with Terminal.open("sim:typical", config=Config()) as terminal:
        out = terminal.read(today=TODAY).to_json()
    assert list(out) == ["kind", "card", "cardholder", "warnings"] and out["kind"] == "ssc"


def test_a_bank_only_card_is_read_without_a_pin() -> None:
    terminal, simulated = sim_terminal("bank_only")
    with terminal:
        card = terminal.read()
    declared = persona_data("bank_only")["bank"]
    assert isinstance(card, BankCard) and card.clear_pan() == declared["pan"]
    assert card.to_json()["pan"] == mask_pan(declared["pan"]) and declared["pan"] not in str(card.to_json())
    assert no_verify(simulated)
    assert terminal.card_identity is None  # not an SSC read: PIN operations do not compare against it


def test_read_app_bank_on_the_3_00_ssc_gives_its_pan_masked_and_sends_no_pin() -> None:
    terminal, simulated = sim_terminal("v3_bank")
    with terminal:
        card = terminal.read(app="bank")
    pan = persona_data("v3_bank")["bank"]["pan"]
    assert card.kind == "bank" and card.pan == mask_pan(pan) and card.to_json()["pan"] == mask_pan(pan)
    assert pan not in repr(card)
    assert no_verify(simulated)
    # SELECT PPSE, SELECT AID, GPO, the AFL's records: the SSC application is not even selected.
    assert [h[1] for h in simulated.command_log if h[1] != 0xC0][:3] == [0xA4, 0xA4, 0xA8]


def test_the_3_00_ssc_read_as_ssc_and_as_bank() -> None:
    terminal, simulated = sim_terminal("v3_bank", SOFTWARE_KEYS)
    with terminal:
        ssc = terminal.read(today=TODAY)
        bank = terminal.read("bank")
    declared = persona_data("v3_bank")
    assert isinstance(ssc, CardRead) and ssc.kind == "ssc"
    assert ssc.cardholder.full_name == declared["ef06"]["name"] and ssc.locked_elements == ()
    assert isinstance(bank, BankCard) and bank.clear_pan() == declared["bank"]["pan"]
    assert no_verify(simulated)


def test_a_card_with_none_of_the_applications_is_not_ssc_naming_them() -> None:
    terminal, simulated = sim_terminal("not_ssc")
    with terminal, pytest.raises(NotSsc) as caught:
        terminal.read()
    error = caught.value
    assert isinstance(error, NoApplication) and error.code == "NOT_SSC"
    assert error.to_dict()["applications"] == ["ssc", "health", "bank"]
    for name in ("ssc (social security card)", "health (resident health card)", "bank (bank application)"):
        assert name in error.message
    assert "6985" in error.message  # its debit AID answers SELECT, but GPO refuses: eliminated (EMV)
    assert error.message_zh == "此卡不是社会保障卡。"  # the existing contract
    assert no_verify(simulated)


def test_a_pinned_application_the_card_lacks_is_not_ssc_naming_it() -> None:
    with Terminal.open("sim:typical", config=Config()) as terminal:
        for app in ("bank", "health"):
            with pytest.raises(NotSsc) as caught:
                terminal.read(app)
            assert caught.value.to_dict()["applications"] == [app]
    with Terminal.open("sim:bank_only", config=Config()) as terminal, pytest.raises(NotSsc) as caught:
        terminal.read("ssc")
    assert caught.value.to_dict()["applications"] == ["ssc"]


def test_an_unknown_application_is_a_usage_error_before_any_apdu() -> None:
    wire = Wire()
    with (
        Terminal.open("sim:typical", trace_sink=wire, config=Config()) as terminal,
        pytest.raises(UsageError) as caught,
    ):
        terminal.read("library")
    assert "ssc, health, bank" in caught.value.message and wire.lines == []


def test_signing_in_and_the_national_call_stay_the_social_security_cards() -> None:
    from sscard.national import iReadCardBas

    with Terminal.open("sim:bank_only", config=Config()) as terminal:
        with pytest.raises(NotSsc):
            terminal.sign_in(require_pin=False)
        assert iReadCardBas(terminal)[0] == -1  # NOT_SSC, not a crash on a BankCard


# -- the health card through the terminal's [keys] wiring ------------------------------------------


def test_health_without_a_key_service_gives_ef05_and_auth_required() -> None:
    terminal, simulated = sim_terminal("health_locked_ef06")
    with terminal:
        card = terminal.read()  # require_cardholder does not apply: EF05 is what a desk needs
    assert isinstance(card, HealthCard) and card.cardholder is None
    assert [w.code for w in card.warnings] == ["AUTH_REQUIRED"]
    assert (
        card.to_json()["cardholder"] is None
        and card.card_number == persona_data("health_locked_ef06")["health"]["ef05"]["card_number"]
    )
    assert 0x82 not in [h[1] for h in simulated.command_log]  # nothing sent to unlock EF06


def test_health_with_the_configured_key_service_reads_ef06() -> None:
    terminal, simulated = sim_terminal("health_locked_ef06", SOFTWARE_KEYS)
    with terminal:
        card = terminal.read()
    assert isinstance(card, HealthCard) and card.cardholder is not None
    assert card.cardholder.name == persona_data("health_locked_ef06")["health"]["ef06"]["name"]
    assert card.authenticated_by is not None and card.warnings == ()
    headers = [h.hex().upper() for h in simulated.command_log if h[1] != 0xC0]
    challenge = headers.index("00840000")
    assert headers[challenge + 1].startswith("0082000A") and no_verify(simulated)


def test_a_bad_health_record_is_bad_record_through_the_facade() -> None:
    from sscard.health import RecordFlaggedInvalid

    with Terminal.open("sim:health_bad_record", config=Config()) as terminal, pytest.raises(RecordFlaggedInvalid):
        terminal.read()


# -- a card pulled mid-operation -------------------------------------------------------------------


def _gpo_index(persona: str, app: str | None) -> int:
    terminal, simulated = sim_terminal(persona)
    with terminal:
        terminal.read(app)
    return [h[1] for h in simulated.command_log].index(0xA8) + 1


@pytest.mark.parametrize(("persona", "app"), [("bank_only", None), ("v3_bank", "bank")])
def test_a_card_pulled_mid_gpo_is_card_removed_through_the_facade(persona: str, app: str | None) -> None:
    terminal, simulated = sim_terminal(persona, remove_during=_gpo_index(persona, app))
    result = None
    with terminal, pytest.raises(CardRemoved):
        result = terminal.read(app)
    assert result is None and simulated.command_log[-1][1] == 0xA8 and no_verify(simulated)
    assert terminal.transport is None  # the dead connection was dropped


@pytest.mark.parametrize("persona", ["bank_only", "health", "not_ssc"])
def test_pulled_at_every_apdu_of_the_recognition_and_read_is_card_removed(persona: str) -> None:
    terminal, probe = sim_terminal(persona)
    with terminal, pytest.raises(NotSsc) if persona == "not_ssc" else contextlib.nullcontext():
        terminal.read()
    for index in range(1, probe.apdu_count):
        terminal, _ = sim_terminal(persona, remove_after=index)
        with terminal, pytest.raises(CardRemoved):
            terminal.read()


# -- the registry ---------------------------------------------------------------------------------


class LibraryCardApp:
    """A worked example (docs/architecture.md): an application recognised by its ATR alone."""

    ATR = bytes.fromhex("3B0211AA")

    def __init__(self, context: ReadContext) -> None:
        self.context = context

    def select(self) -> None:
        if self.context.atr != self.ATR:
            raise NotSsc("not a library card ATR")

    def read(self) -> LibraryCard:
        return LibraryCard(self.context.reader, self.context.atr)


class LibraryCard:
    kind = "library"

    def __init__(self, reader: str, atr: bytes) -> None:
        self.reader, self.atr = reader, atr

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "atr": self.atr.hex().upper()}


LIBRARY = AppEntry("library", "test_cardapp:LibraryCardApp", "library card", "借书卡")


def test_an_application_is_added_with_a_registry_row_not_a_facade_edit() -> None:
    registry = APPLICATIONS.with_entry(LIBRARY)
    assert registry.names == ("ssc", "health", "bank", "library") and APPLICATIONS.names == ("ssc", "health", "bank")
    library = dataclasses.replace(load_persona("not_ssc"), atr=LibraryCardApp.ATR)
    reader = SimReader(SimulatedCard(library), "sim:library")
    with Terminal(reader, config=Config(), applications=registry) as terminal:
        card = terminal.read()
    assert card.kind == "library" and card.to_json() == {"kind": "library", "atr": "3B0211AA"}
    with Terminal.open("sim:typical", config=Config(), applications=registry) as terminal:
        assert terminal.read(today=TODAY).kind == "ssc"  # the SSC still first
    plain = SimReader(SimulatedCard(load_persona("not_ssc")), "sim:x")
    with Terminal(plain, applications=registry) as terminal, pytest.raises(NotSsc) as caught:
        terminal.read()
    assert caught.value.to_dict()["applications"] == ["ssc", "health", "bank", "library"]
    assert "not a library card ATR" in caught.value.message


def test_registry_rows_name_card_application_modules_that_exist() -> None:
    """The rows are data, so the architecture test cannot see their imports: check them here."""
    from test_architecture import layer_of

    for entry in APPLICATIONS:
        module = entry.target.partition(":")[0]
        assert layer_of(module) == 3, module
        assert callable(entry.load())
    with pytest.raises(ValueError, match="repeat"):
        APPLICATIONS.with_entry(AppEntry("ssc", "x:y", "x", "某"))


def test_reading_an_ssc_imports_neither_the_bank_nor_the_health_module() -> None:
    code = (
        "import sys\nfrom sscard.config import Config\nfrom sscard.terminal import Terminal\n"
        "Terminal.open('sim:typical', config=Config()).read(require_cardholder=False)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('sscard.bank', 'sscard.health', 'sscard.apps'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "['sscard.apps', 'sscard.apps.ssc']"


def test_a_trace_names_the_applications_its_read_tried() -> None:
    assert recorded_applications({}) == ("ssc",)  # recorded before the seam: the SSC's read only
    assert recorded_applications({"applications": "ssc health bank"}) == ("ssc", "health", "bank")
    assert APPLICATIONS.candidates(None, ("ssc",)) == (APPLICATIONS.get("ssc"),)
    assert APPLICATIONS.candidates("bank", ("ssc",)) == (APPLICATIONS.get("bank"),)  # a pinned app is asked anyway


# -- through pcscd + vpcd ---------------------------------------------------------------------------


def open_vpcd(reader: str, config: Config | None = None) -> Terminal:
    return Terminal.open(reader, config=config or Config())


@pytest.mark.pcscd
def test_each_card_read_with_its_own_kind_through_pcscd(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str) -> None:
    for persona, kind in (("typical", "ssc"), ("bank_only", "bank"), ("health", "health")):
        link = vpcd_card(persona)
        with open_vpcd(vpcd_reader) as terminal:
            card = terminal.read(today=TODAY)
        assert card.kind == kind and card.to_json()["kind"] == kind, persona
        assert card.reader == vpcd_reader
        assert no_verify(link.card)
        link.remove()
        pcsc_env.wait_for_reader(vpcd_reader, present=False)


@pytest.mark.pcscd
def test_the_3_00_ssc_as_ssc_and_as_bank_through_pcscd(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str) -> None:
    link = vpcd_card("v3_bank")
    declared = persona_data("v3_bank")
    with open_vpcd(vpcd_reader, SOFTWARE_KEYS) as terminal:
        ssc = terminal.read(today=TODAY)
        bank = terminal.read(app="bank")
    assert ssc.kind == "ssc" and ssc.cardholder.full_name == declared["ef06"]["name"]
    assert bank.kind == "bank" and bank.to_json()["pan"] == mask_pan(declared["bank"]["pan"])
    assert no_verify(link.card)


@pytest.mark.pcscd
def test_read_app_bank_without_keys_through_pcscd(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str) -> None:
    link = vpcd_card("v3_bank")
    with open_vpcd(vpcd_reader) as terminal:
        bank = terminal.read(app="bank")
    assert bank.pan == mask_pan(persona_data("v3_bank")["bank"]["pan"]) and no_verify(link.card)


@pytest.mark.pcscd
def test_a_card_pulled_mid_gpo_through_pcscd_and_the_facade(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str) -> None:
    link = vpcd_card("bank_only", remove_during=_gpo_index("bank_only", None))
    result = None
    with open_vpcd(vpcd_reader) as terminal, pytest.raises(CardRemoved):
        result = terminal.read()
    assert result is None and link.card.command_log[-1][1] == 0xA8 and no_verify(link.card)


@pytest.mark.pcscd
def test_not_ssc_through_pcscd_names_the_applications(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str) -> None:
    vpcd_card("not_ssc")
    with open_vpcd(vpcd_reader) as terminal, pytest.raises(NotSsc) as caught:
        terminal.read()
    assert caught.value.to_dict()["applications"] == ["ssc", "health", "bank"]


@pytest.mark.pcscd
def test_health_with_keys_through_pcscd(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str) -> None:
    vpcd_card("health_locked_ef06")
    with open_vpcd(vpcd_reader) as terminal:
        locked = terminal.read()
    with open_vpcd(vpcd_reader, SOFTWARE_KEYS) as terminal:
        unlocked = terminal.read()
    assert isinstance(locked, HealthCard) and locked.cardholder is None
    assert isinstance(unlocked, HealthCard) and unlocked.cardholder is not None and unlocked.authenticated_by


# -- recorded health fixtures (fixtures/health/) -----------------------------------------------------
#
# Recorded through pcscd + vpcd with Terminal.open(...).read() and a RecordingTransport as the
# terminal's transport wrapper (what `sscard record` does), the header naming the applications the
# read tried.  Re-record with
#   SSCARD_RECORD_FIXTURES=1 .venv/bin/pytest -m pcscd tests/test_cardapp.py -k recording
# tests/test_fixtures.py replays them strictly through the facade.

HEALTH_FIXTURES = ROOT / "fixtures" / "health"
HEALTH_RECORDED = ("health", "health_locked_ef06", "health_bad_record")


@pytest.mark.pcscd
@pytest.mark.parametrize("persona", HEALTH_RECORDED)
def test_recording_health_reads_through_pcscd_matches_the_fixture(
    vpcd_card: pcsc_env.InsertCard, vpcd_reader: str, persona: str
) -> None:
    from sscard import __version__
    from sscard.cardapp import APPLICATIONS_HEADER, applications_header
    from sscard.transports.replay import RecordingTransport
    from sscard.transports.trace import Trace

    vpcd_card(persona)
    recorders: list[RecordingTransport] = []
    source = f"sscard simulator persona '{persona}' via VpcdLink, read through pcscd + vpcd ('{vpcd_reader}')"

    def wrap(transport: Any) -> Any:
        recorders.append(RecordingTransport(transport, source))
        return recorders[-1]

    with Terminal.open(vpcd_reader, config=Config(), transport_wrapper=wrap) as terminal:
        with contextlib.suppress(BadRecord):  # a failing read is worth a fixture too
            terminal.read()
        trace = recorders[-1].trace
        trace.header["operation"] = "read"
        trace.header[APPLICATIONS_HEADER] = applications_header(terminal.applications)
    assert trace.header["sscard"] == __version__
    path = HEALTH_FIXTURES / f"{persona}-read.apdu"
    if os.environ.get("SSCARD_RECORD_FIXTURES") == "1":
        path.parent.mkdir(exist_ok=True)
        trace.save(path)
    committed = Trace.load(path)
    assert [(e.command, e.response) for e in trace.exchanges] == [(e.command, e.response) for e in committed.exchanges]
    assert committed.header[APPLICATIONS_HEADER] == "ssc health bank"
