"""Faults a kiosk meets in the field (issue 3): the card pulled at every APDU, a card swapped between
two operations, two processes on one card, a reader held by another program.

Each fault runs twice where it can: in-process (``sim:``, fast, every index) and through the real
pcscd + vpcd stack (``@pytest.mark.pcscd``), where the card really vanishes from under pcscd.
The rule under test is always the same: an ordinary, typed error (CARD_REMOVED, CARD_CHANGED,
READER_BUSY), never a partial record, never a hang, and the next card works on the same terminal
without restarting anything.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sscard.errors import CardChanged, CardRemoved, NoCard, ReaderBusy
from sscard.sim import Persona, SimulatedCard, load_persona
from sscard.ssc.application import PinState
from sscard.terminal import Terminal
from sscard.transports.sim import SimReader
from support import pcsc_env

PIN, WRONG, NEW = "123456", "654321", "112233"
#: No single operation may take longer than this, removal detection included: a hang fails the test.
HANG_LIMIT = 20.0

Operation = Callable[[Terminal], Any]
OPERATIONS: dict[str, Operation] = {
    "read": lambda t: t.read(),
    "verify": lambda t: t.verify(PIN),
    "verify-wrong": lambda t: t.verify(WRONG),
    "change-pin": lambda t: t.change_pin(PIN, NEW),
}


def within_limit(operation: Operation, terminal: Terminal) -> Any:
    """Run ``operation`` on a thread; fail (rather than hang the suite) if it does not end in time."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = operation(terminal)
        except BaseException as exc:  # handed back to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_LIMIT)
    assert not thread.is_alive(), f"operation still running after {HANG_LIMIT} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def apdus_of(name: str) -> int:
    """How many APDUs the operation sends to a fresh typical card (in-process)."""
    card = SimulatedCard(load_persona("typical"))
    with Terminal(SimReader(card, "sim:count")) as terminal:
        OPERATIONS[name](terminal)
    return card.apdu_count


def check_pulled(name: str, exc: CardRemoved, card: SimulatedCard, index: int, during: bool, *, exact: bool) -> None:
    """What a pull may honestly produce: CARD_REMOVED, flagged when a PIN command may have reached the card.

    ``remove_after=i`` makes APDU i+1 the first to fail; ``remove_during=i`` makes APDU i run on the
    card and its answer vanish.  The PIN command is the last APDU of a PIN operation.  ``exact``: the
    transport can tell a command that never left (in process); over PC/SC a command that failed on
    a vanished card may or may not have reached it, and saying "may have counted" is then honest.
    """
    pin_command = apdus_of(name)
    failing = index if during else index + 1
    pin_sent = exc.fields.get("pin_sent")
    if name == "read" or failing < pin_command:
        assert not pin_sent
    elif during:
        assert pin_sent is True, "the card counted the try: say so"
        assert "may have counted" in exc.message and "可能已计入" in exc.message_zh
    elif exact:
        assert not pin_sent, "the PIN never left: do not claim it may have counted"
    if name == "verify-wrong":
        # The card's counter matches what the kiosk was told: spent only if the VERIFY ran.
        spent = during and failing == pin_command
        assert card.tries_left == (2 if spent else 3)
        assert spent <= bool(pin_sent)


# -- removal at every APDU, in process ----------------------------------------------------------


def _cases() -> list[tuple[str, int, bool]]:
    cases = []
    for name in OPERATIONS:
        count = apdus_of(name)
        # answered i APDUs, then gone (i = 0 would be a card gone before connecting: NO_CARD)
        cases += [(name, i, False) for i in range(1, count)]
        cases += [(name, i, True) for i in range(1, count + 1)]  # ran APDU i, gone before answering
    return cases


