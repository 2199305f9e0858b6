"""QR scanners: classification, line framing, rejection and recovery, dedup, unplug and replug.

Everything below the classifier runs over a REAL pseudo-terminal pair: the simulated scanner
(:class:`~sscard.sim.serial_qr.SimulatedQrScanner`) writes the master side, and the scanner under
test reads the slave side through pyserial (:class:`~sscard.transports.serial.SerialPort`).
Nothing of pyserial is mocked.  Lines are built with :func:`line`, so each test reads as what the
scanner puts on the wire (docs/design.md §8).  Time limits are generous upper bounds against hangs,
never assertions about speed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sscard.errors import ConfigError, DeviceRemoved, ScanRejected
from sscard.qr import (
    Backoff,
    QrConfig,
    QrCredential,
    QrKind,
    QrScanner,
    ScannerRestored,
    ScanResult,
    classify,
    load_formats,
)
from sscard.sim.serial_qr import CR, CRLF, LF, SimulatedQrScanner
from sscard.transports.serial import SerialPort

EVOUCHER = "4243754826492874240001130000"  # docs/card-reference.md §9
EVOUCHER_2 = "4241234567890123456789330000"
ESSC = "ESSCsim0TestToken0NotReal0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4"  # 74 chars, see qr_formats.toml
UNKNOWN = "https://example.org/not-a-credential?id=42"
STX, ETX = b"\x02", b"\x03"
LONG = 5.0  # upper bound for anything that should take milliseconds
FAST = Backoff(first=0.02, factor=2.0, ceiling=0.1)


def line(code: str | bytes, terminator: bytes = CR, prefix: bytes = b"", suffix: bytes = b"") -> bytes:
    """One scan as a scanner sends it: prefix, code, suffix, terminator."""
    body = code.encode("ascii") if isinstance(code, str) else code
    return prefix + body + suffix + terminator


class Clock:
    """Monotonic time that a test can move forward (for the dedup window, without sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatedQrScanner]:
    with SimulatedQrScanner(link=tmp_path / "sscard-qr") as scanner:
        yield scanner


@pytest.fixture
def port(sim: SimulatedQrScanner) -> Iterator[SerialPort]:
    with SerialPort(sim.path, 9600) as opened:
        yield opened


@pytest.fixture
def make_scanner(port: SerialPort) -> Callable[..., QrScanner]:
    def make(clock: Callable[[], float] = time.monotonic, **config: object) -> QrScanner:
        return QrScanner(port, QrConfig(**config), clock=clock)  # type: ignore[arg-type]

    return make


def read(scanner: QrScanner) -> QrCredential:
    credential = scanner.read_scan(timeout=LONG)
    assert credential is not None, "no scan within the upper bound"
    return credential


def rejected(scanner: QrScanner) -> str:
    with pytest.raises(ScanRejected) as info:
        scanner.read_scan(timeout=LONG)
    return str(info.value.fields["reason"])


# --- classification (data-driven, no device) ---------------------------------------------------


def test_kinds_are_exactly_the_three_json_values() -> None:
    assert [kind.value for kind in QrKind] == ["medical_insurance_evoucher", "electronic_ssc", "unknown"]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (EVOUCHER, QrKind.MEDICAL_INSURANCE_EVOUCHER),
        (EVOUCHER_2, QrKind.MEDICAL_INSURANCE_EVOUCHER),
        (EVOUCHER[:-1], QrKind.UNKNOWN),  # 27 digits
        (EVOUCHER + "0", QrKind.UNKNOWN),  # 29 digits
        ("425" + EVOUCHER[3:], QrKind.UNKNOWN),  # not the 424 mark
        (EVOUCHER[:-1] + "A", QrKind.UNKNOWN),
        ("424３754826492874240001130000", QrKind.UNKNOWN),  # a full-width digit is not \d here
        (ESSC, QrKind.ELECTRONIC_SSC),
        ("a1" * 32, QrKind.ELECTRONIC_SSC),  # 64 characters: the shortest accepted
        ("a1" * 31 + "a", QrKind.UNKNOWN),  # 63
        ("1" * 80, QrKind.UNKNOWN),  # digits only: not the opaque-token rule
        ("abcdef" * 14, QrKind.UNKNOWN),  # letters only
        ("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.sig0", QrKind.UNKNOWN),
        (UNKNOWN, QrKind.UNKNOWN),
        ("hello", QrKind.UNKNOWN),
    ],
)
def test_classify(code: str, kind: QrKind) -> None:
    assert classify(code) is kind


