"""Hospital front desks (issue 14 items 1 and 5): any credential → the medical insurance
platform's person-query fields, through the Python API and ``sscard medical credential``.

Real pseudo-terminals for the simulated QR scanner and ID-card reader (pyserial on the other end),
the simulated SSC in process and through pcscd + vpcd, and a simulated platform on 127.0.0.1 for
the e-voucher (tests/test_medical_ec.py tests the resolver itself).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sscard.cli import main
from sscard.config import Config
from sscard.credentials import CredentialKind
from sscard.errors import PinBlocked, PinIncorrect, ScanRejected, Timeout
from sscard.medical import FIELDS, EcPerson, MedicalCredential, medical_credential, pin_verifier
from sscard.sim import SimulatedCard, load_persona
from sscard.sim.serial_idcard import SimulatedIdCardReader, load_idcard
from sscard.sim.serial_qr import SimulatedQrScanner
from sscard.ssc.pin import Pin
from sscard.terminal import Terminal
from sscard.transports.sim import SimReader
from support import pcsc_env
from support.ec_platform import PERSON, Platform, answer, send, serve

EVOUCHER = "4243754826492874240001130000"  # docs/card-reference.md §9.1
ZHANGSAN_ID = "110101198503071235"


@pytest.fixture
def qr(tmp_path: Path) -> Iterator[SimulatedQrScanner]:
    with SimulatedQrScanner(link=tmp_path / "sscard-qr") as scanner:
        yield scanner


@pytest.fixture
def idcard(tmp_path: Path) -> Iterator[SimulatedIdCardReader]:
    with SimulatedIdCardReader(link=tmp_path / "sscard-idcard") as reader:
        yield reader


@pytest.fixture
def platform() -> Iterator[Platform]:
    yield from serve(Platform(lambda handler, _body: send(handler, answer(data=PERSON))))


def empty_reader() -> SimReader:
    reader = SimReader(SimulatedCard(load_persona("typical")), "sim:desk")
    reader.remove()
    return reader


def desk(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader, **changes: object) -> Config:
    values: dict[str, object] = {"qr_port": str(qr.path), "idcard_port": str(idcard.path)}
    values.update(changes)
    return Config(**values)  # type: ignore[arg-type]


def later(seconds: float, action: object) -> threading.Timer:
    timer = threading.Timer(seconds, action)  # type: ignore[arg-type]
    timer.start()
    return timer


def scan_when_ready(qr: SimulatedQrScanner, code: str = EVOUCHER) -> threading.Timer:
    return later(0.2, lambda: qr.wait_for_reader(5) and qr.scan(code))


# --- the Python API: each credential → its mdtrt_cert_type and number ---------------------------


def test_an_ssc_is_03_with_its_ssn_and_card_id_code(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    reader = empty_reader()
    terminal = Terminal(reader, config=desk(qr, idcard))
    timer = later(0.3, lambda: reader.insert(SimulatedCard(load_persona("typical"))))
    found = medical_credential(terminal, timeout=10)
    timer.join()
    card = found.credential.card
    assert found.credential.kind is CredentialKind.SSC_CARD and card is not None
    assert found.fields() == {
        "mdtrt_cert_type": "03",
        "mdtrt_cert_no": card.cardholder.ssn,
        "card_sn": card.issuer.identification_code.hex if card.issuer.identification_code else None,
        "psn_cert_type": "01",
        "certno": card.cardholder.ssn,
        "psn_name": card.cardholder.full_name,
    }
    assert found.card_sn and found.resolved
    assert list(found.fields()) == list(FIELDS) and all(isinstance(v, str) for v in found.fields().values())
    assert found.to_json() == {**found.fields(), "resolved": True, "kind": "ssc_card", "also_presented": []}
    assert card.cardholder.ssn not in repr(found) and "张三" not in repr(found)


def test_an_id_card_is_02_with_its_number(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    terminal = Terminal(empty_reader(), config=desk(qr, idcard, medical_psn_cert_type="99"))
    timer = later(0.3, lambda: idcard.place(load_idcard("zhangsan")))
    found = medical_credential(terminal, timeout=10)
    timer.join()
    assert found.fields() == {
        "mdtrt_cert_type": "02",
        "mdtrt_cert_no": ZHANGSAN_ID,
        "card_sn": "",
        "psn_cert_type": "99",  # [medical] psn_cert_type overrides the unconfirmed default
        "certno": ZHANGSAN_ID,
        "psn_name": "张三",
    }
    assert found.resolved and found.credential.kind is CredentialKind.ID_CARD


def test_an_evoucher_without_a_resolver_is_01_with_the_raw_code_unresolved(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader
) -> None:
    terminal = Terminal(empty_reader(), config=desk(qr, idcard))
    timer = scan_when_ready(qr)
    found = medical_credential(terminal, timeout=10)
    timer.join()
    assert found.fields() == {
        "mdtrt_cert_type": "01",
        "mdtrt_cert_no": EVOUCHER,
        "card_sn": "",
        "psn_cert_type": "",
        "certno": "",
        "psn_name": "",
    }
    assert found.resolved is False and found.to_json()["resolved"] is False and found.person is None


def test_an_evoucher_resolved_through_the_platform_is_01_with_the_ectoken(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader, platform: Platform
) -> None:
    from sscard.medical import resolver_from_config

    config = desk(qr, idcard, medical_ec_url=platform.url, medical_org_id="H41010000001")
    terminal = Terminal(empty_reader(), config=config)
    timer = scan_when_ready(qr)
    found = medical_credential(terminal, timeout=10, resolver=resolver_from_config(config))
    timer.join()
    assert found.fields() == {
        "mdtrt_cert_type": "01",
        "mdtrt_cert_no": PERSON["ecToken"],
        "card_sn": "",
        "psn_cert_type": PERSON["idType"],
        "certno": PERSON["idNo"],
        "psn_name": PERSON["userName"],
    }
    assert found.resolved and isinstance(found.person, EcPerson)
    assert json.loads(platform.requests[0][1])["data"]["ecQrCode"] == EVOUCHER


def test_another_qr_code_is_rejected_not_taken_for_an_evoucher(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader
) -> None:
    terminal = Terminal(empty_reader(), config=desk(qr, idcard))
    timer = scan_when_ready(qr, "6212345678901234567")  # a payment code: unknown kind
    with pytest.raises(ScanRejected) as caught:
        medical_credential(terminal, timeout=10)
    timer.join()
    assert caught.value.to_dict()["reason"] == "not_medical_evoucher" and caught.value.retriable


def test_nothing_offered_is_a_timeout(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    with pytest.raises(Timeout):
        medical_credential(Terminal(empty_reader(), config=desk(qr, idcard)), timeout=0.5)


def test_the_sources_can_be_limited(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    """qr=False: a scan is not waited for, the ID card that comes later wins."""
    terminal = Terminal(empty_reader(), config=desk(qr, idcard))
    timers = [scan_when_ready(qr), later(0.6, lambda: idcard.place(load_idcard("zhangsan")))]
    found = medical_credential(terminal, timeout=10, qr=False)
    for timer in timers:
        timer.join()
    assert found.mdtrt_cert_type == "02"


def test_the_id_card_and_the_ssc_at_once_first_wins_and_the_other_is_still_there(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader
) -> None:
    """Both presented: one wins, the other is neither read into this result nor consumed: the next
    call returns it."""
    reader = SimReader(SimulatedCard(load_persona("typical")), "sim:desk")  # the SSC is already in
    idcard.place(load_idcard("zhangsan"))
    terminal = Terminal(reader, config=desk(qr, idcard))
    first = medical_credential(terminal, timeout=10)
    assert first.mdtrt_cert_type in ("02", "03")
    # The one that lost is reported (nothing silently dropped): the ID card if the SSC won — its
    # source had found it — or the SSC still in the reader if the ID card won.
    other = CredentialKind.ID_CARD if first.mdtrt_cert_type == "03" else CredentialKind.SSC_CARD
    assert first.credential.also_presented == (other,)
    assert first.to_json()["also_presented"] == [other.value]
    if first.mdtrt_cert_type == "03":
        second = medical_credential(terminal, timeout=10, card=False)
        assert second.mdtrt_cert_type == "02" and second.certno == ZHANGSAN_ID
    else:
        second = medical_credential(terminal, timeout=10, idcard=False)
        assert second.mdtrt_cert_type == "03" and second.card_sn


# --- the SSC's PIN (CARD_PASSTYPE "1") ---------------------------------------------------------


def _ssc_terminal(
    qr: SimulatedQrScanner, idcard: SimulatedIdCardReader, persona: str = "typical"
) -> tuple[Terminal, SimulatedCard]:
    card = SimulatedCard(load_persona(persona))
    return Terminal(SimReader(card, "sim:desk"), config=desk(qr, idcard)), card


def test_the_pin_is_verified_once_for_an_ssc(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    terminal, card = _ssc_terminal(qr, idcard)
    pin = Pin.from_text("123456")
    found = medical_credential(terminal, timeout=10, verify_pin=pin_verifier(pin))
    assert found.mdtrt_cert_type == "03" and card.tries_left == 3 and pin.wiped


def test_a_wrong_pin_is_pin_incorrect_and_not_retried(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    terminal, card = _ssc_terminal(qr, idcard)
    pin = Pin.from_text("000000")
    with pytest.raises(PinIncorrect) as caught:
        medical_credential(terminal, timeout=10, verify_pin=pin_verifier(pin))
    assert card.tries_left == 2 and caught.value.to_dict()["tries_left"] == 2 and pin.wiped  # one try, not two


def test_a_blocked_pin_is_not_asked_for(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    terminal, card = _ssc_terminal(qr, idcard, "pin_blocked")
    asked: list[bool] = []

    def ask() -> str:
        asked.append(True)
        return "123456"

    with pytest.raises(PinBlocked):
        medical_credential(terminal, timeout=10, verify_pin=pin_verifier(ask))
    assert asked == [] and card.tries_left == 0


def test_no_pin_is_asked_for_an_id_card(qr: SimulatedQrScanner, idcard: SimulatedIdCardReader) -> None:
    asked: list[bool] = []
    terminal = Terminal(empty_reader(), config=desk(qr, idcard))
    timer = later(0.3, lambda: idcard.place(load_idcard("zhangsan")))
    found = medical_credential(terminal, timeout=10, verify_pin=lambda _t: asked.append(True))
    timer.join()
    assert found.mdtrt_cert_type == "02" and asked == []


def test_the_result_is_frozen_and_its_fields_are_the_platforms() -> None:
    assert FIELDS == ("mdtrt_cert_type", "mdtrt_cert_no", "card_sn", "psn_cert_type", "certno", "psn_name")
    assert MedicalCredential.__dataclass_params__.frozen  # type: ignore[attr-defined]


# --- the command line: sscard medical credential ------------------------------------------------


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err, stdin=io.StringIO(stdin))
    return status, out.getvalue(), err.getvalue()


def write_config(tmp_path: Path, qr: SimulatedQrScanner, idcard: SimulatedIdCardReader, extra: str = "") -> Path:
    path = tmp_path / "sscard.toml"
    path.write_text(f'[qr]\nport = "{qr.path}"\n\n[idcard]\nport = "{idcard.path}"\n{extra}', encoding="utf-8")
    return path


@pytest.mark.pcscd
def test_cli_an_ssc_through_pcscd_and_vpcd(
    vpcd_card: pcsc_env.InsertCard,
    vpcd_reader: str,
    qr: SimulatedQrScanner,
    idcard: SimulatedIdCardReader,
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, qr, idcard, '\n[medical]\ncard_passtype = "1"\n')
    timer = later(0.3, lambda: vpcd_card("typical"))
    status, out, err = run(
        "medical", "credential", "--reader", vpcd_reader, "--json", "--timeout", "20", "--pin-stdin",
        "--config", str(config), stdin="123456\n",
    )  # fmt: skip
    timer.join()
    assert status == 0, err
    data = json.loads(out)
    assert data["mdtrt_cert_type"] == "03" and data["mdtrt_cert_no"] == ZHANGSAN_ID and data["certno"] == ZHANGSAN_ID
    assert len(data["card_sn"]) == 32 and data["psn_name"] == "张三" and data["resolved"] is True
    assert "123456" not in out + err


@pytest.mark.pcscd
def test_cli_a_wrong_pin_through_pcscd_is_exit_5(
    vpcd_card: pcsc_env.InsertCard,
    vpcd_reader: str,
    qr: SimulatedQrScanner,
    idcard: SimulatedIdCardReader,
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, qr, idcard, '\n[medical]\ncard_passtype = "1"\n')
    vpcd_card("typical")
    status, out, err = run(
        "medical", "credential", "--reader", vpcd_reader, "--json", "--pin-stdin", "--config", str(config),
        stdin="000000\n",
    )  # fmt: skip
    assert status == 5 and json.loads(out)["error"]["code"] == "PIN_INCORRECT", (out, err)


@pytest.mark.pcscd
def test_cli_an_id_card_through_its_pty(
    vpcd_reader: str, qr: SimulatedQrScanner, idcard: SimulatedIdCardReader, tmp_path: Path
) -> None:
    config = write_config(tmp_path, qr, idcard)
    timer = later(0.3, lambda: idcard.place(load_idcard("zhangsan")))
    status, out, err = run("medical", "credential", "--reader", vpcd_reader, "--json", "--config", str(config))
    timer.join()
    assert status == 0, err
    assert json.loads(out) == {
        "mdtrt_cert_type": "02",
        "mdtrt_cert_no": ZHANGSAN_ID,
        "card_sn": "",
        "psn_cert_type": "01",
        "certno": ZHANGSAN_ID,
        "psn_name": "张三",
        "resolved": True,
        "kind": "id_card",
        "also_presented": [],
    }


@pytest.mark.pcscd
def test_cli_an_evoucher_through_its_pty_resolved_by_the_platform(
    vpcd_reader: str, qr: SimulatedQrScanner, idcard: SimulatedIdCardReader, tmp_path: Path, platform: Platform
) -> None:
    config = write_config(tmp_path, qr, idcard, f'\n[medical]\nec_url = "{platform.url}"\norg_id = "H1"\n')
    timer = scan_when_ready(qr)
    status, out, err = run("medical", "credential", "--reader", vpcd_reader, "--json", "--config", str(config))
    timer.join()
    assert status == 0, err
    data = json.loads(out)
    assert (data["mdtrt_cert_type"], data["mdtrt_cert_no"], data["resolved"]) == ("01", PERSON["ecToken"], True)
    assert json.loads(platform.requests[0][1])["orgId"] == "H1"


@pytest.mark.pcscd
def test_cli_an_evoucher_unresolved_in_text_and_a_refusal_is_exit_12(
    vpcd_reader: str, qr: SimulatedQrScanner, idcard: SimulatedIdCardReader, tmp_path: Path
) -> None:
    config = write_config(tmp_path, qr, idcard)
    timer = scan_when_ready(qr)
    status, out, err = run("medical", "credential", "--reader", vpcd_reader, "--config", str(config))
    timer.join()
    assert status == 0, err
    assert "01 (医保电子凭证 e-voucher)" in out and EVOUCHER in out and "not resolved" in out
    for refusing in serve(Platform(lambda handler, _body: send(handler, answer(code=2001, message="凭证过期")))):
        config = write_config(tmp_path, qr, idcard, f'\n[medical]\nec_url = "{refusing.url}"\n')
        timer = scan_when_ready(qr, EVOUCHER[:-1] + "1")  # another code: the scanner's dedup window
        status, out, err = run("medical", "credential", "--reader", vpcd_reader, "--json", "--config", str(config))
        timer.join()
    error = json.loads(out)["error"]
    assert status == 12 and error["code"] == "EC_REFUSED" and error["platform_code"] == "2001", err


def test_cli_a_bad_timeout_and_a_remote_http_url_are_refused(tmp_path: Path) -> None:
    status, out, _ = run("medical", "credential", "--reader", "sim:typical", "--timeout", "0", "--json")
    assert status == 2 and json.loads(out)["error"]["code"] == "USAGE_ERROR"
    config = tmp_path / "sscard.toml"
    config.write_text('[medical]\nec_url = "http://ec.example.com/q"\n', encoding="utf-8")
    status, out, _ = run("medical", "credential", "--reader", "sim:typical", "--json", "--config", str(config))
    assert status == 7 and json.loads(out)["error"]["code"] == "CONFIG_ERROR"


def test_cli_in_process_with_the_sim_reader_prints_the_fields_as_top_level_keys() -> None:
    status, out, err = run("medical", "credential", "--reader", "sim:typical", "--json")
    assert status == 0, err
    data = json.loads(out)
    assert set(data) == {*FIELDS, "resolved", "kind", "also_presented"} and data["mdtrt_cert_type"] == "03"
