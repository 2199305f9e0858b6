"""Configuration checked against its schema (issue 11 item 9): unknown sections and keys, wrong
types and out-of-range values are CONFIG_ERROR (exit 7) naming the key and the file, never INTERNAL;
``sscard config show`` reports every effective value and where it came from."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sscard.cli import main
from sscard.config import SCHEMA, SECTIONS, Config, load_config
from sscard.errors import ConfigError

FULL = """
[reader]
name = "sim:typical"
contactless = "PICC"
sam = "SAM"
itype = 3
busy_wait = 2.0

[reader.slots]
sam_keywords = ["SAM"]
contactless_keywords = ["PICC", "Contactless", "CL"]

[terminal]
id = "410100813475"
device_id = "MT170701000006"

[keys]
service = "none"
profile = "default"
authenticate_card = false
file = "keys.toml"
keyset = "test"
allow_software = false

[session]
require_pin = true
idle_timeout = 300
key = "/etc/sscard/terminal-key.pem"
token_ttl = 300
public_key = "/etc/sscard/terminal-key.pub"
leeway = 30

[qr]
port = "/dev/sscard-qr"
baudrate = 9600
terminator = "crlf"
dedup_window = 2.0

[idcard]
port = "/dev/sscard-idcard"
baudrate = 115200

[service]
allowed_origins = ["http://127.0.0.1:8765"]
token = "s3cret-token"
queue_timeout = 10
header_timeout = 10
body_timeout = 10
max_connections = 256
port = 8765
socket = "/run/sscard/sscard.sock"
pin_source = "pinpad"

[kiosk]
idle_timeout = 45
[bridge]
profile = "ssc-ws"
port = 12342

[logging]
show_personal_data = false
format = "json"
file = "/var/log/sscard/sscard.log"
max_bytes = 1048576
backups = 3

[medical]
ec_url = "https://ec.example.invalid/ec"
timeout = 10
allow_http = false
org_id = "H41010000001"
card_passtype = "1"
business_type = "01101"
operator_id = "op1"
operator_name = "Operator"
office_id = "dept1"
office_name = "Registration"
device_type = "kiosk"
psn_cert_type = "01"
"""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err, stdin=io.StringIO(""))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for var in {key.env for key in SCHEMA if key.env} | {"SSCARD_CONFIG"}:
        monkeypatch.delenv(var, raising=False)


def test_every_documented_key_is_accepted(tmp_path: Path) -> None:
    """The documented example (docs/cli.md) and every key the code reads load without error."""
    path = tmp_path / "sscard.toml"
    path.write_text(FULL, encoding="utf-8")
    config = load_config(path, env={})
    assert config.qr_terminator == "CRLF" and config.token_ttl == 300 and config.session_idle == 300.0
    assert config.service_socket == "/run/sscard/sscard.sock" and config.service_pin_source == "pinpad"
    assert config.kiosk_idle == 45.0
    assert config.service_origins == ("http://127.0.0.1:8765",) and config.service_token == "s3cret-token"
    assert {key.path for key in SCHEMA} == {
        f"{section}.{line.split(' = ')[0]}"
        for section, body in re.findall(r"^\[([\w.]+)\]\n((?:[^\[\n][^\n]*\n)*)", FULL, flags=re.M)
        for line in body.splitlines()
        if " = " in line
    }
    docs = Path(__file__).parents[1].joinpath("docs/cli.md").read_text(encoding="utf-8")
    example = docs.split("## Configuration", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    path.write_text(example.replace("# token", "token"), encoding="utf-8")
    load_config(path, env={})


def test_every_config_field_has_one_schema_key() -> None:
    """A new Config field needs its line in SCHEMA (and nothing else reads the file)."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(Config)} - {"source", "origins"}
    assert sorted(key.field for key in SCHEMA) == sorted(fields)
    assert len({key.path for key in SCHEMA}) == len(SCHEMA)


