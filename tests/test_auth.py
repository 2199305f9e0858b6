"""Card authentication through the facade (issue 4): PSAM, HSM two-step, software keys, photo.

In process the card and the PSAM are simulators (``sim:PERSONA``, ``sim:PSAM``); through pcscd
the card sits in vpcd slot 0 and the PSAM in slot 1, as on a kiosk terminal with a SAM slot.
The terminal side (``sscard.psam``) and the simulators implement docs/card-auth.md separately,
so agreement here means both read the spec the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from sscard.cli import main
from sscard.config import Config
from sscard.errors import (
    AlgorithmUnsupported,
    AuthRequired,
    CardChanged,
    CardNotGenuine,
    ConfigError,
    HsmResponseInvalid,
    PsamError,
    PsamKeyMissing,
    PsamMissing,
    SscardError,
    TerminalAuthFailed,
    UsageError,
)
from sscard.psam.crypto import Algorithm, CardFacts, build_factors, derive, encrypt, pad
from sscard.psam.hsm import HsmStep1
from sscard.psam.profile import load_profile
from sscard.readers import published_test_keys_path
from sscard.terminal import Terminal
from support import pcsc_env

PSAM = Config(key_service="psam", sam_reader="sim:psam", authenticate_card=True)


def terminal(persona: str, config: Config = PSAM) -> Terminal:
    return Terminal.open(f"sim:{persona}", config=config)


# -- reads that authenticate ----------------------------------------------------------------


@pytest.mark.parametrize(("persona", "name"), [("v3", "次仁·旺堆"), ("v3_3des", "周婷"), ("typical", "张三")])
def test_a_psam_unlocks_and_vouches_for_the_card(persona: str, name: str) -> None:
    with terminal(persona) as t:
        card = t.read()
    assert card.cardholder.full_name == name and card.cardholder.ssn
    assert not card.locked_elements
    assert card.authenticated_by and "PSAM" in card.authenticated_by
    assert card.to_json()["authenticated_by"] == card.authenticated_by


def test_without_a_key_service_a_v3_card_reads_ef05_and_names_the_locked_fields() -> None:
    with terminal("v3", Config()) as t:
        with pytest.raises(AuthRequired) as caught:
            t.read()
        card = t.read(require_cardholder=False)
    assert caught.value.code == "AUTH_REQUIRED" and "EF06" in caught.value.message
    assert card.issuer.card_number == "540001637" and card.issuer.spec_version == "3.00"
    assert card.locked_elements == ("ssn", "name", "gender", "nation", "birthplace", "birth_date")
    assert [w.code for w in card.warnings] == ["AUTH_REQUIRED"]
    assert card.cardholder.full_name is None and card.cardholder.ssn is None
    assert "authenticated_by" not in card.to_json()


def test_authentication_is_not_asked_for_unless_configured() -> None:
    with terminal("typical", dataclasses.replace(PSAM, authenticate_card=False)) as t:
        card = t.read()
    assert card.authenticated_by is None


@pytest.mark.parametrize(
    ("persona", "psam", "error", "code"),
    [
        ("counterfeit", "psam", CardNotGenuine, "CARD_NOT_GENUINE"),
        ("v3", "psam_wrong_keys", TerminalAuthFailed, "TERMINAL_AUTH_FAILED"),
        ("v3", "psam_no_rk", PsamKeyMissing, "PSAM_KEY_MISSING"),
        ("v3", "psam_3des_only", AlgorithmUnsupported, "ALGORITHM_UNSUPPORTED"),
        ("ssf33", "psam", AlgorithmUnsupported, "ALGORITHM_UNSUPPORTED"),
    ],
)
def test_authentication_failures_are_typed(persona: str, psam: str, error: type[SscardError], code: str) -> None:
    with terminal(persona, dataclasses.replace(PSAM, sam_reader=f"sim:{psam}")) as t, pytest.raises(error) as caught:
        t.read()
    assert caught.value.code == code
    assert caught.value.message and caught.value.message_zh
    assert t.card_identity is None, "no data of a refused card is kept"


def test_the_counterfeit_is_refused_by_auth_check_too() -> None:
    with terminal("typical") as t:
        assert "PSAM" in t.auth_check()
    with terminal("counterfeit") as t, pytest.raises(CardNotGenuine):
        t.auth_check()


def test_a_psam_answering_an_unknown_status_is_psam_error(tmp_path: Path) -> None:
    profile = Path(str(load_profile().source)).name
    assert profile == "default.toml"
    text = (Path(__file__).resolve().parents[1] / "src/sscard/psam/profiles/default.toml").read_text(encoding="utf-8")
    broken = tmp_path / "broken.toml"
    broken.write_text(text.replace('encrypt = "80FA0000"', 'encrypt = "80FA0101"'), encoding="utf-8")
    config = dataclasses.replace(PSAM, key_profile=str(broken))
    with terminal("typical", config) as t, pytest.raises(PsamError) as caught:
        t.auth_check()
    assert caught.value.to_dict()["sw"] == "6A86"


def test_a_card_that_is_not_a_psam_in_the_sam_slot_is_psam_missing() -> None:
    """What the simulator calls a PSAM answers DF01; a bank card in the SAM slot does not."""
    from sscard.psam.keys import PsamKeyService
    from sscard.sim import SimulatedCard, load_persona
    from sscard.transports.sim import SimReader

    bank = SimReader(SimulatedCard(load_persona("not_ssc")), "sim:bank-in-sam-slot").connect()
    service = PsamKeyService(bank, load_profile())
    profile = load_profile()
    with pytest.raises(PsamMissing):
        service.cryptogram(profile.ia, Algorithm.DES3, [bytes(8)], bytes(16))


# -- software keys ------------------------------------------------------------------------------


def test_software_keys_are_refused_unless_enabled() -> None:
    with terminal("v3", Config(key_service="software")) as t, pytest.raises(ConfigError) as caught:
        t.read()
    assert "allow_software" in caught.value.message


def test_software_keys_work_when_enabled_and_say_so_loudly(caplog: pytest.LogCaptureFixture) -> None:
    config = Config(key_service="software", allow_software_keys=True, authenticate_card=True)
    with caplog.at_level(logging.WARNING, logger="sscard.psam"), terminal("v3", config) as t:
        card = t.read()
    assert card.cardholder.full_name == "次仁·旺堆" and "TEST ONLY" in (card.authenticated_by or "")
    assert any("SOFTWARE KEYS IN USE" in r.message for r in caplog.records)


def test_hsm_service_needs_the_two_step_calls() -> None:
    with terminal("v3", Config(key_service="hsm")) as t, pytest.raises(UsageError):
        t.read()


# -- HSM two-step -------------------------------------------------------------------------------


def hsm(step1: HsmStep1) -> str:
    """The HSM's side, computed here with the published test keys (what a real HSM does inside)."""
    import tomllib

    keys = tomllib.loads(published_test_keys_path().read_text(encoding="utf-8"))["keysets"]["test"]
    suffix = "sm4" if step1.algorithm is Algorithm.SM4 else "3des"
    ia_master, rk_master = bytes.fromhex(keys[f"ia_{suffix}"]), bytes.fromhex(keys[f"rk_{suffix}"])
    split = [step1.ia_factors[i : i + 8] for i in range(0, len(step1.ia_factors), 8)]
    rk_split = [step1.rk_factors[i : i + 8] for i in range(0, len(step1.rk_factors), 8)]
    internal = encrypt(step1.algorithm, derive(step1.algorithm, ia_master, split), step1.ia_data)
    external = encrypt(
        step1.algorithm, derive(step1.algorithm, rk_master, rk_split), pad(step1.algorithm, step1.challenge)
    )
    return f"{internal.hex().upper()}|{external.hex().upper()}|"


