"""The PC/SC transport through the real pcscd and vsmartcard's vpcd reader, the simulator as the card.

Nothing is mocked: each PC/SC result code the tests provoke (no card, card pulled, reader held
exclusively, no service) comes from pcscd itself.  The fixtures (``pcscd``, ``vpcd_reader``,
``vpcd_card``) are in conftest.py; the card in the other vpcd slot is used only where a test needs
two readers to differ.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from smartcard import scard

from sscard.apdu.command import Command
from sscard.apdu.processors import standard_stack, transceive
from sscard.errors import (
    CardRemoved,
    CardReset,
    NoCard,
    NoReader,
    NoService,
    ReaderBusy,
    Timeout,
    TransportFailure,
)
from sscard.sim import VpcdLink
from sscard.transports import pcsc
from sscard.transports.base import Reader, Transport
from sscard.transports.pcsc import PcscReader, PcscTransport, find_reader, list_readers, pcsc_error
from support import pcsc_env

pytestmark = pytest.mark.pcscd

InsertCard = Callable[..., VpcdLink]

SSSE_AID = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")
SELECT_SSSE = bytes.fromhex("00A404000F") + SSSE_AID
OTHER_SLOT = 1 if pcsc_env.DEFAULT_SLOT == 0 else 0


@pytest.fixture
def reader(vpcd_reader: str) -> PcscReader:
    return PcscReader(vpcd_reader)


@pytest.fixture
def connected(reader: PcscReader, vpcd_card: InsertCard) -> Iterator[tuple[PcscTransport, VpcdLink]]:
    link = vpcd_card("typical")
    transport = reader.connect()
    yield transport, link
    transport.close()


def _in_thread(delay: float, action: Callable[[], object]) -> threading.Thread:
    """Run ``action`` after ``delay`` seconds in another thread (a person inserting or pulling a card)."""

    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def held_card(vpcd_card: InsertCard, vpcd_reader: str) -> Iterator[Callable[[], None]]:
    """A card held exclusively by another program (its own PC/SC context); call the result to let go."""
    vpcd_card("typical")
    code, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert code == scard.SCARD_S_SUCCESS
    code, handle, _ = scard.SCardConnect(
        context, vpcd_reader, scard.SCARD_SHARE_EXCLUSIVE, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
    )
    assert code == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(code)
    lock = threading.Lock()
    held = [True]

    def release() -> None:
        with lock:
            if held[0]:
                held[0] = False
                scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
                scard.SCardReleaseContext(context)

    yield release
    release()


# --- readers ---------------------------------------------------------------------------------


def test_list_readers_shows_both_vpcd_readers() -> None:
    readers = list_readers()
    assert pcsc_env.reader_name(0) in readers
    assert pcsc_env.reader_name(1) in readers


def test_find_reader_by_case_insensitive_substring() -> None:
    assert find_reader(pcsc_env.reader_name(0).lower()) == pcsc_env.reader_name(0)
    assert find_reader(f"pcd 00 {OTHER_SLOT:02d}") == pcsc_env.reader_name(OTHER_SLOT)


def test_find_reader_without_pattern_prefers_the_reader_with_a_card(vpcd_card: InsertCard, vpcd_reader: str) -> None:
    if pcsc_env.card_present(vpcd_reader):
        pytest.fail(f"{vpcd_reader} should be empty at the start of a test")
    vpcd_card("typical", slot=OTHER_SLOT)
    assert find_reader(None) == pcsc_env.reader_name(OTHER_SLOT)
    assert find_reader("") == pcsc_env.reader_name(OTHER_SLOT)


def test_find_reader_without_pattern_or_card_takes_the_first_reader() -> None:
    readers = list_readers()
    occupied = [name for name in readers if pcsc_env.card_present(name)]
    assert not occupied, f"a card left in {occupied} (a concurrent run?) makes this test meaningless"
    assert find_reader(None) == readers[0]


def test_find_reader_names_the_pattern_and_the_readers_that_exist() -> None:
    with pytest.raises(NoReader) as info:
        find_reader("ACR39U")
    error = info.value
    assert error.code == "NO_READER"
    assert error.detail is not None
    assert "'ACR39U'" in error.detail
    assert repr(pcsc_env.reader_name(0)) in error.detail


def test_reader_satisfies_the_reader_protocol(reader: PcscReader) -> None:
    assert isinstance(reader, Reader)
    assert reader.name == pcsc_env.reader_name()


def test_unknown_reader_is_no_reader() -> None:
    ghost = PcscReader("No Such Reader 00 00")
    with pytest.raises(NoReader):
        ghost.card_present()
    with pytest.raises(NoReader):
        ghost.connect()


# --- connecting and talking ------------------------------------------------------------------


def test_connect_to_an_empty_reader_is_no_card(reader: PcscReader) -> None:
    assert not reader.card_present()
    with pytest.raises(NoCard) as info:
        reader.connect()
    assert info.value.code == "NO_CARD"
    assert "0x8010000C" in str(info.value.detail)


def test_connect_reports_atr_protocol_and_selects_ssse(reader: PcscReader, vpcd_card: InsertCard) -> None:
    link = vpcd_card("typical")
    assert reader.card_present()
    transport = reader.connect()
    try:
        assert isinstance(transport, Transport)
        assert transport.name == reader.name
        assert transport.atr == link.card.atr
        assert transport.protocol == link.card.protocol  # the persona's ATR offers only that one
        assert reader.last is transport
        with transport.transaction():
            raw = transport.transmit(SELECT_SSSE)
            assert raw[-2:] == b"\x90\x00" or raw[-2] == 0x61
            fci = transceive(standard_stack(transport), Command(0x00, 0xA4, 0x04, 0x00, SSSE_AID, le=256))
        assert fci[0] == 0x6F
        assert SSSE_AID in fci
    finally:
        transport.close()


def test_not_an_ssc_answers_6a82_through_pcscd(reader: PcscReader, vpcd_card: InsertCard) -> None:
    vpcd_card("not_ssc")
    with reader.connect() as transport:
        assert transport.transmit(SELECT_SSSE) == b"\x6a\x82"


def test_protocol_choice_is_honoured(reader: PcscReader, vpcd_card: InsertCard) -> None:
    link = vpcd_card("typical")
    with reader.connect(protocols="T0|T1") as transport:
        active = transport.protocol
    assert active == link.card.protocol
    other = "T1" if active == "T=0" else "T0"
    with pytest.raises(TransportFailure):  # the card does not offer it: pcscd says protocol mismatch
        reader.connect(protocols=other)
    with pytest.raises(ValueError):
        reader.connect(protocols="T2")
    with pytest.raises(ValueError):
        reader.connect(share="direct")


def test_close_is_idempotent_and_ends_the_connection(connected: tuple[PcscTransport, VpcdLink]) -> None:
    transport, _ = connected
    transport.close()
    transport.close()
    assert transport.closed
    with pytest.raises(TransportFailure, match="closed"):
        transport.transmit(SELECT_SSSE)


def test_transaction_keeps_another_connection_out_until_it_ends(
    reader: PcscReader, connected: tuple[PcscTransport, VpcdLink]
) -> None:
    ours, _ = connected
    theirs = reader.connect()  # shared, in its own PC/SC context
    got_in = threading.Event()

    def other_program() -> None:
        with theirs.transaction():
            got_in.set()

    try:
        with ours.transaction():
            thread = _in_thread(0, other_program)
            assert not got_in.wait(0.5), "a second transaction got in while ours was held"
            ours.transmit(SELECT_SSSE)
        assert got_in.wait(5), "the second transaction never got in after ours ended"
        thread.join(5)
    finally:
        theirs.close()


def test_an_error_inside_a_transaction_propagates_and_ends_it(
    connected: tuple[PcscTransport, VpcdLink],
) -> None:
    transport, _ = connected
    with pytest.raises(KeyError), transport.transaction():
        transport.transmit(SELECT_SSSE)
        raise KeyError("boom")
    with transport.transaction():  # ended above, so it can be taken again
        assert len(transport.transmit(SELECT_SSSE)) >= 2


# --- the card goes away ----------------------------------------------------------------------


def test_card_pulled_mid_session_then_a_new_card_works(reader: PcscReader, vpcd_card: InsertCard) -> None:
    link = vpcd_card("typical")
    transport = reader.connect()
    try:
        transport.transmit(SELECT_SSSE)
        link.remove()
        with pytest.raises(CardRemoved) as info:
            transport.transmit(SELECT_SSSE)
        assert info.value.code == "CARD_REMOVED"
    finally:
        transport.close()
    assert not reader.card_present()
    vpcd_card("typical")
    with reader.connect() as again:
        assert len(again.transmit(SELECT_SSSE)) >= 2


@pytest.mark.parametrize("remove_after", [1, 3])
def test_card_vanishing_after_n_apdus_is_card_removed(
    reader: PcscReader, vpcd_card: InsertCard, remove_after: int
) -> None:
    vpcd_card("typical", remove_after=remove_after)
    transport = reader.connect()
    try:
        # raised inside the transaction, and not masked by ending it
        with pytest.raises(CardRemoved), transport.transaction():
            for _ in range(remove_after):
                transport.transmit(SELECT_SSSE)
            transport.transmit(SELECT_SSSE)
    finally:
        transport.close()
    reader.wait_for_removal(5)
    vpcd_card("typical")
    with reader.connect() as again:
        assert len(again.transmit(SELECT_SSSE)) >= 2


def test_removed_card_error_mapping_depends_on_whether_we_were_connected() -> None:
    removed = scard.SCARD_W_REMOVED_CARD
    assert isinstance(pcsc_error(removed, "SCardTransmit"), CardRemoved)
    assert isinstance(pcsc_error(removed, "SCardConnect", connected=False), NoCard)
    assert isinstance(pcsc_error(scard.SCARD_E_NO_SMARTCARD, "SCardConnect", connected=False), NoCard)
    assert isinstance(pcsc_error(scard.SCARD_W_RESET_CARD, "SCardTransmit"), CardReset)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("SCARD_E_NO_SERVICE", "NO_SERVICE"),
        ("SCARD_E_SERVICE_STOPPED", "NO_SERVICE"),
        ("SCARD_E_NO_READERS_AVAILABLE", "NO_READER"),
        ("SCARD_E_UNKNOWN_READER", "NO_READER"),
        ("SCARD_E_READER_UNAVAILABLE", "NO_READER"),
        ("SCARD_E_SHARING_VIOLATION", "READER_BUSY"),
        ("SCARD_W_UNRESPONSIVE_CARD", "CARD_MUTE"),
        ("SCARD_W_UNPOWERED_CARD", "CARD_MUTE"),
        ("SCARD_E_TIMEOUT", "TIMEOUT"),
        ("SCARD_E_NOT_TRANSACTED", "TRANSPORT_ERROR"),
        ("SCARD_F_COMM_ERROR", "TRANSPORT_ERROR"),
    ],
)
def test_pcsc_result_codes_map_to_actionable_errors(code: str, expected: str) -> None:
    value = getattr(scard, code)
    error = pcsc_error(value, "SCardSomething")
    assert error.code == expected
    assert f"0x{value & 0xFFFFFFFF:08X}" in str(error.detail)
    assert scard.SCardGetErrorMessage(value) in str(error.detail)


def test_unmapped_code_keeps_hex_and_pyscard_text() -> None:
    error = pcsc_error(0x80100099, "SCardTransmit('r')")
    assert isinstance(error, TransportFailure)
    assert error.detail is not None
    assert error.detail.startswith("SCardTransmit('r'): PC/SC 0x80100099 (")


# --- a reader held by another program ----------------------------------------------------------


def test_exclusive_holder_makes_connect_reader_busy_after_busy_wait(
    vpcd_reader: str, held_card: Callable[[], None]
) -> None:
    reader = PcscReader(vpcd_reader, busy_wait=0.6)
    started = time.monotonic()
    with pytest.raises(ReaderBusy) as info:
        reader.connect()
    waited = time.monotonic() - started
    assert 0.6 <= waited < 3
    assert info.value.code == "READER_BUSY"
    assert "after waiting 0.6 s" in str(info.value.detail)
    started = time.monotonic()
    with pytest.raises(ReaderBusy):
        reader.connect(busy_wait=0)
    assert time.monotonic() - started < 0.5


def test_connect_gets_the_reader_when_the_exclusive_holder_lets_go(
    vpcd_reader: str, held_card: Callable[[], None]
) -> None:
    reader = PcscReader(vpcd_reader, busy_wait=5)
    _in_thread(0.4, held_card)
    started = time.monotonic()
    with reader.connect() as transport:
        assert len(transport.transmit(SELECT_SSSE)) >= 2
    assert 0.3 <= time.monotonic() - started < 3


def test_our_exclusive_connection_keeps_others_out(reader: PcscReader, vpcd_card: InsertCard) -> None:
    vpcd_card("typical")
    with reader.connect(share="exclusive") as ours:
        with pytest.raises(ReaderBusy):
            reader.connect()
        assert len(ours.transmit(SELECT_SSSE)) >= 2
    with reader.connect() as after:  # released on close
        assert len(after.transmit(SELECT_SSSE)) >= 2


# --- no service --------------------------------------------------------------------------------


def test_no_pcscd_is_no_service() -> None:
    """pcsc-lite's client library looks for pcscd where PCSCLITE_CSOCK_NAME says; nothing is there."""
    script = (
        "from sscard.errors import SscardError\n"
        "from sscard.transports.pcsc import list_readers\n"
        "try:\n"
        "    list_readers()\n"
        "except SscardError as exc:\n"
        "    print(exc.code)\n"
        "else:\n"
        "    print('NO ERROR')\n"
    )
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "NO_SERVICE"
    assert NoService.code == "NO_SERVICE"