def test_bundled_rules_carry_their_source_and_match_their_examples() -> None:
    formats = load_formats()
    assert [fmt.kind for fmt in formats.formats] == [QrKind.MEDICAL_INSURANCE_EVOUCHER, QrKind.ELECTRONIC_SSC]
    evoucher = formats.get(QrKind.MEDICAL_INSURANCE_EVOUCHER)
    essc = formats.get(QrKind.ELECTRONIC_SSC)
    assert evoucher is not None and essc is not None
    assert evoucher.confidence == "one source" and "docs/card-reference.md §9.1" in evoucher.source
    assert essc.confidence == "unconfirmed"
    assert evoucher.example == EVOUCHER and essc.example == ESSC


def test_a_site_can_bring_its_own_rules(tmp_path: Path) -> None:
    path = tmp_path / "formats.toml"
    path.write_text(
        "schema = 1\n[kinds.electronic_ssc]\npatterns = ['^ESSC:[0-9]{10}$']\nexample = \"ESSC:0123456789\"\n",
        encoding="utf-8",
    )
    formats = load_formats(path)
    assert classify("ESSC:0123456789", formats) is QrKind.ELECTRONIC_SSC
    assert classify(EVOUCHER, formats) is QrKind.UNKNOWN  # only the kinds the file names


@pytest.mark.parametrize(
    "text",
    [
        "[kinds.unknown]\npatterns = ['.*']\n",  # unknown is the fallback
        "[kinds.bus_ticket]\npatterns = ['.*']\n",  # not a QrKind
        "[kinds.electronic_ssc]\npatterns = ['(']\n",  # not a regex
        "[kinds.electronic_ssc]\npatterns = []\n",
        "[kinds.electronic_ssc]\npatterns = ['^A$']\nexample = 'B'\n",  # example contradicts rule
        "kinds = [",
    ],
)
def test_a_broken_rules_file_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "formats.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError):
        load_formats(path)


@pytest.mark.parametrize(
    "config",
    [
        {"terminator": "TAB"},
        {"baudrate": 0},
        {"max_length": 0},
        {"dedup_window": -1.0},
        {"inter_char_timeout": 0.0},
        {"terminator": "CR", "suffix": b"\r"},
    ],
)
def test_bad_configuration_is_a_config_error(config: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        QrConfig(**config)  # type: ignore[arg-type]


def test_terminator_names_are_case_insensitive() -> None:
    assert QrConfig(terminator="crlf").terminator == "CRLF"
    assert QrConfig(terminator="None").terminator_bytes == b""


# --- the simulator puts exactly the line on the wire ----------------------------------------------


def test_simulated_scan_writes_the_line_bytes(sim: SimulatedQrScanner, port: SerialPort) -> None:
    sim.scan(EVOUCHER, terminator=CRLF, prefix=STX, suffix=ETX)
    expected = line(EVOUCHER, CRLF, STX, ETX)
    received = b""
    deadline = time.monotonic() + LONG
    while len(received) < len(expected) and time.monotonic() < deadline:
        received += port.read(len(expected) - len(received), 0.5)
    assert received == b"\x02" + EVOUCHER.encode() + b"\x03\r\n"


def test_simulator_link_follows_the_pty(sim: SimulatedQrScanner) -> None:
    link = Path(sim.path)
    first = sim.slave_path
    assert link.is_symlink() and str(link.resolve()) == first
    sim.unplug()
    assert not link.exists() and not sim.plugged and sim.slave_path is None
    with pytest.raises(DeviceRemoved):
        sim.scan(EVOUCHER)
    sim.plug()
    assert link.is_symlink() and str(link.resolve()) == sim.slave_path


def test_simulator_knows_when_a_reader_has_the_port_open(sim: SimulatedQrScanner) -> None:
    assert not sim.wait_for_reader(timeout=0.1)
    with SerialPort(sim.path, 9600):
        assert sim.wait_for_reader(timeout=LONG)
    assert not sim.reader_connected


# --- scans over a real pty: kinds, terminators, prefix and suffix ------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [(EVOUCHER, QrKind.MEDICAL_INSURANCE_EVOUCHER), (ESSC, QrKind.ELECTRONIC_SSC), (UNKNOWN, QrKind.UNKNOWN)],
)
def test_each_kind_read_from_the_port(
    sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner], code: str, kind: QrKind
) -> None:
    scanner = make_scanner()
    sim.send_raw(line(code))
    credential = read(scanner)
    assert (credential.kind, credential.code, credential.device) == (kind, code, sim.path)
    assert credential.to_json()["kind"] == kind.value
    assert credential.to_json()["code"] == code


