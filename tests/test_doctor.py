"""``sscard doctor`` (issue 15, item 4): each fault named correctly, in Chinese and English, with its exit code.

Made real through pcscd + vpcd (``@pytest.mark.pcscd``; run under the pcscd lock): pcscd stopped
(killed, then started again), no card in the reader, a non-SSC card (the ``not_ssc`` persona, a
bank card), a missing serial device beside a present one (a real pty), the service down, and the
service up (``sscard serve`` as a process, with its national-interface socket) where every check
passes.  Against fakes (the :class:`~sscard.cli.doctor.findings.Probe`'s functions), because they
cannot be made real on this machine: pcscd not installed, pcscd socket-activated by systemd,
polkit refusing the kiosk user and the rules or the group missing (the rules are really installed
with ``sscard install-rules --dest`` for the passing case), a clock before the installation and an
unsynchronised one, and the PSAM through the in-process simulator (``sim:`` PSAM).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sscard.cli import main
from sscard.cli.doctor.checks import CHECKS, Finding, Probe, Status, run_checks, worst
from sscard.cli.doctor.findings import EXIT
from sscard.config import Config
from sscard.errors import AccessDenied
from support import pcsc_env
from support.serve import free_port, running_service
from test_messages_zh import english_words


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for var in [v for v in os.environ if v.startswith("SSCARD_") and v != "SSCARD_VPCD_SLOT"]:
        monkeypatch.delenv(var)


def assert_bilingual(findings: list[Finding]) -> None:
    """Every verdict and fix in both languages; the Chinese wholly Chinese (tests/test_messages_zh.py)."""
    for finding in findings:
        assert finding.en and finding.zh, finding
        assert english_words(finding.zh) == [], (finding.check, finding.zh)
        assert bool(finding.fix_en) == bool(finding.fix_zh), finding
        assert english_words(finding.fix_zh) == [], (finding.check, finding.fix_zh)
        if finding.status in (Status.WARNING, Status.FAULT):
            assert finding.fix_en, f"{finding.check}: a {finding.status.value} without a fix"


def doctor(*argv: str, config: str | None = None) -> tuple[int, dict[str, Any], str]:
    """``sscard doctor --json`` in process: exit code, the JSON, and the text form of the same run."""
    before = ["--config", config] if config else []
    out, err = io.StringIO(), io.StringIO()
    status = main([*before, "doctor", "--json", *argv], out=out, err=err, stdin=io.StringIO(""))
    payload = json.loads(out.getvalue())
    findings = [
        Finding(c["check"], Status(c["status"]), c["verdict"]["en"], c["verdict"]["zh"],
                (c["fix"] or {}).get("en", ""), (c["fix"] or {}).get("zh", ""), c["details"])
        for c in payload["checks"]
    ]  # fmt: skip
    assert_bilingual(findings)
    assert payload["exit_code"] == status and EXIT[Status(payload["status"])] == status
    text_out = io.StringIO()
    text_status = main([*before, "doctor", *argv], out=text_out, err=io.StringIO(), stdin=io.StringIO(""))
    assert text_status == status
    return status, payload, text_out.getvalue()


def finding(payload: dict[str, Any], check: str) -> dict[str, Any]:
    found = [c for c in payload["checks"] if c["check"] == check]
    assert len(found) == 1, (check, payload)
    return found[0]


def assert_named(payload: dict[str, Any], check: str, status: str, en: str, zh: str) -> None:
    entry = finding(payload, check)
    assert entry["status"] == status, entry
    assert en in entry["verdict"]["en"], entry
    assert zh in entry["verdict"]["zh"], entry


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "kiosk.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- through pcscd + vpcd ------------------------------------------------------------------------


@pytest.mark.pcscd
def test_pcscd_stopped_is_a_fault(pcscd: pcsc_env.Pcscd, vpcd_reader: str, tmp_path: Path) -> None:
    pcscd.kill()
    try:
        status, payload, text = doctor("--reader", vpcd_reader)
    finally:
        pcscd.restart(tmp_path / "pcscd-restarted.log")
    assert status == 2
    assert_named(payload, "pcscd.installed", "ok", "pcscd is installed", "已安装pcscd")
    assert_named(payload, "pcscd.answering", "fault", "pcscd does not answer", "pcscd无响应")
    assert finding(payload, "pcscd.answering")["details"]["error"]["code"] == "NO_SERVICE"
    assert_named(payload, "readers", "skipped", "not checked", "未检查")
    assert "[故障 FAULT] pcscd.answering" in text and "处理：请重启" in text and "fix: restart it" in text
    assert "结论：" in text and "(exit 2)" in text


@pytest.mark.pcscd
def test_no_card_is_a_warning(vpcd_reader: str, tmp_path: Path) -> None:
    pcsc_env.wait_for_reader(vpcd_reader, present=False)
    status, payload, _ = doctor("--reader", vpcd_reader)
    assert status == 1
    assert_named(payload, "pcscd.answering", "ok", "pcscd answers", "pcscd响应正常")
    assert_named(payload, "readers", "ok", vpcd_reader, "个读卡器")
    assert_named(payload, "card", "warning", "no card in", "读卡器中没有卡")
    assert_named(payload, "card.ssc", "skipped", "not checked", "未检查")


@pytest.mark.pcscd
def test_a_non_ssc_card_is_named(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str) -> None:
    vpcd_card("not_ssc")
    status, payload, _ = doctor("--reader", vpcd_reader)
    assert status == 1
    assert_named(payload, "card", "ok", "ATR 3B6800000073C84013009000", "复位信息（ATR）3B6800000073C84013009000")
    assert_named(payload, "card.ssc", "warning", "not a social security card", "不是社会保障卡")
    assert finding(payload, "card.ssc")["details"]["error"]["code"] == "NOT_SSC"


@pytest.mark.pcscd
def test_a_reader_that_is_not_there_is_a_fault(vpcd_reader: str) -> None:
    status, payload, _ = doctor("--reader", "No Such Reader")
    assert status == 2
    assert_named(payload, "readers", "fault", "no reader for the card matches", "没有与[reader]中的'name'匹配的读卡器")


@pytest.mark.pcscd
def test_missing_serial_device_beside_a_present_one(
    vpcd_card: pcsc_env.InsertCard, vpcd_reader: str, tmp_path: Path
) -> None:
    vpcd_card("typical")
    master, slave = os.openpty()
    try:
        config = write_config(
            tmp_path, f'[qr]\nport = "{os.ttyname(slave)}"\n[idcard]\nport = "{tmp_path}/sscard-idcard"\n'
        )
        status, payload, _ = doctor("--reader", vpcd_reader, config=config)
    finally:
        os.close(master)
        os.close(slave)
    assert status == 2
    assert_named(payload, "card.ssc", "ok", "a social security card, spec version 2.00", "社会保障卡，规范版本2.00")
    assert_named(payload, "serial.qr", "ok", "can be opened", "扫码器设备")
    assert_named(payload, "serial.idcard", "fault", f"the ID-card reader {tmp_path}/sscard-idcard is missing", "不存在")


@pytest.mark.pcscd
def test_service_down_is_a_fault(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str, tmp_path: Path) -> None:
    vpcd_card("typical")
    port = free_port()
    config = write_config(tmp_path, f'[service]\nport = {port}\nsocket = "{tmp_path}/sscard.sock"\n')
    status, payload, _ = doctor("--reader", vpcd_reader, config=config)
    assert status == 2
    assert_named(payload, "service.port", "fault", f"the service does not answer on port {port}", "无响应")
    assert_named(payload, "service.socket", "fault", "does not answer", "国家标准接口套接字")
    assert "systemctl start sscard" in finding(payload, "service.port")["fix"]["en"]


@pytest.fixture
def service(vpcd_reader: str, tmp_path: Path) -> Iterator[tuple[int, str]]:
    port, path = free_port(), str(tmp_path / "sscard.sock")
    with running_service(["--reader", vpcd_reader, "--socket", path], port, tmp_path, stdout=subprocess.DEVNULL):
        yield port, path


@pytest.mark.pcscd
def test_service_up_and_everything_fine(
    vpcd_card: pcsc_env.InsertCard, vpcd_reader: str, service: tuple[int, str]
) -> None:
    vpcd_card("typical")
    port, path = service
    status, payload, text = doctor("--reader", vpcd_reader, "--port", str(port), "--socket", path)
    assert status == 0, [c for c in payload["checks"] if c["status"] not in ("ok", "skipped")]
    assert payload["status"] == "ok"
    assert_named(
        payload, "service.port", "ok", f"the service answers on port {port}", f"本地服务在端口{port}上响应正常"
    )
    assert_named(payload, "service.socket", "ok", "answers", "响应正常")
    assert [c["check"] for c in payload["checks"]][:7] == [
        "pcscd.installed", "pcscd.running", "pcscd.answering", "readers", "permission", "card", "card.ssc"
    ]  # fmt: skip
    assert "结论：一切正常 / verdict: all fine (exit 0)" in text


# --- against fakes -------------------------------------------------------------------------------


def probe(tmp_path: Path, config: Config | None = None, **overrides: Any) -> Probe:
    """A probe of a fake machine rooted at ``tmp_path``, pcscd-less unless the test says otherwise."""
    return Probe(config=config or Config(), user="kiosk", root=tmp_path, **overrides)


def one(findings: list[Finding], check: str) -> Finding:
    assert_bilingual(findings)
    (found,) = [f for f in findings if f.check == check]
    return found


def test_pcscd_not_installed(tmp_path: Path) -> None:
    found = one(run_checks(probe(tmp_path, which=lambda name: None), CHECKS[:1]), "pcscd.installed")
    assert found.status is Status.FAULT and found.en == "pcscd is not installed" and found.zh == "未安装pcscd"
    assert "apt-get install pcscd" in found.fix_zh


def test_pcscd_socket_activated_by_systemd_is_fine(tmp_path: Path) -> None:
    (tmp_path / "run/pcscd").mkdir(parents=True)
    (tmp_path / "run/pcscd/pcscd.comm").touch()
    fake = probe(tmp_path, pcscd_pids=lambda root: [])
    assert one(run_checks(fake, CHECKS[1:2]), "pcscd.running").status is Status.FAULT  # a stale socket, no systemd
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    found = one(run_checks(fake, CHECKS[1:2]), "pcscd.running")
    assert found.status is Status.OK and "systemd" in found.en and "按需启动" in found.zh


def test_permission_denied_by_polkit_names_what_is_missing(tmp_path: Path) -> None:
    fake = probe(tmp_path, group_members=lambda name: None, pcscd_features=lambda: "Enabled features: polkit usb")
    fake.pcscd_error = AccessDenied("SCardEstablishContext: PC/SC 0x8010006A (Access denied.)")
    found = one(run_checks(fake, [c for c in CHECKS if c.__name__ == "check_permission"]), "permission")
    assert found.status is Status.FAULT and found.en.startswith("permission denied: group sscard does not exist")
    assert "polkit rule" in found.en and "udev rules not installed" in found.en
    assert found.zh.startswith("权限不足：sscard组不存在") and "未安装polkit规则" in found.zh
    assert "usermod -aG sscard kiosk" in found.fix_en


def test_permission_warns_before_it_is_denied_and_passes_with_the_rules(tmp_path: Path) -> None:
    check = [c for c in CHECKS if c.__name__ == "check_permission"]
    fake = probe(tmp_path, group_members=lambda name: ["other"], pcscd_features=lambda: "polkit")
    found = one(run_checks(fake, check), "permission")
    assert (
        found.status is Status.WARNING and "kiosk is not in group sscard" in found.en and "不在sscard组中" in found.zh
    )
    assert main(["install-rules", "--dest", str(tmp_path)], out=io.StringIO(), err=io.StringIO()) == 0
    fake.group_members = lambda name: ["kiosk"]
    found = one(run_checks(fake, check), "permission")
    assert found.status is Status.OK and found.zh == "用户权限完整"
    fake.pcscd_features = lambda: "Enabled features: usb"  # without polkit the polkit rule is not needed
    (tmp_path / "etc/polkit-1/rules.d/50-sscard-pcscd.rules").unlink()
    assert one(run_checks(fake, check), "permission").status is Status.OK


def test_clock_behind_and_unsynchronised(tmp_path: Path) -> None:
    check = [CHECKS[-1]]
    behind = one(run_checks(probe(tmp_path, now=lambda: 86_400.0 * 365), check), "clock")
    assert (
        behind.status is Status.FAULT and "the clock is behind (1971-01-01" in behind.en and "系统时间落后" in behind.zh
    )
    tokens = Config(session_key="/etc/sscard/terminal-key.pem")
    unsynced = one(run_checks(probe(tmp_path, tokens, ntp_synchronized=lambda: False), check), "clock")
    assert unsynced.status is Status.WARNING and "not synchronised" in unsynced.en and "未同步" in unsynced.zh
    synced = one(run_checks(probe(tmp_path, tokens, ntp_synchronized=lambda: True), check), "clock")
    assert synced.status is Status.OK and "已同步" in synced.zh


def test_psam_through_the_simulator(tmp_path: Path) -> None:
    check = [c for c in CHECKS if c.__name__ == "check_psam"]
    assert one(run_checks(probe(tmp_path), check), "psam").status is Status.SKIPPED
    good = one(run_checks(probe(tmp_path, Config(key_service="psam", sam_reader="sim:psam")), check), "psam")
    assert good.status is Status.OK and good.zh == "PSAM响应正常", good
    bad = one(run_checks(probe(tmp_path, Config(key_service="psam", sam_reader="sim:no_such_psam")), check), "psam")
    assert bad.status is Status.FAULT and "PSAM key service" in bad.en and "PSAM密钥服务不可用" in bad.zh
    software = Config(key_service="software", allow_software_keys=True)
    assert one(run_checks(probe(tmp_path, software), check), "psam").status is Status.WARNING


def test_a_non_ssc_card_in_process_and_the_json_form(tmp_path: Path) -> None:
    status, payload, _ = doctor("--reader", "sim:not_ssc", "--port", str(free_port()))
    assert_named(payload, "card.ssc", "warning", "not a social security card", "不是社会保障卡")
    assert status == 2  # the service given with --port does not answer: a fault
    assert set(payload) == {"status", "exit_code", "checks"}
    assert all(set(c) == {"check", "status", "verdict", "fix", "details"} for c in payload["checks"])


def test_a_check_that_breaks_is_a_fault_and_the_rest_still_run(tmp_path: Path) -> None:
    def check_broken(p: Probe) -> Finding:
        raise RuntimeError("boom")

    findings = run_checks(probe(tmp_path, which=lambda name: "/usr/sbin/pcscd"), [check_broken, CHECKS[0]])
    assert [f.check for f in findings] == ["broken", "pcscd.installed"]
    assert findings[0].status is Status.FAULT and worst(findings) is Status.FAULT
    assert_bilingual(findings[1:])


def test_doctor_imports_its_checks_only_when_it_runs() -> None:
    code = "import sys, sscard.cli.doctor; print(any(m.startswith('sscard.cli.doctor.') for m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


def test_a_polkit_refusal_is_access_denied_and_doctor_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pcscd's SCARD_W_SECURITY_VIOLATION (polkit said no) is its own error, so doctor can name the
    fault: a permission, not a broken pcscd (faked here: this machine's pcscd has no polkit)."""
    from sscard.transports import pcsc
    from sscard.transports.pcsc_errors import pcsc_error, scard

    error = pcsc_error(scard.SCARD_W_SECURITY_VIOLATION, "SCardEstablishContext", connected=False)
    assert isinstance(error, AccessDenied) and error.code == "TRANSPORT_ERROR" and "polkit" in error.message_zh

    def refused() -> list[str]:
        raise error

    monkeypatch.setattr(pcsc, "list_readers", refused)
    fake = probe(tmp_path, group_members=lambda name: None, pcscd_features=lambda: "polkit")
    findings = run_checks(fake, CHECKS[2:5])
    answering, permission = one(findings, "pcscd.answering"), one(findings, "permission")
    assert answering.status is Status.FAULT and answering.en.startswith("permission denied: pcscd refuses user kiosk")
    assert answering.zh == "权限不足：pcscd拒绝当前用户访问（polkit）"
    assert permission.status is Status.FAULT and permission.zh.startswith("权限不足：")
    assert worst(findings) is Status.FAULT and EXIT[worst(findings)] == 2


def test_serve_and_doctor_find_each_other_through_the_config(tmp_path: Path) -> None:
    """``[service] port`` and ``socket``: ``sscard serve`` listens there and ``sscard doctor`` looks there
    (the simulated card in process: no pcscd needed for the service's side)."""
    port, path = free_port(), tmp_path / "sscard.sock"
    config = write_config(tmp_path, f'[service]\nport = {port}\nsocket = "{path}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "sscard.cli", "--config", config, "serve", "--reader", "sim:typical"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 20
        while not path.exists():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.2)
        _, payload, _ = doctor("--reader", "sim:typical", config=config)
    finally:
        process.terminate()
        process.communicate(timeout=15)
    assert_named(payload, "service.port", "ok", f"the service answers on port {port}", "响应正常")
    assert_named(payload, "service.socket", "ok", f"the national-interface socket {path} answers", "响应正常")
    assert_named(payload, "card.ssc", "ok", "a social security card", "社会保障卡")