# --- waiting for cards -------------------------------------------------------------------------


def test_wait_for_card_returns_when_a_card_is_inserted(reader: PcscReader, vpcd_card: InsertCard) -> None:
    assert not reader.card_present()
    inserted = _in_thread(0.5, vpcd_card)
    started = time.monotonic()
    reader.wait_for_card(10)
    assert 0.4 <= time.monotonic() - started < 5
    inserted.join(10)
    assert reader.card_present()


def test_wait_for_card_returns_at_once_when_a_card_is_there(reader: PcscReader, vpcd_card: InsertCard) -> None:
    vpcd_card("typical")
    started = time.monotonic()
    reader.wait_for_card(0)
    reader.wait_for_card(5)
    assert time.monotonic() - started < 0.5


def test_wait_for_card_times_out_naming_the_card(reader: PcscReader) -> None:
    started = time.monotonic()
    with pytest.raises(Timeout) as info:
        reader.wait_for_card(0.7)
    assert 0.7 <= time.monotonic() - started < 2
    assert info.value.code == "TIMEOUT"
    assert "card" in info.value.message


def test_wait_for_removal(reader: PcscReader, vpcd_card: InsertCard) -> None:
    link = vpcd_card("typical")
    with pytest.raises(Timeout):
        reader.wait_for_removal(0.3)
    _in_thread(0.4, link.remove)
    started = time.monotonic()
    reader.wait_for_removal(10)
    assert 0.3 <= time.monotonic() - started < 5
    assert not reader.card_present()


def test_waiting_blocks_on_pcscd_in_slices_of_at_most_a_second(
    reader: PcscReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No sleep-polling, and never more than a second inside pyscard, so Ctrl-C gets through."""
    real = scard.SCardGetStatusChange
    timeouts: list[int] = []

    def spy(context: Any, timeout: int, states: Any) -> Any:
        timeouts.append(timeout)
        return real(context, timeout, states)

    monkeypatch.setattr(scard, "SCardGetStatusChange", spy)  # the module object pcsc uses
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    started = time.monotonic()
    with pytest.raises(Timeout):
        reader.wait_for_card(2.5)
    assert 2.5 <= time.monotonic() - started < 4
    assert sleeps == []
    assert max(timeouts) <= pcsc.WAIT_SLICE_MS
    assert len(timeouts) <= 5  # first look + three blocking slices (+1 for rounding)