BAD = [
    ("[sesion]\nrequire_pin = true\n", "sesion", "session"),
    ('[reader]\nnmae = "ACR"\n', "reader.nmae", "name"),
    ('[reader.slots]\nsam = ["SAM"]\n', "reader.slots.sam", "sam_keywords"),
    ("name = 3\n", "name", "[name]"),
    ("[reader]\nitype = inf\n", "reader.itype", "inf"),
    ("[reader]\nitype = 3.0\n", "reader.itype", "3.0"),
    ("[reader]\nitype = 5\n", "reader.itype", "5"),
    ("[service]\nqueue_timeout = -1\n", "service.queue_timeout", "-1"),
    ("[service]\nqueue_timeout = nan\n", "service.queue_timeout", "nan"),
    ('[service]\nallowed_origins = "http://127.0.0.1:8765"\n', "service.allowed_origins", "http://127.0.0.1"),
    ("[service]\ntoken = true\n", "service.token", "True"),
    ("[qr]\nbaudrate = -9600\n", "qr.baudrate", "-9600"),
    ("[idcard]\nbaudrate = -1\n", "idcard.baudrate", "-1"),
    ("[qr]\ndedup_window = inf\n", "qr.dedup_window", "inf"),
    ('[qr]\nterminator = "TAB"\n', "qr.terminator", "TAB"),
    ("[service]\nheader_timeout = nan\n", "service.header_timeout", "nan"),
    ("[service]\nmax_connections = 7\n", "service.max_connections", "7"),
    ('[service]\npin_source = "keyboard"\n', "service.pin_source", "keyboard"),
    ("[session]\nidle_timeout = 0\n", "session.idle_timeout", "0"),
    ("[session]\ntoken_ttl = 1.5\n", "session.token_ttl", "1.5"),
    ('[keys]\nservice = "vault"\n', "keys.service", "vault"),
    ('[keys]\nallow_software = "yes"\n', "keys.allow_software", "yes"),
    ("[terminal]\nid = 410100813475\n", "terminal.id", "410100813475"),
    ("reader = 1\n", "reader", "table"),
    ("[reader\n", None, "Expected"),
]


@pytest.mark.parametrize(("text", "key", "shown"), BAD)
def test_bad_configuration_is_config_error_naming_key_and_file(
    tmp_path: Path, text: str, key: str | None, shown: str
) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text(text, encoding="utf-8")
    status, out, err = run("--config", str(path), "read", "--reader", "sim:typical")
    assert status == 7, err
    english, chinese = err.strip().splitlines()
    assert english.startswith("error CONFIG_ERROR:") and chinese.startswith("错误 CONFIG_ERROR：配置错误：")
    assert str(path) in english and str(path) in chinese
    if key is not None:
        name = key.rsplit(".", 1)[-1]
        assert name in english and name in chinese
    assert shown in english
    # The Chinese message is Chinese apart from the key, the file, values and TOML words.
    residue = chinese.split("：", 2)[2]
    for literal in (str(path), key or "", *(key.split(".") if key else ()), shown, "none", "psam", "hsm", "software"):
        residue = residue.replace(literal, "")
    residue = re.sub(r'"[^"]*"', "", residue)
    assert not re.search(r"\b(must|not|unknown|in|of|the|a|an|number|string|list)\b", residue), chinese
    status, out, _ = run("--config", str(path), "config", "show", "--json")
    error = json.loads(out)["error"]
    assert status == 7 and error["code"] == "CONFIG_ERROR" and error["file"] == str(path)
    if key is not None:
        assert error["key"] == key


def test_bad_environment_value_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSCARD_BUSY_WAIT", "inf")
    status, _, err = run("read", "--reader", "sim:typical")
    assert status == 7 and "SSCARD_BUSY_WAIT" in err and "busy_wait" in err


def test_python_api_rejects_non_finite_numbers() -> None:
    with pytest.raises(ConfigError, match="queue_timeout"):
        Config(service_queue_timeout=math.nan)
    with pytest.raises(ConfigError, match="dedup_window"):
        Config(qr_dedup_window=math.inf)


def test_config_show_prints_values_and_their_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sscard.toml"  # found on the search path, not named
    path.write_text('[reader]\nitype = 2\n[service]\ntoken = "s3cret-token"\n', encoding="utf-8")
    monkeypatch.setenv("SSCARD_QR_PORT", "/dev/ttyACM7")
    status, out, err = run("config", "show")
    assert status == 0, err
    lines = {line.split(" = ")[0]: line for line in out.splitlines() if " = " in line}
    assert lines["itype"].startswith("itype = 2") and lines["itype"].endswith("# sscard.toml")
    qr = out.split("[qr]", 1)[1].split("[idcard]", 1)[0]
    assert re.search(r'^port = "/dev/ttyACM7" +# env SSCARD_QR_PORT$', qr, flags=re.M), out
    assert lines["busy_wait"].endswith("# default") and "[logging]" in out
    assert "s3cret-token" not in out and lines["token"].startswith('token = "(set)"')
    status, out, _ = run("config", "show", "--json")
    data = json.loads(out)
    assert status == 0 and data["file"] == "sscard.toml"
    assert set(data["values"]) == {key.path for key in SCHEMA}
    assert data["values"]["reader.itype"] == {"value": 2, "source": "sscard.toml"}
    assert data["values"]["qr.port"] == {"value": "/dev/ttyACM7", "source": "env SSCARD_QR_PORT"}
    assert data["values"]["reader.slots.sam_keywords"] == {"value": ["SAM"], "source": "default"}
    assert data["values"]["service.token"]["value"] == "(set)"