@pytest.mark.parametrize(("name", "index", "during"), _cases(), ids=lambda v: str(v))
def test_pulled_at_every_apdu_in_process(name: str, index: int, during: bool) -> None:
    persona = load_persona("typical")
    pulled = SimulatedCard(persona, **({"remove_during": index} if during else {"remove_after": index}))
    reader = SimReader(pulled, "sim:pull")
    terminal = Terminal(reader)
    with pytest.raises(CardRemoved) as caught:
        within_limit(OPERATIONS[name], terminal)
    check_pulled(name, caught.value, pulled, index, during, exact=True)
    assert terminal.transport is None, "a connection to a pulled card is dropped"

    reader.insert(SimulatedCard(persona))
    result = within_limit(OPERATIONS[name], terminal)
    _check_success(name, result)


def _check_success(name: str, result: Any) -> None:
    if name == "read":
        assert result.cardholder.full_name == "张三" and result.issuer.card_number == "102307185"
    elif name == "verify-wrong":
        assert result.state is PinState.INCORRECT and result.tries_left == 2
    else:
        assert result.state is PinState.VERIFIED


def test_every_answered_prefix_then_success() -> None:
    """``remove_after`` = the whole operation: the card leaves after the last answer; results stand."""
    for name, operation in OPERATIONS.items():
        card = SimulatedCard(load_persona("typical"), remove_after=apdus_of(name))
        _check_success(name, within_limit(operation, Terminal(SimReader(card, "sim:late"))))


# -- removal at every APDU, through pcscd + vpcd ------------------------------------------------


def _pcscd_cases() -> list[tuple[str, int, bool]]:
    """Every index of every operation; ``during`` only at the PIN command (the case it changes)."""
    cases = []
    for name in OPERATIONS:
        count = apdus_of(name)
        cases += [(name, i, False) for i in range(count)]
        if name != "read":
            cases.append((name, count, True))
    return cases


@pytest.mark.pcscd
def test_pulled_at_every_apdu_through_pcscd(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str) -> None:
    """One terminal for the whole run: after every pull the next card works without a restart."""
    terminal = Terminal.open(vpcd_reader)
    failures: list[str] = []
    for name, index, during in _pcscd_cases():
        # Forget the card read in an earlier round, so PIN operations send exactly apdus_of(name)
        # APDUs (the same-card check after a reconnect adds one READ RECORD; tested with the swaps).
        terminal.card_identity = None
        link = vpcd_card("typical", **({"remove_during": index} if during else {"remove_after": index}))
        try:
            within_limit(OPERATIONS[name], terminal)
            failures.append(f"{name} pulled at {index} (during={during}) did not fail")
        except CardRemoved as exc:
            check_pulled(name, exc, link.card, index, during, exact=False)
        except NoCard:
            # remove_after=0 pulls the card at power-up: pcscd may see it gone before we connect.
            assert index == 0 and not during
        link.remove()
        pcsc_env.wait_for_reader(vpcd_reader, present=False)
        fresh = vpcd_card("typical")
        _check_success(name, within_limit(OPERATIONS[name], terminal))
        fresh.remove()
        pcsc_env.wait_for_reader(vpcd_reader, present=False)
    terminal.close()
    assert not failures


# -- card swaps ---------------------------------------------------------------------------------


def other_card(persona: Persona) -> Persona:
    """The same kind of card (same ATR), another resident: only the identification code tells."""
    assert persona.ef05 is not None
    ef05 = dataclasses.replace(
        persona.ef05, identification_code=bytes.fromhex("110100D15600000500A3C1E5FFFFFFFF"), card_number="102307186"
    )
    return dataclasses.replace(persona, name=persona.name + "-other", ef05=ef05)


@pytest.mark.parametrize("swap_to", ["long_name", "same-atr"])
def test_swap_between_read_and_verify_in_process(swap_to: str) -> None:
    typical = load_persona("typical")
    second = other_card(typical) if swap_to == "same-atr" else load_persona(swap_to)
    reader = SimReader(SimulatedCard(typical), "sim:swap")
    terminal = Terminal(reader)
    first = terminal.read()
    new_card = SimulatedCard(second)
    reader.insert(new_card)
    with pytest.raises(CardChanged):
        terminal.verify(PIN)
    assert new_card.tries_left == 3 and not new_card.pin_verified
    assert all(entry[:2] != b"\x00\x20" for entry in _commands(new_card)), "no VERIFY reached the new card"
    again = terminal.read()
    assert again.issuer.card_number != first.issuer.card_number
    assert terminal.verify(PIN).state is PinState.VERIFIED