@pytest.mark.parametrize(("name", "terminator"), [("CR", CR), ("LF", LF), ("CRLF", CRLF)])
def test_terminators(
    sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner], name: str, terminator: bytes
) -> None:
    scanner = make_scanner(terminator=name)
    sim.send_raw(line(EVOUCHER, terminator) + line(ESSC, terminator))  # two scans in one burst
    assert read(scanner).code == EVOUCHER
    assert read(scanner).code == ESSC


def test_crlf_split_across_reads(sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]) -> None:
    scanner = make_scanner(terminator="CRLF")
    sim.send_raw(EVOUCHER.encode() + b"\r")
    assert scanner.read_scan(timeout=0.2) is None  # a CR alone does not end a CRLF line
    sim.send_raw(b"\n")
    assert read(scanner).code == EVOUCHER


def test_no_terminator_ends_a_scan_at_a_pause(sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]) -> None:
    scanner = make_scanner(terminator="none", inter_char_timeout=0.05)
    sim.send_raw(line(EVOUCHER, b""))
    assert read(scanner).code == EVOUCHER
    time.sleep(0.2)  # a pause longer than inter_char_timeout: the only thing between two scans
    sim.send_raw(line(ESSC, b""))
    assert read(scanner).code == ESSC


def test_prefix_and_suffix_are_stripped(sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]) -> None:
    scanner = make_scanner(prefix=STX, suffix=ETX)
    sim.scan(EVOUCHER, prefix=STX, suffix=ETX)
    credential = read(scanner)
    assert credential.code == EVOUCHER and credential.kind is QrKind.MEDICAL_INSURANCE_EVOUCHER
    sim.scan(ESSC)  # a scan without them is taken as it is
    assert read(scanner).code == ESSC


def test_text_prefix_as_scanners_add_it(sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]) -> None:
    scanner = make_scanner(terminator="LF", prefix=b"QR:", suffix=b";")
    sim.send_raw(line(EVOUCHER, LF, b"QR:", b";"))
    assert read(scanner).code == EVOUCHER


# --- dedup ------------------------------------------------------------------------------------


def test_same_code_twice_fast_is_one_scan(sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]) -> None:
    scanner = make_scanner(dedup_window=2.0)
    sim.send_raw(line(EVOUCHER) + line(EVOUCHER) + line(ESSC))
    assert read(scanner).code == EVOUCHER
    assert read(scanner).code == ESSC  # the second EVOUCHER was swallowed
    assert scanner.read_scan(timeout=0.1) is None


def test_different_codes_are_two_scans(sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]) -> None:
    scanner = make_scanner()
    sim.send_raw(line(EVOUCHER) + line(EVOUCHER_2) + line(EVOUCHER))  # A B A: A is still recent
    assert [read(scanner).code, read(scanner).code] == [EVOUCHER, EVOUCHER_2]
    assert scanner.read_scan(timeout=0.1) is None


def test_same_code_after_the_window_is_a_new_scan(
    sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]
) -> None:
    clock = Clock()
    scanner = make_scanner(clock=clock, dedup_window=2.0)
    sim.scan(EVOUCHER)
    first = read(scanner)
    clock.advance(2.5)
    sim.scan(EVOUCHER)
    second = read(scanner)
    assert first.code == second.code == EVOUCHER


