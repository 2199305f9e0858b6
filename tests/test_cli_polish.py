"""The command line as a kiosk team meets it (issue 11, item 13): tables, terminals and pipes,
options, help, shell completion, ``python -m sscard``, ``install-rules``.

Terminals are real ptys (``os.openpty``) and pipes are real pipes closed early: the CLI runs as a
process (``python -m sscard``) wherever a stream's kind matters.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from sscard.cli import main
from sscard.cli.parser import build_parser
from sscard.cli.service import RULES_FILES
from sscard.cli.util import EXIT_CODES, display_width, label_rows
from sscard.sim.serial_idcard import SimulatedIdCardReader, load_idcard


@pytest.fixture(autouse=True)
def _no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the developer's own configuration out of these tests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for var in ("SSCARD_CONFIG", "SSCARD_READER", "SSCARD_TERMINAL_ID", "SSCARD_DEVICE_ID"):
        monkeypatch.delenv(var, raising=False)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err, stdin=io.StringIO(""))
    return status, out.getvalue(), err.getvalue()


def process_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    return env


SSCARD = [sys.executable, "-m", "sscard"]


# --- tables aligned by display width --------------------------------------------------------


def value_columns(text: str) -> set[int]:
    """The terminal column where each row's value starts (rows: two-space indent, label, value)."""
    columns = set()
    for line in text.splitlines():
        match = re.match(r"^  ([^!].*?)\s{2,}(\S.*)$", line)
        if match:
            columns.add(display_width(line[: match.start(2)]))
    return columns


def test_display_width_counts_chinese_as_two_columns() -> None:
    assert display_width("Name") == 4
    assert display_width("姓名") == 4
    assert display_width("社会保障号码 Social security number") == 12 + 1 + 22
    assert display_width("穆罕默德·阿不都热西提") == 2 * 10 + 1  # the middle dot is narrow here
    assert display_width("é") == 1 and display_width("e\u0301") == 1


def test_label_rows_line_values_up_in_one_column() -> None:
    rows = label_rows([("姓名", "Name", "张三"), ("社会保障号码", "Social security number", "1"), ("卡号", "No", "x")])
    assert len(value_columns("\n".join(rows))) == 1


def test_read_table_aligns_with_a_long_chinese_name() -> None:
    status, out, _ = run("read", "--reader", "sim:long_name")
    assert status == 0
    assert "穆罕默德·阿不都热西提·艾合买提江" in out
    rows = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(rows) == 15
    assert len(value_columns(out)) == 1, out


def test_idcard_table_aligns(tmp_path: Path) -> None:
    with SimulatedIdCardReader(load_idcard("zhangsan")) as reader:
        status, out, err = run("idcard", "read", "--port", reader.path)
    assert status == 0, err
    assert "公民身份号码 ID number" in out
    assert len(value_columns(out)) == 1, out


def test_token_verify_table_aligns(tmp_path: Path) -> None:
    key, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    assert run("token", "keygen", "--private", str(key), "--public", str(pub))[0] == 0
    config = tmp_path / "sscard.toml"
    config.write_text(
        f'[keys]\nservice = "none"\n[session]\nkey = "{key}"\nrequire_pin = false\n[terminal]\nid = "410100813475"\n',
        encoding="utf-8",
    )
    status, out, err = run("--config", str(config), "sign-in", "--reader", "sim:long_name", "--json")
    assert status == 0, err
    token = json.loads(out)["session"]["token"]
    status, out, err = run("token", "verify", token, "--public-key", str(pub))
    assert status == 0, err
    assert "社会保障号码 Social security number" in out
    assert len(value_columns(out)) == 1, out


# --- terminals and pipes --------------------------------------------------------------------


def run_with_pty_stderr(argv: list[str], tmp_path: Path, timeout: float = 30) -> tuple[int, str]:
    """Run the CLI with standard error on a real pty; return its status and what the pty showed."""
    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            [*SSCARD, *argv],
            stdout=subprocess.DEVNULL,
            stderr=slave,
            stdin=subprocess.DEVNULL,
            env=process_env(tmp_path),
            cwd=tmp_path,
        )
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        status = process.wait(timeout)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return status, b"".join(chunks).decode("utf-8", errors="replace")