def test_config_show_without_a_file_says_so() -> None:
    status, out, _ = run("config", "show", "--json")
    assert status == 0 and json.loads(out)["file"] is None
    assert {entry["source"] for entry in json.loads(out)["values"].values()} == {"default"}


def test_no_file_no_toml_parser() -> None:
    """Start-up: without a configuration file the TOML parser is never imported (docs/performance.md)."""
    import subprocess
    import sys

    code = "import sys, sscard.config as c; c.load_config(env={}); print('tomllib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# -- property: any TOML value for any key is a valid config or a CONFIG_ERROR, nothing else ----


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)  # dates and times: TOML's own literal form


SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.dates()
    | st.datetimes().map(lambda moment: moment.isoformat())  # a string that looks like a date
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=2),
    max_leaves=6,
)
NAMES = st.sampled_from([key.path for key in SCHEMA] + ["reader.nmae", "sesion.x", "reader.slots.y", "logging.z"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=NAMES, value=VALUES)
def test_any_value_for_any_key_is_valid_or_config_error(tmp_path: Path, path: str, value: Any) -> None:
    section, name = path.rsplit(".", 1)
    file = tmp_path / "fuzz.toml"
    file.write_text(f"[{section}]\n{json.dumps(name)} = {toml_value(value)}\n", encoding="utf-8")
    try:
        config = load_config(file, env={})
    except ConfigError as exc:
        assert exc.fields["file"] == str(file)
        assert "配置错误" in exc.message_zh
        return
    assert section in SECTIONS and isinstance(config, Config)


SECTION_NAMES = st.sampled_from([*SECTIONS, "sesion", "readers", "logging.x"])
KEY_NAMES = st.sampled_from(sorted({key.name for key in SCHEMA} | {"nmae", "slots", "x"}))
DOCUMENTS = st.dictionaries(SECTION_NAMES, st.dictionaries(KEY_NAMES, VALUES, max_size=4) | VALUES, max_size=4)


def toml_document(document: dict[str, Any]) -> str:
    lines = []
    for section, body in document.items():
        if isinstance(body, dict):
            lines.append(f"[{section}]")
            lines += [f"{json.dumps(name)} = {toml_value(value)}" for name, value in body.items()]
        else:
            lines.insert(0, f"{json.dumps(section)} = {toml_value(body)}")  # top-level keys come first
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=DOCUMENTS)
def test_any_document_is_valid_or_config_error(tmp_path: Path, document: dict[str, Any]) -> None:
    file = tmp_path / "doc.toml"
    file.write_text(toml_document(document), encoding="utf-8")
    try:
        load_config(file, env={})
    except ConfigError as exc:
        assert exc.fields["file"] == str(file) and "配置错误" in exc.message_zh


@settings(max_examples=300, deadline=None)
@given(variable=st.sampled_from([key.env for key in SCHEMA if key.env]), text=st.text(max_size=20))
def test_any_environment_value_is_valid_or_config_error(variable: str, text: str) -> None:
    try:
        config = load_config(None, env={variable: text, "XDG_CONFIG_HOME": "/nonexistent"})
    except ConfigError as exc:
        assert exc.fields["file"] == f"env {variable}" and variable in exc.message
        return
    assert isinstance(config, Config)


def test_config_benchmark_runs_and_prints_its_table() -> None:
    """Smoke test of benchmarks/config.py (its structure, never a figure)."""
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "benchmarks" / "config.py"
    result = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Configuration loading in a fresh process")
    assert re.search(r"no file +\d+\.\d\d +\d+\.\d\d$", result.stdout, flags=re.M)
    assert re.search(r"every key set +\d+\.\d\d +\d+\.\d\d$", result.stdout, flags=re.M)
    assert any(line.startswith("msgspec: import") for line in lines)
