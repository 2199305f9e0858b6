"""End to end through the real stack: sscard -> pyscard -> pcscd -> vpcd -> simulated card.

Nothing is mocked here: pcscd is the Debian daemon, vpcd its virtual-reader driver, and the card
on the other end of the socket is our simulator.  CI fails if these are skipped (.ci/run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sscard.errors import CardRemoved, NotSsc
from sscard.ssc.application import PinState
from sscard.terminal import Terminal
from sscard.transports.pcsc import PcscReader
from sscard.transports.trace import Trace

pytestmark = pytest.mark.pcscd

SSC_PERSONAS = ["typical", "long_name", "rare_char", "letter_card_number", "expired", "pin_blocked", "v1_t0", "no_sfi"]


def sscard(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The installed console script's entry point, as a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "sscard.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SSCARD_CONFIG": ""},
    )


@pytest.mark.parametrize("persona", SSC_PERSONAS)
def test_read_every_persona_through_pcscd(persona: str, vpcd_card: Any, vpcd_reader: str) -> None:
    vpcd_card(persona)
    through_pcscd = sscard("read", "--reader", vpcd_reader, "--json")
    assert through_pcscd.returncode == 0, through_pcscd.stdout + through_pcscd.stderr
    in_process = sscard("read", "--reader", f"sim:{persona}", "--json")
    # Same card, two transports: identical contract output.
    assert json.loads(through_pcscd.stdout) == json.loads(in_process.stdout)


def test_not_ssc_through_pcscd(vpcd_card: Any, vpcd_reader: str) -> None:
    vpcd_card("not_ssc")
    run = sscard("read", "--reader", vpcd_reader, "--json")
    assert run.returncode == 4
    assert json.loads(run.stdout)["error"]["code"] == "NOT_SSC"
    with Terminal(PcscReader(vpcd_reader)) as terminal, pytest.raises(NotSsc):
        terminal.read()


def test_verify_and_blocked_through_pcscd(vpcd_card: Any, vpcd_reader: str) -> None:
    link = vpcd_card("typical")
    with Terminal(PcscReader(vpcd_reader)) as terminal:
        wrong = terminal.verify("000000")
        assert (wrong.state, wrong.tries_left) == (PinState.INCORRECT, 2)
        assert terminal.verify("123456").ok
    link.remove()
    vpcd_card("pin_blocked")
    run = sscard("verify", "--reader", vpcd_reader, "--pin-stdin", "--json", stdin="123456\n")
    assert run.returncode == 6
    assert json.loads(run.stdout)["error"]["code"] == "PIN_BLOCKED"


def test_ireadcardbas_through_pcscd(vpcd_card: Any, vpcd_reader: str) -> None:
    vpcd_card("typical")
    run = sscard(
        "read",
        "--reader",
        vpcd_reader,
        "--format",
        "ireadcardbas",
        "--terminal-id",
        "410100813475",
        "--device-id",
        "MT170701000006",
    )
    assert run.returncode == 0, run.stderr
    fields = run.stdout.strip().split("|")
    assert len(fields) == 12 and fields[-1] == ""
    assert fields[9:11] == ["410100813475", "MT170701000006"]


def test_card_pulled_mid_read_then_next_card_works(vpcd_card: Any, vpcd_reader: str) -> None:
    vpcd_card("typical", remove_after=5)
    terminal = Terminal(PcscReader(vpcd_reader))
    with pytest.raises(CardRemoved):
        terminal.read()
    PcscReader(vpcd_reader).wait_for_removal(5)
    vpcd_card("long_name")
    PcscReader(vpcd_reader).wait_for_card(5)
    card = terminal.read()
    assert card.cardholder.full_name == "穆罕默德·阿不都热西提·艾合买提江"
    terminal.close()


def test_record_then_replay(vpcd_card: Any, vpcd_reader: str, tmp_path: Path) -> None:
    vpcd_card("typical")
    out = tmp_path / "typical.apdu"
    rec = sscard("record", "--reader", vpcd_reader, "--source", "test", str(out))
    assert rec.returncode == 0, rec.stderr
    trace = Trace.load(out)
    assert trace.header["reader"] == vpcd_reader and len(trace.exchanges) == 15
    replay = sscard("replay", str(out), "--json")
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout) == json.loads(sscard("read", "--reader", "sim:typical", "--json").stdout)


def test_demo_reads_the_demo_card_through_pcscd(pcscd: Any, vpcd_reader: str) -> None:
    assert not PcscReader(vpcd_reader).card_present()
    run = sscard("demo")
    assert run.returncode == 0, run.stderr
    assert "张三" in run.stdout and "Virtual PCD" in run.stdout
    assert "PC/SC" in run.stderr
    PcscReader(vpcd_reader).wait_for_removal(5)