def test_photo_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    argv = ["read", "--reader", "sim:typical", "--photo", str(tmp_path / "p.jpg")]
    status, shown = run_with_pty_stderr(argv, tmp_path)
    assert status == 0
    assert "\r照片 photo [" in shown and "2560 bytes" in shown
    result = subprocess.run(
        [*SSCARD, *argv], capture_output=True, text=True, env=process_env(tmp_path), cwd=tmp_path, timeout=30
    )
    assert result.returncode == 0
    assert "\r" not in result.stderr and "照片 photo [" not in result.stderr
    assert "photo: 2560 bytes written" in result.stderr  # the outcome is still said
    assert (tmp_path / "p.jpg").stat().st_size == 2560


@pytest.mark.pcscd
def test_wait_prompts_on_a_terminal_only(vpcd_reader: str, tmp_path: Path) -> None:
    argv = ["read", "--reader", vpcd_reader, "--wait", "0.5"]
    status, shown = run_with_pty_stderr(argv, tmp_path)
    assert status == 3  # TIMEOUT: nobody inserted a card
    assert "请插入社会保障卡" in shown and "Insert the card" in shown
    result = subprocess.run(
        [*SSCARD, *argv], capture_output=True, text=True, env=process_env(tmp_path), cwd=tmp_path, timeout=30
    )
    assert result.returncode == 3
    assert "Insert the card" not in result.stderr
    assert "TIMEOUT" in result.stderr


@pytest.mark.parametrize("extra", [[], ["--json"]], ids=["text", "json"])
def test_a_closed_stdout_ends_quietly(extra: list[str], tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before sscard writes: its write gets EPIPE
    try:
        result = subprocess.run(
            [*SSCARD, "read", "--reader", "sim:typical", *extra],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=process_env(tmp_path),
            cwd=tmp_path,
            timeout=30,
        )
    finally:
        os.close(write_end)
    assert result.stderr.decode() == ""
    assert result.returncode == 141  # 128 + SIGPIPE, as a shell reports `cat` ended by a closed pipe


def test_head_takes_the_first_line_and_nothing_else_is_said(tmp_path: Path) -> None:
    script = f'{" ".join(SSCARD)} read --reader sim:typical | head -1; echo "status ${{PIPESTATUS[0]}}" >&2'
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=process_env(tmp_path), cwd=tmp_path, timeout=30
    )
    assert result.stdout.startswith("社会保障卡 Social security card")
    assert result.stdout.count("\n") == 1
    assert "Error" not in result.stderr and "INTERNAL" not in result.stderr
    assert re.search(r"status (0|141)$", result.stderr.strip()), result.stderr


# --- options, descriptions, help ------------------------------------------------------------


def test_verbose_and_config_after_the_command(tmp_path: Path) -> None:
    config = tmp_path / "x.toml"
    config.write_text('[terminal]\nid = "410100813475"\ndevice_id = "MT170701000006"\n', encoding="utf-8")
    status, out, err = run("read", "-v", "--config", str(config), "--reader", "sim:typical", "--format", "ireadcardbas")
    assert status == 0, err
    assert "|410100813475|MT170701000006|" in out  # the file given after the command was read
    status, _, err = run("read", "--reader", "sim:typical", "--config", str(tmp_path / "missing.toml"))
    assert status == 7 and "CONFIG_ERROR" in err
    # Before the command still works, and both places add up.
    status, _, _ = run("-v", "--config", str(config), "read", "-v", "--reader", "sim:typical")
    assert status == 0


def test_verbose_after_the_command_turns_on_debug_logging(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SSCARD, "read", "--reader", "sim:typical", "-vv"],
        capture_output=True,
        text=True,
        env=process_env(tmp_path),
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 0
    assert "DEBUG sscard" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["sim", "list", "--reader", "x"],
        ["sim", "list", "--wait", "1"],
        ["replay", "fixtures/typical-read.apdu", "--reader", "x"],
        ["replay", "fixtures/typical-read.apdu", "--wait", "1"],
        ["demo", "--wait", "1"],
        ["demo", "--reader", "x"],
        ["serve", "--json"],
        ["serve", "--wait", "1"],
        ["readers", "--wait", "1"],
    ],
    ids=lambda argv: " ".join(argv[:1] + argv[-2:-1]),
)
def test_options_a_command_ignores_are_not_offered(argv: list[str]) -> None:
    status, _, _ = run(*argv)
    assert status == 2


def _subcommands(parser: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any, str]]:
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if action.__class__.__name__ == "_SubParsersAction" and choices:
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in choices.items():
                yield (*path, name), sub, helps[name]
                yield from _subcommands(sub, (*path, name))