def test_window_slides_while_the_code_is_held_in_front(
    sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]
) -> None:
    clock = Clock()
    scanner = make_scanner(clock=clock, dedup_window=2.0)
    sim.scan(EVOUCHER)
    assert read(scanner).code == EVOUCHER
    for _ in range(3):  # continuous mode: the phone is read again every 1.5 s
        clock.advance(1.5)
        sim.scan(EVOUCHER)
        assert scanner.read_scan(timeout=0.2) is None
    clock.advance(2.5)  # taken away, shown again
    sim.scan(EVOUCHER)
    assert read(scanner).code == EVOUCHER


def test_dedup_can_be_switched_off(sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]) -> None:
    scanner = make_scanner(dedup_window=0)
    sim.send_raw(line(EVOUCHER) * 2)
    assert [read(scanner).code, read(scanner).code] == [EVOUCHER, EVOUCHER]


# --- rejection, then recovery ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"\xff\xfe\x80\x81", "not_ascii"),
        ("电子社保卡".encode(), "not_ascii"),
        (b"4243\x07754826492874240001130000", "non_printable"),
        (b"\x00\x00\x00", "non_printable"),
        (b"424375482649\x1b[2J", "non_printable"),
    ],
)
def test_garbage_is_rejected_and_the_next_scan_works(
    sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner], garbage: bytes, reason: str
) -> None:
    scanner = make_scanner()
    sim.send_raw(line(garbage) + line(EVOUCHER))
    assert rejected(scanner) == reason
    assert read(scanner).code == EVOUCHER


def test_overlong_line_is_rejected_once_then_recovers(
    sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]
) -> None:
    scanner = make_scanner(max_length=64)
    sim.send_raw(b"A" * 100)  # no terminator yet: rejected as soon as it is too long
    assert rejected(scanner) == "too_long"
    sim.send_raw(line(b"B" * 300) + line(EVOUCHER))  # the rest of that line is dropped silently
    assert read(scanner).code == EVOUCHER


def test_overlong_complete_line_is_rejected(sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]) -> None:
    scanner = make_scanner(max_length=64)
    sim.send_raw(line(b"7" * 65) + line(b"7" * 64) + line(EVOUCHER))
    assert rejected(scanner) == "too_long"
    assert read(scanner).code == "7" * 64  # exactly max_length is fine
    assert read(scanner).code == EVOUCHER


def test_overlong_without_terminator_mode(sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]) -> None:
    scanner = make_scanner(terminator="none", max_length=64)
    sim.send_raw(b"C" * 200)
    assert rejected(scanner) == "too_long"
    time.sleep(0.2)  # the pause ends the overlong scan
    sim.send_raw(line(EVOUCHER, b""))
    assert read(scanner).code == EVOUCHER


def test_half_a_line_is_rejected_not_glued_to_the_next(
    sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]
) -> None:
    scanner = make_scanner(incomplete_timeout=0.2)
    sim.send_raw(EVOUCHER[:10].encode())
    assert rejected(scanner) == "incomplete"
    sim.scan(EVOUCHER)
    assert read(scanner).code == EVOUCHER


def test_empty_lines_are_ignored(sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]) -> None:
    scanner = make_scanner(prefix=STX, suffix=ETX)
    sim.send_raw(CR + line(b"", CR, STX, ETX) + line(EVOUCHER, CR, STX, ETX))
    assert read(scanner).code == EVOUCHER


# --- silence and removal ----------------------------------------------------------------------


def test_silent_device_times_out_with_none(make_scanner: Callable[..., QrScanner]) -> None:
    scanner = make_scanner()
    started = time.monotonic()
    assert scanner.read_scan(timeout=0.3) is None
    assert time.monotonic() - started < LONG


def test_unplug_mid_read_is_device_removed(
    sim: SimulatedQrScanner, port: SerialPort, make_scanner: Callable[..., QrScanner]
) -> None:
    scanner = make_scanner()
    sim.send_raw(EVOUCHER[:10].encode())  # half a scan in flight when the cable goes
    timer = threading.Timer(0.2, sim.unplug)
    timer.start()
    started = time.monotonic()
    with pytest.raises(DeviceRemoved) as info:
        scanner.read_scan(timeout=30)
    timer.join()
    assert time.monotonic() - started < LONG
    assert info.value.fields["device"] == sim.path
    assert not port.connected