@pytest.mark.parametrize("persona", ["v3", "v3_3des"])
def test_hsm_two_step_reads_a_v3_card(persona: str) -> None:
    config = Config(key_service="hsm", terminal_id="410100813475")
    with terminal(persona, config) as t:
        step1 = t.hsm_step1()
        line = step1.line()
        fields = line.split("|")
        assert len(fields) == 10 and fields[-1] == ""
        assert fields[0] == step1.region_code and fields[8] == "410100813475"
        assert fields[2] == ("03" if persona == "v3" else "01")
        assert HsmStep1.parse(line) == step1
        card = t.hsm_step2(line, hsm(step1))
    assert card.cardholder.ssn and card.authenticated_by == "HSM" and not card.locked_elements


def test_hsm_factors_are_the_profiles() -> None:
    with terminal("v3", Config(key_service="hsm")) as t:
        step1 = t.hsm_step1()
    facts = CardFacts(step1.identification_code, "540001637", bytes.fromhex("814E43238697150100E8B4F005"))
    profile = load_profile()
    assert step1.ia_factors == b"".join(build_factors(profile.ia.levels, facts))
    assert step1.rk_factors == b"".join(build_factors(profile.rkssse.levels, facts))


@pytest.mark.parametrize(
    "answer",
    ["", "garbage", "00|", "ZZ|00|", "00" * 16 + "|" + "00" * 3 + "|", "00" * 8 + "|" + "00" * 16 + "|", "a|b|c|"],
)
def test_a_garbage_hsm_answer_is_hsm_response_invalid(answer: str) -> None:
    with terminal("v3", Config(key_service="hsm")) as t:
        step1 = t.hsm_step1()
        with pytest.raises(HsmResponseInvalid) as caught:
            t.hsm_step2(step1, answer)
    assert caught.value.code == "HSM_RESPONSE_INVALID"