def _commands(card: SimulatedCard) -> list[bytes]:
    return list(card.command_log)


@pytest.mark.pcscd
def test_swap_between_read_and_verify_through_pcscd(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str) -> None:
    terminal = Terminal.open(vpcd_reader)
    first_link = vpcd_card("typical")
    first = terminal.read()
    first_link.remove()
    pcsc_env.wait_for_reader(vpcd_reader, present=False)
    second_link = vpcd_card(other_card(load_persona("typical")))
    with pytest.raises(CardChanged) as caught:
        within_limit(OPERATIONS["verify"], terminal)
    assert caught.value.code == "CARD_CHANGED" and "重新读卡" in caught.value.message_zh
    assert second_link.card.tries_left == 3 and not second_link.card.pin_verified
    data = terminal.read()
    assert data.issuer.card_number == "102307186" != first.issuer.card_number
    assert terminal.verify(PIN).state is PinState.VERIFIED
    terminal.close()


# -- two processes, one card --------------------------------------------------------------------

WORKER = """
import json, sys
from sscard.terminal import Terminal
reader, rounds = sys.argv[1], int(sys.argv[2])
results = []
with Terminal.open(reader) as terminal:
    for _ in range(rounds):
        results.append(json.dumps(terminal.read().to_json(), sort_keys=True, ensure_ascii=False))
print(json.dumps({"distinct": sorted(set(results)), "count": len(results)}, ensure_ascii=False))
"""


@pytest.mark.pcscd
def test_two_processes_read_the_same_card_50_times_each(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str) -> None:
    """Each read is one PC/SC transaction: the card's command log shows whole reads, never interleaved."""
    link = vpcd_card("typical")
    expected = Terminal.open(vpcd_reader)
    reference = json.dumps(expected.read().to_json(), sort_keys=True, ensure_ascii=False)
    expected.close()
    per_read = apdus_of("read")
    link.card.command_log.clear()

    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, vpcd_reader, "50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        report = json.loads(out)
        assert report == {"distinct": [reference], "count": 50}

    log = list(link.card.command_log)
    assert len(log) == 100 * per_read
    pattern = [entry[:4] for entry in log[:per_read]]
    assert pattern[0][:2] == b"\x00\xa4", "each read starts with its own SELECT"
    for start in range(0, len(log), per_read):
        assert [entry[:4] for entry in log[start : start + per_read]] == pattern, f"interleaved at APDU {start}"


# -- a reader held exclusively by another program -----------------------------------------------


@pytest.mark.pcscd
def test_reader_held_exclusively_gives_reader_busy(
    vpcd_card: pcsc_env.InsertCard, vpcd_reader: str, tmp_path: Path
) -> None:
    vpcd_card("typical")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_EXCLUSIVE, vpcd_reader], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        config = tmp_path / "sscard.toml"
        config.write_text(f'[reader]\nname = "{vpcd_reader}"\nbusy_wait = 0.5\n', encoding="utf-8")
        from sscard.config import load_config

        terminal = Terminal.open(config=load_config(config))
        started = time.monotonic()
        with pytest.raises(ReaderBusy) as caught:
            within_limit(lambda t: t.read(), terminal)
        waited = time.monotonic() - started
        assert waited >= 0.5, "busy_wait is honoured before giving up"
        error = caught.value.to_dict()
        assert error["code"] == "READER_BUSY"
        assert "Close that program" in error["message"] and "busy_wait" in error["message"]
        assert "关闭该程序" in error["message_zh"]
    finally:
        holder.terminate()
        holder.communicate(timeout=10)
    # Once the other program lets go, the same terminal reads.
    assert terminal.read().cardholder.full_name == "张三"
    terminal.close()


HOLD_EXCLUSIVE = """
import sys, time
from sscard.transports.pcsc import PcscReader
transport = PcscReader(sys.argv[1]).connect(share="exclusive")
print("held", flush=True)
time.sleep(60)
"""