class Listener:
    """Runs :meth:`QrScanner.scans` on a thread, as a kiosk would, and queues what it yields."""

    def __init__(self, scanner: QrScanner, reopen: Callable[[], object] | None) -> None:
        self.items: queue.Queue[ScanResult | None] = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(scanner, reopen), daemon=True)
        self.thread.start()

    def _run(self, scanner: QrScanner, reopen: Callable[[], object] | None) -> None:
        for item in scanner.scans(self.stop, reopen=reopen, poll=0.05, backoff=FAST):
            self.items.put(item)
        self.items.put(None)  # the generator ended

    def next(self) -> ScanResult | None:
        return self.items.get(timeout=LONG)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=LONG)
        assert not self.thread.is_alive()


def test_scans_keep_listening_across_rejections(
    sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]
) -> None:
    listener = Listener(make_scanner(), reopen=None)
    try:
        sim.send_raw(line(b"\xff\xff") + line(EVOUCHER) + line(b"\x01") + line(ESSC))
        first, second, third, fourth = (listener.next() for _ in range(4))
        assert isinstance(first, ScanRejected) and isinstance(third, ScanRejected)
        assert isinstance(second, QrCredential) and second.code == EVOUCHER
        assert isinstance(fourth, QrCredential) and fourth.code == ESSC
    finally:
        listener.close()


def test_without_reopen_scans_end_at_removal(sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]) -> None:
    listener = Listener(make_scanner(), reopen=None)
    try:
        sim.unplug()
        assert isinstance(listener.next(), DeviceRemoved)
        assert listener.next() is None
    finally:
        listener.close()


def test_plugged_back_in_the_same_scanner_resumes(
    sim: SimulatedQrScanner, port: SerialPort, make_scanner: Callable[..., QrScanner]
) -> None:
    scanner = make_scanner()
    listener = Listener(scanner, reopen=lambda: port.reopen(timeout=0))
    try:
        sim.scan(EVOUCHER)
        item = listener.next()
        assert isinstance(item, QrCredential) and item.code == EVOUCHER
        sim.send_raw(EVOUCHER_2[:10].encode())  # half a scan in flight when the cable goes
        sim.unplug()
        removed = listener.next()
        assert isinstance(removed, DeviceRemoved) and removed.code == "DEVICE_REMOVED"
        time.sleep(0.2)  # away for a while: the listener retries and finds nothing
        assert listener.items.empty()
        sim.plug()
        restored = listener.next()
        assert isinstance(restored, ScannerRestored) and restored.device == sim.path
        sim.scan(ESSC)
        item = listener.next()
        assert isinstance(item, QrCredential) and item.code == ESSC and item.kind is QrKind.ELECTRONIC_SSC
    finally:
        listener.close()
    assert port.connected


# --- codes stay out of logs and reprs ---------------------------------------------------------


def test_codes_never_reach_the_log(
    sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    scanner = make_scanner()
    sim.send_raw(line(EVOUCHER) + line(EVOUCHER) + line(ESSC))
    credential = read(scanner)
    assert read(scanner).code == ESSC
    assert EVOUCHER not in caplog.text and ESSC not in caplog.text
    assert credential.ref in caplog.text  # the short hash stands in for the code
    assert EVOUCHER not in repr(credential)
    assert set(credential.to_json()) == {"kind", "code", "device", "time"}


# --- issue 11 item 1: CR, LF and CR LF alike by default; an explicit terminator pins one ------------


def test_default_terminator_is_any_everywhere(tmp_path: Path) -> None:
    from sscard.config import Config, load_config
    from sscard.credentials import qr_config

    assert QrConfig().terminator == "any"
    assert qr_config(Config()).terminator == "any"  # the service's [qr] and the Python API share this path
    path = tmp_path / "sscard.toml"
    path.write_text('[qr]\nport = "/dev/sscard-qr"\n', encoding="utf-8")
    assert qr_config(load_config(str(path))).terminator == "any"
    path.write_text('[qr]\nport = "/dev/sscard-qr"\nterminator = "crlf"\n', encoding="utf-8")
    assert qr_config(load_config(str(path))).terminator == "CRLF"


@pytest.mark.parametrize("terminator", [CR, LF, CRLF], ids=["CR", "LF", "CRLF"])
def test_default_accepts_every_terminator_once(
    sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner], terminator: bytes
) -> None:
    scanner = make_scanner(dedup_window=0)
    sim.send_raw(b"".join(line(code, terminator) for code in (EVOUCHER, ESSC, EVOUCHER_2, EVOUCHER)))
    assert [read(scanner).code for _ in range(4)] == [EVOUCHER, ESSC, EVOUCHER_2, EVOUCHER]
    assert scanner.read_scan(timeout=0.3) is None  # no empty or leftover scan after them


