"""``sscard read`` imports only what it needs (issue 11, item 14), and its argparse-free fast path
parses exactly as argparse does.

The start-up figure itself is a benchmark (benchmarks/process.py, docs/performance.md), never a
timed test; what is tested here is what makes it: the modules a read loads, taken from the process
itself (``python -X importtime`` lists every module imported), against a deny-list of what a plain
read has no use for.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sscard.cli import parser as cli_parser
from sscard.cli import read as cli_read

ROOT = Path(__file__).resolve().parents[1]

#: Never loaded by a plain ``sscard read --json`` (module names and their submodules).
DENIED = (
    "argparse",  # the fast path parses a plain read (sscard.cli.read.fast_read_args)
    "gettext",
    "construct",  # well-formed records parse without it (sscard.ssc.records)
    "cryptography",
    "secrets",
    "hmac",
    "asyncio",
    "ssl",
    "socket",
    "selectors",
    "http",
    "email",
    "urllib.request",
    "starlette",
    "uvicorn",
    "websockets",
    "prometheus_client",  # the service's /metrics only (75 ms or more to import alone)
    "serial",  # pyserial: QR scanners and ID-card readers only
    "shtab",
    "importlib.resources",
    "importlib.metadata",
    "tempfile",
    "shutil",
    "pdb",
    "unittest",
    "sscard.sim",
    "sscard.psam",
    "sscard.service",
    "sscard.session",
    "sscard.events",
    "sscard.credentials",
    "sscard.tokens",
    "sscard.qr",
    "sscard.idcard",
    "sscard.national",
    "sscard.medical",  # hospital front desks and their HTTPS client (issue 14)
    # the CLI's other command families, its parser and option builder (issue 12)
    "sscard.cli.parser",
    "sscard.cli.options",
    "sscard.cli.pin",
    "sscard.cli.cards",
    "sscard.cli.sim",
    "sscard.cli.serial",
    "sscard.cli.service",
    "sscard.cli.traces",
    "sscard.cli.tokens",
    "sscard.cli.config",
    "sscard.cli.completion",
    "sscard.bank",  # the other card applications: an SSC is recognised first (sscard.cardapp)
    "sscard.health",
    "sscard.apps.bank",
    "sscard.apps.health",
    "sscard.transports.pcsc_events",
    "sscard.transports.watch",
    "smartcard.System",  # pyscard's object layer; only its binding smartcard.scard is needed
    "smartcard.Session",
    "smartcard.CardConnection",
)


def imported_modules(argv: list[str], tmp_path: Path) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sscard", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    modules = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    modules.discard("package")  # the header line
    return modules, result


def denied_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == d or m.startswith(d + ".") for d in DENIED))


def test_a_replayed_read_loads_nothing_it_does_not_need(tmp_path: Path) -> None:
    trace = ROOT / "fixtures" / "typical-read.apdu"
    modules, result = imported_modules(["read", "--reader", f"replay:{trace}", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"cardholder"' in result.stdout
    assert "sscard.terminal" in modules and "sscard.ssc.records" in modules  # the check sees the read
    assert denied_in(modules) == []


@pytest.mark.pcscd
def test_a_pcsc_read_loads_nothing_it_does_not_need(vpcd_card: object, vpcd_reader: str, tmp_path: Path) -> None:
    vpcd_card("typical")  # type: ignore[operator]
    modules, result = imported_modules(["read", "--reader", vpcd_reader, "--json"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"cardholder"' in result.stdout
    assert "smartcard.scard" in modules and "sscard.transports.pcsc" in modules
    assert denied_in(modules) == []


def test_the_deny_list_catches_a_heavy_import(tmp_path: Path) -> None:
    """The check itself: the same read with argparse's path (--reader=…) loads argparse."""
    trace = ROOT / "fixtures" / "typical-read.apdu"
    modules, result = imported_modules(["read", f"--reader=replay:{trace}", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "argparse" in denied_in(modules)


# --- the fast path equals argparse ----------------------------------------------------------

EQUIVALENT = [
    ["read"],
    ["read", "--json"],
    ["-v", "read", "--reader", "Virtual PCD 00 00", "--json"],
    ["-vv", "--config", "a.toml", "read", "-r", "sim:typical"],
    ["read", "-v", "--config", "x.toml", "--reader", "ACR39U", "-v"],
    ["--verbose", "read", "--verbose", "--itype", "4", "--wait", "2.5", "--format", "json"],
    ["read", "--format", "ireadcardbas", "--terminal-id", "410100813475", "--device-id", "MT170701000006"],
    ["read", "--allow-partial", "--key-service", "psam", "--sam-reader", "SAM", "--photo", "p.jpg"],
    ["read", "--hsm-step1"],
    ["read", "--hsm-step2", "--json", "--reader", "x", "--reader", "y"],
    ["read", "--wait", "inf"],
    ["read", "--app", "bank", "--format", "ireadbanknumber"],
    ["read", "-r", "Virtual PCD 00 00", "--app", "health", "--json"],
    ["--config", "read", "read"],  # a configuration file named "read"
]

FALLBACK = [
    ["read", "--reader=x"],  # the = spelling
    ["read", "--rea", "x"],  # an abbreviation
    ["read", "-h"],
    ["read", "--itype", "9"],  # a wrong choice: argparse words the error
    ["read", "--app", "library"],
    ["read", "--wait", "soon"],
    ["read", "--reader"],  # a value missing
    ["read", "--reader", "-x"],
    ["read", "extra"],
    ["read", "--pin-stdin"],  # not read's
    ["readers"],
    ["--version"],
    [],
]


@pytest.mark.parametrize("argv", EQUIVALENT, ids=" ".join)
def test_fast_path_parses_as_argparse_does(argv: list[str]) -> None:
    fast = cli_read.fast_read_args(argv)
    assert fast is not None
    assert vars(fast) == vars(cli_parser.build_parser("read").parse_args(argv))


@pytest.mark.parametrize("argv", FALLBACK, ids=lambda argv: " ".join(argv) or "nothing")
def test_fast_path_leaves_anything_else_to_argparse(argv: list[str]) -> None:
    assert cli_read.fast_read_args(argv) is None


def test_commands_lists_every_command() -> None:
    """COMMANDS decides which parsers are skipped: a command missing from it would still work, but
    a command in it that does not exist would hide the others' help."""
    full = cli_parser.build_parser()
    names = set(full._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert names == cli_parser.COMMANDS
    for name in names:  # building one command lists only that one, with its options
        one = cli_parser.build_parser(name)
        assert set(one._subparsers._group_actions[0].choices) == {name}  # type: ignore[union-attr]


def test_fast_path_knows_every_option_of_read() -> None:
    parser = cli_parser.build_parser("read")
    read = parser._subparsers._group_actions[0].choices["read"]  # type: ignore[union-attr]
    options = {}
    for action in read._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help", "-v", "--verbose"):
                options[option] = action
    assert set(options) == set(cli_read.READ_OPTIONS)
    for option, action in options.items():
        dest, kind, choices = cli_read.READ_OPTIONS[option]
        assert dest == action.dest, option
        if kind is None:
            assert action.nargs == 0 and action.const is True, option
        else:
            assert (action.type or str) is kind, option
            assert tuple(action.choices) == choices if action.choices else choices is None, option


def test_pyscard_binding_alone_and_the_rest_of_pyscard_on_first_use() -> None:
    """sscard.transports.pcsc loads smartcard.scard without smartcard/__init__; code that wants the
    rest of pyscard (smartcard.Session, listReaders, smartcard.System) still gets it."""
    code = """
import sys
import sscard.transports.pcsc as pcsc
assert pcsc.scard.SCARD_S_SUCCESS == 0
assert "smartcard.Session" not in sys.modules and "smartcard.System" not in sys.modules
import smartcard
assert callable(smartcard.listReaders) and smartcard.Session.__name__ == "Session"
from smartcard.System import readers
assert callable(readers) and "__getattr__" not in vars(smartcard)
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