def test_a_wrong_hsm_cryptogram_is_refused_by_the_card() -> None:
    with terminal("v3", Config(key_service="hsm")) as t:
        step1 = t.hsm_step1()
        good = hsm(step1).split("|")
        with pytest.raises(TerminalAuthFailed):
            t.hsm_step2(step1, f"{good[0]}|{'00' * 16}|")


def test_a_wrong_hsm_internal_result_means_not_genuine() -> None:
    with terminal("v3", Config(key_service="hsm")) as t:
        step1 = t.hsm_step1()
        good = hsm(step1).split("|")
        with pytest.raises(CardNotGenuine):
            t.hsm_step2(step1, f"{'00' * 16}|{good[1]}|")


def test_hsm_step2_on_another_card_is_card_changed() -> None:
    with terminal("v3", Config(key_service="hsm")) as t:
        step1 = t.hsm_step1()
    with terminal("v3_3des", Config(key_service="hsm")) as other, pytest.raises(CardChanged):
        other.hsm_step2(step1, hsm(step1))


@pytest.mark.parametrize("line", ["", "a|b|", "|" * 9, "5401|XX|03|00|00|00|00|00|1|"])
def test_a_malformed_step1_line_is_refused(line: str) -> None:
    with pytest.raises(HsmResponseInvalid):
        HsmStep1.parse(line)


# -- photo ----------------------------------------------------------------------------------------


def test_photo_with_progress_after_external_authentication() -> None:
    seen: list[tuple[int, int | None]] = []
    with terminal("v3") as t:
        photo = t.read_photo(lambda done, total: seen.append((done, total)))
    assert photo.startswith(b"\xff\xd8") and photo.endswith(b"\xff\xd9")
    assert seen and seen[-1][0] == len(photo)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_photo_of_a_locked_card_without_keys_is_auth_required() -> None:
    with terminal("v3", Config()) as t, pytest.raises(AuthRequired) as caught:
        t.read_photo()
    assert "EF08" in caught.value.message


def test_cli_photo_writes_the_file(tmp_path: Path) -> None:
    import io

    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "photo.jpg"
    argv = ["read", "--reader", "sim:v3", "--key-service", "psam", "--sam-reader", "sim:psam", "--photo", str(target)]
    assert main(argv, out=out, err=err) == 0, err.getvalue()
    assert target.read_bytes().startswith(b"\xff\xd8")
    assert "照片" in err.getvalue() and "bytes written" in err.getvalue()


# -- through pcscd: card in slot 0, PSAM in slot 1 --------------------------------------------

SLOT0, SLOT1 = pcsc_env.reader_name(0), pcsc_env.reader_name(1)
KIOSK = Config(reader=SLOT0, sam_reader=SLOT1, key_service="psam", authenticate_card=True)


@pytest.fixture
def psam_in_slot1(vpcd_card: pcsc_env.InsertCard) -> None:
    from sscard.sim import SimulatedPsam, VpcdLink, load_psam

    link = VpcdLink(SimulatedPsam(load_psam("psam")), port=VpcdLink.port_for_slot(1))
    link.insert()
    try:
        pcsc_env.wait_for_reader(SLOT1, present=True)
        yield
    finally:
        link.remove()
        pcsc_env.wait_for_reader(SLOT1, present=False)


