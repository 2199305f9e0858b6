"""The `sscard` command line, in process: output forms, JSON contract, errors, exit codes, PIN input."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from sscard.cli import main
from sscard.national import parse_ireadcardbas

CONTRACT_CARD = {
    "identification_code",
    "type",
    "spec_version",
    "issuer_id",
    "issue_date",
    "expiry_date",
    "card_number",
    "region_code",
    "atr",
}
CONTRACT_HOLDER = {"ssn", "name", "gender_code", "gender", "nation_code", "nation", "birthplace_code", "birth_date"}


class Run:
    def __init__(self, *argv: str, stdin: str = "", env: Any = None) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.status = main(list(argv), out=self.out, err=self.err, stdin=io.StringIO(stdin))

    @property
    def json(self) -> Any:
        return json.loads(self.out.getvalue())


@pytest.fixture(autouse=True)
def _no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Keep the developer's own configuration out of these tests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for var in ("SSCARD_CONFIG", "SSCARD_READER", "SSCARD_TERMINAL_ID", "SSCARD_DEVICE_ID"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    "persona", ["typical", "long_name", "rare_char", "letter_card_number", "expired", "pin_blocked", "v1_t0", "no_sfi"]
)
def test_read_json_contract(persona: str) -> None:
    run = Run("read", "--reader", f"sim:{persona}", "--json")
    assert run.status == 0, run.err.getvalue()
    data = run.json
    assert set(data) == {"kind", "card", "cardholder", "warnings"} and data["kind"] == "ssc"
    assert set(data["card"]) == CONTRACT_CARD
    assert set(data["cardholder"]) == CONTRACT_HOLDER
    assert isinstance(data["warnings"], list)
    for key in ("issue_date", "expiry_date"):
        assert data["card"][key] is None or len(data["card"][key]) == 10
    assert data["cardholder"]["name"]


def test_read_not_ssc_json_error() -> None:
    run = Run("read", "--reader", "sim:not_ssc", "--json")
    assert run.status == 4
    assert run.json["error"]["code"] == "NOT_SSC"
    assert run.json["error"]["message_zh"] == "此卡不是社会保障卡。"


def test_read_text_is_bilingual() -> None:
    run = Run("read", "--reader", "sim:typical")
    assert run.status == 0
    text = run.out.getvalue()
    assert "姓名 Name" in text and "卡号 Card number" in text


def test_read_ireadcardbas() -> None:
    run = Run(
        "read",
        "--reader",
        "sim:typical",
        "--format",
        "ireadcardbas",
        "--terminal-id",
        "410100813475",
        "--device-id",
        "MT170701000006",
    )
    assert run.status == 0
    fields = parse_ireadcardbas(run.out.getvalue().strip())
    card = Run("read", "--reader", "sim:typical", "--json").json
    assert fields["社会保障号码"] == card["cardholder"]["ssn"]
    assert fields["卡识别码"] == card["card"]["identification_code"]
    assert fields["区号"] == card["card"]["region_code"]
    assert fields["发卡日期"] == card["card"]["issue_date"].replace("-", "")
    assert fields["终端机编号"] == "410100813475" and fields["终端设备号"] == "MT170701000006"


def test_terminal_fields_from_configuration(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text('[reader]\nname = "sim:typical"\n[terminal]\nid = "T-1"\ndevice_id = "D-9"\n', encoding="utf-8")
    run = Run("--config", str(config), "read", "--format", "ireadcardbas")
    assert run.status == 0, run.err.getvalue()
    assert run.out.getvalue().strip().endswith("|T-1|D-9|")
    monkeypatch.setenv("SSCARD_TERMINAL_ID", "T-2")
    assert Run("--config", str(config), "read", "--format", "ireadcardbas").out.getvalue().strip().endswith("|T-2|D-9|")


def test_missing_config_file_is_a_config_error() -> None:
    run = Run("--config", "/nonexistent/sscard.toml", "read", "--reader", "sim:typical", "--json")
    assert run.status == 7 and run.json["error"]["code"] == "CONFIG_ERROR"


def test_verify_from_stdin() -> None:
    ok = Run("verify", "--reader", "sim:typical", "--pin-stdin", "--json", stdin="123456\n")
    assert ok.status == 0 and ok.json["pin"]["state"] == "verified"
    bad = Run("verify", "--reader", "sim:typical", "--pin-stdin", "--json", stdin="654321\n")
    assert bad.status == 5
    assert bad.json["error"] == {**bad.json["error"], "code": "PIN_INCORRECT", "tries_left": 2}
    assert "654321" not in bad.out.getvalue() + bad.err.getvalue()


def test_verify_blocked_persona() -> None:
    run = Run("verify", "--reader", "sim:pin_blocked", "--pin-stdin", stdin="123456\n")
    assert run.status == 6
    assert "PIN_BLOCKED" in run.err.getvalue() and "密码已锁定" in run.err.getvalue()


def test_pin_format_error() -> None:
    run = Run("verify", "--reader", "sim:typical", "--pin-stdin", "--json", stdin="12\n")
    assert run.status == 5 and run.json["error"]["code"] == "PIN_FORMAT"


def test_no_hidden_prompt_without_a_terminal() -> None:
    run = Run("verify", "--reader", "sim:typical", "--json")
    assert run.status == 2 and run.json["error"]["code"] == "USAGE_ERROR"


def test_pin_is_not_an_argument() -> None:
    assert Run("verify", "--reader", "sim:typical", "--pin", "123456").status == 2


def test_change_pin_from_stdin() -> None:
    run = Run("change-pin", "--reader", "sim:typical", "--pin-stdin", stdin="123456\n7890\n")
    assert run.status == 0, run.err.getvalue()
    wrong_old = Run("change-pin", "--reader", "sim:typical", "--pin-stdin", "--json", stdin="111111\n7890\n")
    assert wrong_old.status == 5 and wrong_old.json["error"]["tries_left"] == 2


def test_pin_status() -> None:
    run = Run("pin-status", "--reader", "sim:typical", "--json")
    assert run.json == {"pin": {"state": "not_verified", "tries_left": 3}}


def test_sim_list() -> None:
    run = Run("sim", "list", "--json")
    names = {row["name"] for row in run.json["personas"]}
    assert {"typical", "long_name", "rare_char", "letter_card_number", "expired", "pin_blocked", "not_ssc"} <= names


def test_unknown_persona() -> None:
    run = Run("read", "--reader", "sim:nobody", "--json")
    assert run.status == 7 and run.json["error"]["code"] == "CONFIG_ERROR"


def test_unknown_command_is_usage() -> None:
    assert Run("frobnicate").status == 2


# -- session tokens ---------------------------------------------------------------------------


def _session_token(private_key: Path, **changes: Any) -> str:
    from sscard.tokens import SessionClaims, issue_token, load_private_key

    values: dict[str, Any] = {
        "terminal_id": "410100813475",
        "ssn": "110101198101010010",
        "name": "张三",
        "card_number": "A12345678",
        "card_id": "110100D156000005000000000000ABCD",
        "method": "card+pin",
        "ttl": 300,
    }
    values.update(changes)
    return issue_token(SessionClaims.create(**values), load_private_key(private_key))


def test_token_keygen_and_verify(tmp_path: Path) -> None:
    private, public = tmp_path / "t.key", tmp_path / "t.pub"
    made = Run("token", "keygen", "--private", str(private), "--public", str(public), "--json")
    assert made.status == 0 and len(made.json["kid"]) == 16
    assert private.stat().st_mode & 0o777 == 0o600
    assert Run("token", "keygen", "--private", str(private), "--public", str(public)).status == 7  # exists
    token = _session_token(private)
    ok = Run("token", "verify", token, "--public-key", str(public), "--terminal-id", "410100813475", "--json")
    assert ok.status == 0
    assert ok.json["session"]["sub"] == "110101198101010010" and ok.json["session"]["kid"] == made.json["kid"]
    text = Run("token", "verify", "-", "--public-key", str(public), stdin=token + "\n")
    assert text.status == 0 and "会话令牌有效" in text.out.getvalue()


def test_token_verify_rejections(tmp_path: Path) -> None:
    private, public = tmp_path / "t.key", tmp_path / "t.pub"
    assert Run("token", "keygen", "--private", str(private), "--public", str(public)).status == 0
    token = _session_token(private)
    cases = {
        "TOKEN_INVALID": (token[:-10] + ("A" if token[-10] != "A" else "B") + token[-9:], []),
        "TOKEN_MALFORMED": ("not-a-token", []),
        "TOKEN_WRONG_TERMINAL": (token, ["--terminal-id", "999999"]),
        "TOKEN_EXPIRED": (_session_token(private, ttl=1, now=1_000_000), []),
    }
    for code, (candidate, extra) in cases.items():
        run = Run("token", "verify", candidate, "--public-key", str(public), "--json", *extra)
        assert run.json["error"]["code"] == code
        assert run.status == (10 if code == "TOKEN_EXPIRED" else 9)
        assert "110101198101010010" not in run.out.getvalue() and "张三" not in run.out.getvalue()
    missing = Run("token", "verify", token, "--public-key", str(tmp_path / "none.pub"), "--json")
    assert (missing.status, missing.json["error"]["code"]) == (7, "TOKEN_KEY_ERROR")
    assert Run("token", "verify", token).status == 2  # no key given, none configured