def test_every_command_has_a_one_line_bilingual_description() -> None:
    found = list(_subcommands(build_parser()))
    assert len(found) >= 25
    for path, sub, help_text in found:
        for text in (help_text, sub.description):
            assert text and "\n" not in text, path
            english, _, chinese = text.partition(" / ")
            assert re.search(r"[a-z]", english) and re.search(r"[\u4e00-\u9fff]", chinese), (path, text)


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, _ = run("--help")  # argparse prints help on sys.stdout
    out = capsys.readouterr().out
    assert status == 0
    epilog = out[out.index("exit codes / 退出码") :]
    for code, number in EXIT_CODES.items():
        if code == "USAGE_ERROR":
            continue
        line = next(line for line in epilog.splitlines() if re.search(rf"\b{code}\b", line))
        assert line.split()[0] == str(number), (code, line)
    assert re.search(r"^  141 ", epilog, re.M) and re.search(r"^  130 ", epilog, re.M)


def test_command_help_works_for_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for path, _, _ in _subcommands(build_parser()):
        status, _, _ = run(*path, "--help")
        out = capsys.readouterr().out
        assert status == 0 and out.startswith("usage: sscard"), path
        assert " / " in out  # the bilingual description


# --- completion, python -m, install-rules ---------------------------------------------------


def test_bash_completion_script_is_accepted_and_completes(tmp_path: Path) -> None:
    status, script, _ = run("completion", "bash")
    assert status == 0
    path = tmp_path / "sscard.bash"
    path.write_text(script, encoding="utf-8")
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True, timeout=30).returncode == 0
    probe = f"""
source {path}
complete -p sscard >/dev/null || exit 9
fn=$(complete -p sscard | sed -E 's/.*-F ([^ ]+).*/\\1/')
COMP_WORDS=(sscard rea); COMP_CWORD=1; COMP_LINE="sscard rea"; COMP_POINT=${{#COMP_LINE}}
$fn sscard rea sscard
printf '%s\\n' "${{COMPREPLY[@]}}"
echo ---
COMP_WORDS=(sscard read --all); COMP_CWORD=2; COMP_LINE="sscard read --all"; COMP_POINT=${{#COMP_LINE}}
$fn sscard --all read
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    first, _, second = result.stdout.partition("---")
    assert set(first.split()) == {"read", "readers"}
    assert second.split() == ["--allow-partial"]


def test_zsh_completion_script(tmp_path: Path) -> None:
    status, script, _ = run("completion", "zsh")
    assert status == 0 and script.startswith("#compdef sscard")
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed here; bash's script was checked by a real bash")
    path = tmp_path / "_sscard"
    path.write_text(script, encoding="utf-8")
    assert subprocess.run(["zsh", "-n", str(path)], capture_output=True, timeout=30).returncode == 0


def test_python_dash_m_sscard(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SSCARD, "read", "--reader", "sim:typical", "--json"],
        capture_output=True,
        text=True,
        env=process_env(tmp_path),
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cardholder"]["name"] == "张三"
    version = subprocess.run([*SSCARD, "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("sscard ")
    bad = subprocess.run([*SSCARD, "read", "--itype", "9"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_install_rules_prints_the_packaged_files() -> None:
    status, out, _ = run("install-rules", "--print")
    assert status == 0
    rules = resources.files("sscard").joinpath("rules")
    for name, folder in RULES_FILES:
        assert f"# ---- /{folder}/{Path(name).name}\n" in out
        assert rules.joinpath(name).read_text(encoding="utf-8") in out
    assert 'SUBSYSTEM!="tty"' in out and "org.debian.pcsc-lite.access_pcsc" in out


def test_install_rules_under_a_destination(tmp_path: Path) -> None:
    status, _, err = run("install-rules", "--dest", str(tmp_path / "root"))
    assert status == 0, err
    rules = resources.files("sscard").joinpath("rules")
    for name, folder in RULES_FILES:
        target = tmp_path / "root" / folder / Path(name).name
        assert target.read_bytes() == rules.joinpath(name).read_bytes()
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert "udevadm control --reload-rules" in err


def test_install_rules_that_cannot_be_written_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    status, _, err = run("install-rules", "--dest", str(blocker))
    assert status == 2 and "USAGE_ERROR" in err and "--print" in err