@pytest.mark.pcscd
@pytest.mark.usefixtures("psam_in_slot1")
def test_v3_card_read_completely_through_pcscd_with_a_psam(vpcd_card: pcsc_env.InsertCard) -> None:
    vpcd_card("v3")
    with Terminal.open(config=KIOSK) as t:
        card = t.read()
        photo = t.read_photo()
    assert card.reader == SLOT0 and card.cardholder.full_name == "次仁·旺堆" and card.cardholder.ssn
    assert card.authenticated_by == f"PSAM in {SLOT1!r} (profile default)"
    assert photo.startswith(b"\xff\xd8")


@pytest.mark.pcscd
@pytest.mark.usefixtures("psam_in_slot1")
def test_counterfeit_refused_through_pcscd(vpcd_card: pcsc_env.InsertCard) -> None:
    vpcd_card("counterfeit")
    with Terminal.open(config=KIOSK) as t, pytest.raises(CardNotGenuine):
        t.read()


@pytest.mark.pcscd
def test_an_empty_sam_slot_is_psam_missing(vpcd_card: pcsc_env.InsertCard) -> None:
    vpcd_card("v3")
    with Terminal.open(config=KIOSK) as t, pytest.raises(PsamMissing) as caught:
        t.read()
    assert "empty" in caught.value.message


@pytest.mark.pcscd
def test_no_sam_reader_at_all_is_psam_missing(vpcd_card: pcsc_env.InsertCard) -> None:
    vpcd_card("v3")
    config = dataclasses.replace(KIOSK, sam_reader=None)
    with Terminal.open(config=config) as t, pytest.raises(PsamMissing) as caught:
        t.read()
    assert caught.value.code == "PSAM_MISSING" and "no SAM reader" in caught.value.message


@pytest.mark.pcscd
def test_a_bank_card_in_the_sam_slot_is_psam_missing(vpcd_card: pcsc_env.InsertCard) -> None:
    vpcd_card("v3")
    vpcd_card("not_ssc", slot=1)
    with Terminal.open(config=KIOSK) as t, pytest.raises(PsamMissing) as caught:
        t.read()
    assert "no PSAM application" in caught.value.message


@pytest.mark.pcscd
def test_hsm_two_step_in_two_processes_through_pcscd(vpcd_card: pcsc_env.InsertCard) -> None:
    """``sscard read --hsm-step1`` then ``--hsm-step2`` as separate commands, the card left powered."""
    vpcd_card("v3")
    base = [sys.executable, "-m", "sscard.cli", "read", "--reader", SLOT0, "--key-service", "hsm"]
    first = subprocess.run([*base, "--hsm-step1"], capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    line = first.stdout.strip()
    answer = hsm(HsmStep1.parse(line))
    second = subprocess.run(
        [*base, "--hsm-step2", "--json"], input=f"{line}\n{answer}\n", capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert '"name": "次仁·旺堆"' in second.stdout and '"authenticated_by": "HSM"' in second.stdout


def test_a_plain_read_needs_nothing_of_authentication() -> None:
    """Without a key service the algorithm flag is not interpreted (an unknown one reads fine) and
    the authentication code and its cryptography library are not even loaded."""
    from sscard.sim import load_persona

    persona = load_persona("typical")
    unknown = dataclasses.replace(persona, behaviour=dataclasses.replace(persona.behaviour, algorithm=0x04))
    from sscard.sim import SimulatedCard
    from sscard.transports.sim import SimReader

    with Terminal(SimReader(SimulatedCard(unknown), "sim:flag-04"), config=Config()) as t:
        assert t.read().cardholder.full_name == "张三"
    with (
        Terminal(SimReader(SimulatedCard(unknown), "sim:flag-04"), config=PSAM) as t,
        pytest.raises(AlgorithmUnsupported),
    ):
        t.read()
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom sscard.terminal import Terminal\n"
            "Terminal.open('replay:fixtures/typical-read.apdu').read()\n"
            "print('cryptography' in sys.modules, 'sscard.psam.crypto' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["False", "False"]
