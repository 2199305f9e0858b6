"""Logs for a fleet (issue 15, item 3): ``--log-format json``, ``--log-file`` with rotation, ``[logging]``.

The JSON lines are checked as a log shipper reads them: one object per line, the stable keys
(time, level, logger, event, code, reader, request_id) on every line, personal data masked as
in the text form.  The service is run as a real process (``sscard serve`` on the simulator) so
uvicorn's own lines and the request ids are the ones a kiosk writes; the card is the in-process
simulator (``sim:``), so nothing here needs pcscd.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sscard.cli import main
from sscard.config import Config
from sscard.errors import NoCard
from sscard.logfmt import JSON_KEYS, JsonFormatter, configure_logging, log_context
from sscard.service.app import create_app
from sscard.sim import SimulatedCard, load_persona
from sscard.terminal import Terminal
from sscard.transports.sim import SimReader

SSN = "110101198503071235"  # the typical persona's social security number
OWN = "http://127.0.0.1:8765"


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test leaves the root logger as it found it (the CLI configures it in process)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for var in ("SSCARD_CONFIG", "SSCARD_LOG_FORMAT", "SSCARD_LOG_FILE"):
        monkeypatch.delenv(var, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def json_lines(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    for line in lines:
        assert list(line)[: len(JSON_KEYS)] == list(JSON_KEYS), line
        assert set(line) - set(JSON_KEYS) <= {"exception", "stack"}, line
    return lines


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err, stdin=io.StringIO(""))
    return status, out.getvalue(), err.getvalue()


def test_json_lines_have_the_stable_keys_the_reader_and_masked_personal_data() -> None:
    status, out, err = run_cli("--log-format", "json", "-vv", "read", "--reader", "sim:typical", "--json")
    assert status == 0, err
    assert SSN in out  # the command's output is not a log
    lines = json_lines(err)
    apdus = [line for line in lines if line["logger"] == "sscard.apdu"]
    assert apdus and all(line["reader"] == "sim:typical" and line["level"] == "DEBUG" for line in apdus)
    assert all(str(line["time"]).endswith("Z") and "T" in str(line["time"]) for line in lines)
    assert SSN not in err and SSN.encode().hex().upper() not in err


def test_the_option_after_the_command_and_the_fast_path_agree() -> None:
    status, _, err = run_cli("read", "--reader", "sim:typical", "-vv", "--log-format", "json")
    assert status == 0, err
    assert json_lines(err)


def test_error_codes_request_ids_and_id_numbers_in_json() -> None:
    stream = io.StringIO()
    configure_logging(logging.INFO, stream, "json")
    log = logging.getLogger("sscard.test")
    with log_context(request_id="req-1", reader="ACS ACR39U 00 00"):
        log.warning("read failed: %s", NoCard())
        log.info("resident %s at the desk", "11010119900307123X")
        try:
            raise NoCard("pulled")
        except NoCard:
            log.exception("operation failed for %s", "110101199003071234")
    log.info("outside", extra={"code": "SERVICE_BUSY"})
    first, second, third, fourth = json_lines(stream.getvalue())
    assert first["code"] == "NO_CARD" and first["request_id"] == "req-1" and first["reader"] == "ACS ACR39U 00 00"
    assert second["event"] == "resident ****************** at the desk" and second["code"] is None
    assert third["code"] == "NO_CARD" and "Traceback" in str(third["exception"])
    assert "110101199003071234" not in stream.getvalue()
    assert fourth["code"] == "SERVICE_BUSY" and fourth["request_id"] is None and fourth["reader"] is None
    assert stream.getvalue().count("\n") == 4  # the traceback's newlines are escaped: one line each


def test_the_formatter_masks_without_the_record_factory() -> None:
    """A program embedding sscard may use JsonFormatter on its own: the masks still apply."""
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "card of %s", (SSN,), None)
    line = json.loads(JsonFormatter().format(record))
    assert SSN not in line["event"] and line["event"] == "card of " + "*" * 18


def test_text_stays_the_journald_line() -> None:
    stream = io.StringIO()
    configure_logging(logging.INFO, stream, "json")
    configure_logging(logging.INFO, stream, "text", str(Path("t.log")))
    logging.getLogger("sscard.test").warning("plain")
    assert Path("t.log").read_text(encoding="utf-8") == "WARNING sscard.test: plain\n"
    assert stream.getvalue() == ""  # the JSON handler it replaced is gone


def test_log_file_rotates_with_stdlib_handlers_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "sscard.log"
    configure_logging(logging.INFO, io.StringIO(), "json", str(path), max_bytes=2048, backups=2)
    log = logging.getLogger("sscard.test")
    for index in range(200):
        log.info("line %03d %s", index, "x" * 40)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["sscard.log", "sscard.log.1", "sscard.log.2"]
    for name in files:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
        assert (tmp_path / name).stat().st_size <= 2048
        json_lines((tmp_path / name).read_text(encoding="utf-8"))
    assert "line 199" in path.read_text(encoding="utf-8")


def test_log_file_never_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep\n", encoding="utf-8")
    (tmp_path / "sscard.log").symlink_to(target)
    status, _, err = run_cli("--log-file", str(tmp_path / "sscard.log"), "read", "--reader", "sim:typical")
    assert status == 2 and "USAGE_ERROR" in err and "sscard.log" in err
    assert target.read_text(encoding="utf-8") == "keep\n"


def test_logging_section_of_the_config_file_and_the_option_over_it(tmp_path: Path) -> None:
    log_file = tmp_path / "kiosk.log"
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[logging]\nformat = "json"\nfile = "{log_file}"\nbackups = 1\n', encoding="utf-8")
    status, _, err = run_cli("--config", str(config), "-vv", "read", "--reader", "sim:typical")
    assert status == 0 and err == ""
    lines = json_lines(log_file.read_text(encoding="utf-8"))
    assert any(line["logger"] == "sscard.apdu" for line in lines)
    status, _, err = run_cli("--config", str(config), "--log-format", "text", "-vv", "read", "--reader", "sim:typical")
    assert status == 0
    assert "DEBUG sscard.apdu: 00A40400" in log_file.read_text(encoding="utf-8")  # the option wins


def make_client() -> TestClient:
    config = Config(reader="sim:typical")
    terminal = Terminal(SimReader(SimulatedCard(load_persona("typical")), "sim:typical"), config=config)
    app = create_app(config, terminal, allowed_hosts=["testserver"])
    return TestClient(app, headers={"Origin": OWN}, client=("127.0.0.1", 50000))


def test_every_request_has_an_id_in_its_header_and_its_log_lines() -> None:
    stream = io.StringIO()
    configure_logging(logging.INFO, stream, "json")
    with make_client() as client:
        given = client.get("/v1/status", headers={"X-Request-ID": "kiosk-7.42"})
        made = client.get("/v1/status")
        forged = client.get("/v1/status", headers={"X-Request-ID": 'x", "level": "INFO'})
        refused = client.get("/v1/status", headers={"Origin": "https://evil.example"})
    assert given.headers["x-request-id"] == "kiosk-7.42"
    assert len(made.headers["x-request-id"]) == 16 and made.headers["x-request-id"] != "kiosk-7.42"
    assert forged.headers["x-request-id"] != 'x", "level": "INFO'
    assert refused.status_code == 403
    refusals = [line for line in json_lines(stream.getvalue()) if "refused" in str(line["event"])]
    assert refusals and refusals[0]["request_id"] == refused.headers["x-request-id"]
    assert refusals[0]["reader"] == "sim:typical"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_writes_uvicorn_and_sscard_lines_as_json(tmp_path: Path) -> None:
    """The real service process: uvicorn's start-up lines join sscard's JSON, and a request's id."""
    port, log_file = _free_port(), tmp_path / "service.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_")}
    command = [sys.executable, "-m", "sscard.cli", "--log-format", "json", "--log-file", str(log_file)]
    process = subprocess.Popen(
        [*command, "serve", "--reader", "sim:typical", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/status", headers={"Origin": "https://evil.example"}
            )
            try:
                urllib.request.urlopen(request, timeout=2)
            except urllib.error.HTTPError as refused:
                request_id = refused.headers["X-Request-ID"]
                break
            except OSError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "the service did not come up"
                time.sleep(0.2)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    lines = json_lines(log_file.read_text(encoding="utf-8"))
    assert any(line["logger"] == "uvicorn.error" and "startup" in str(line["event"]) for line in lines), lines
    assert any(line["request_id"] == request_id and "refused" in str(line["event"]) for line in lines), lines
    assert "INFO:" not in stderr  # uvicorn's own text handler was not installed
    with contextlib.suppress(FileNotFoundError):
        assert stat.S_IMODE(log_file.stat().st_mode) == 0o600


def test_a_failed_request_logs_its_code_and_request_id_never_the_body() -> None:
    stream = io.StringIO()
    configure_logging(logging.INFO, stream, "json")
    with make_client() as client:
        answer = client.post("/v1/verify", json={"pin": "12"}, headers={"X-Request-ID": "desk-3"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "PIN_FORMAT"
    (line,) = [line for line in json_lines(stream.getvalue()) if line["code"] == "PIN_FORMAT"]
    assert line["event"] == "POST /v1/verify: PIN_FORMAT" and line["request_id"] == "desk-3"
    assert '"12"' not in stream.getvalue()