def test_default_crlf_with_the_lf_late_is_neither_incomplete_nor_leaked(
    sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]
) -> None:
    """The LF of a CR LF that arrives in a later read, even after incomplete_timeout, ends nothing."""
    scanner = make_scanner(incomplete_timeout=0.1)
    sim.send_raw(EVOUCHER.encode() + CR)
    assert read(scanner).code == EVOUCHER  # the CR ended it at once
    time.sleep(0.3)
    sim.send_raw(LF)
    assert scanner.read_scan(timeout=0.4) is None  # not an incomplete line, not an empty scan
    sim.send_raw(line(ESSC, CRLF))
    assert read(scanner).code == ESSC  # nothing carried into the next code


def test_default_mixed_terminators(sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]) -> None:
    scanner = make_scanner()
    sim.send_raw(line(EVOUCHER, CRLF) + line(ESSC, LF) + line(EVOUCHER_2, CR) + line(UNKNOWN, CRLF))
    assert [read(scanner).code for _ in range(4)] == [EVOUCHER, ESSC, EVOUCHER_2, UNKNOWN]


def test_default_overlong_line_ends_at_the_crlf(
    sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]
) -> None:
    scanner = make_scanner(max_length=64)
    sim.send_raw(line("A" * 100, CRLF) + line(EVOUCHER, CRLF))
    with pytest.raises(ScanRejected) as rejected:
        read(scanner)
    assert rejected.value.fields["reason"] == "too_long"
    assert read(scanner).code == EVOUCHER


def test_explicit_terminator_still_pins_one(sim: SimulatedQrScanner, make_scanner: Callable[..., QrScanner]) -> None:
    scanner = make_scanner(terminator="LF")
    sim.send_raw(line(EVOUCHER, CRLF))  # with LF pinned, the CR is part of the line
    with pytest.raises(ScanRejected) as rejected:
        read(scanner)
    assert rejected.value.fields["reason"] == "non_printable"


def test_any_refuses_a_prefix_holding_cr_or_lf() -> None:
    with pytest.raises(ConfigError):
        QrConfig(prefix=b"\n")
    with pytest.raises(ConfigError):
        QrConfig(suffix=b"\r")


def test_sscard_scan_accepts_every_code_from_a_crlf_scanner(sim: SimulatedQrScanner) -> None:
    """The factory CR LF setting, through a real pty and a real ``sscard scan`` process."""
    import json
    import os
    import subprocess
    import sys

    codes = [EVOUCHER, ESSC, EVOUCHER_2, UNKNOWN, "4249999999999999999999330000"]
    command = [sys.executable, "-m", "sscard.cli", "scan", "--port", str(sim.path), "--json"]
    command += ["--count", str(len(codes)), "--timeout", "30"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    scan = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert sim.wait_for_reader(10), "sscard scan never opened the scanner"
        for code in codes:
            sim.scan(code, terminator=CRLF)
            time.sleep(0.05)
        out, err = scan.communicate(timeout=30)
    finally:
        if scan.poll() is None:
            scan.kill()
            scan.communicate()
    assert scan.returncode == 0, err
    assert [json.loads(row)["code"] for row in out.splitlines()] == codes
    assert "SCAN_REJECTED" not in err
