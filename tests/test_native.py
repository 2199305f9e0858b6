"""libSSCardDriver.so end to end: C programs dlopen the real library, which talks to the real
socket server (sscard.native_socket) over a temporary Unix socket (issue 13, docs/native.md).

In-process tests serve ``sim:`` readers; the ``pcscd`` tests run the server as a process on the
vpcd reader with the simulated card inserted.  The pinpad PIN source is tested against a fake at
the PC/SC control boundary: vpcd has no PIN pad (the one place a mock is right).
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sscard.native_socket import (
    CM_IOCTL_GET_FEATURE_REQUEST,
    FEATURE_MODIFY_PIN_DIRECT,
    FEATURE_VERIFY_PIN_DIRECT,
    NativeSocketServer,
    PagePinSource,
    PinpadPinSource,
    escape,
    parse_request,
    unescape,
    verify_structure,
)
from sscard.terminal import Terminal

ROOT = Path(__file__).resolve().parents[1]
NATIVE = ROOT / "native"
LIB = NATIVE / "build" / "libSSCardDriver.so"
ASAN_LIB = NATIVE / "build" / "asan" / "libSSCardDriver.so"
ALL_FUNCTIONS = (
    "iReadCardBas",
    "iReadCardBas_HSM_Step1",
    "iReadCardBas_HSM_Step2",
    "iVerifyPIN",
    "iChangePIN",
    "iReadCard",
    "iWriteCard",
    "iReloadPIN",
    "iUnblockPIN",
    "iDoDebit",
    "iReadDebitRecord",
    "PKI_SignData",
    "PKI_VerifySign",
    "iReadIdentityCard",
    "iGetDeviceInfo",
)

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None, reason="needs gcc, make")


@pytest.fixture(scope="session")
def native(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build the library (plain and ASan/UBSan) and the C test programs once per session."""
    subprocess.run(["make", "-C", str(NATIVE), "-s", "all", "asan"], check=True)
    out = tmp_path_factory.mktemp("native")
    progs: dict[str, Path] = {}
    flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{NATIVE / 'include'}"]
    asan = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
    build = [
        ("driver", ROOT / "tests/native/driver.c", [], ["-ldl"]),
        ("driver_asan", ROOT / "tests/native/driver.c", asan, ["-ldl"]),
        (
            "example",
            NATIVE / "examples/read_card.c",
            [],
            [f"-L{LIB.parent}", "-lSSCardDriver", f"-Wl,-rpath,{LIB.parent}"],
        ),
    ]
    for name, src, extra, libs in build:
        subprocess.run(["gcc", *flags, *extra, "-o", str(out / name), str(src), *libs], check=True)
        progs[name] = out / name
    return progs


def run_c(
    prog: Path, lib: Path, function: str, arg: str = "3", count: int = 1, env: dict[str, str] | None = None
) -> list[tuple[int, bytes]]:
    """Run the driver; [(rc, pOutInfo bytes)] per call."""
    proc = subprocess.run(
        [str(prog), str(lib), function, arg, str(count)],
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"AddressSanitizer" not in proc.stderr and b"runtime error" not in proc.stderr, proc.stderr
    results, data = [], proc.stdout
    while data:
        header, _, data = data.partition(b"\n")
        rc, length = (int(x) for x in header.split(b"\t"))
        results.append((rc, data[:length]))
        data = data[length:]
    return results


def cli_line(reader: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "sscard", "read", "--reader", reader, "--format", "ireadcardbas"],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=True,
    )
    return proc.stdout.decode("utf-8").rstrip("\n")


Events = queue.Queue[dict[str, Any]]


def pin_events() -> tuple[Events, Events, Callable[[dict[str, Any]], None]]:
    """The page PIN source's events: the requests in one queue, their ends (``pin_request_closed``)
    in another, so a test answering requests in turn sees only requests."""
    requests: Events = queue.Queue()
    closed: Events = queue.Queue()
    return requests, closed, lambda event: (closed if event["kind"] == "pin_request_closed" else requests).put(event)


class Served:
    """An in-process server on a temporary socket, its events, and the page PIN source."""

    def __init__(
        self, server: NativeSocketServer, source: PagePinSource, events: Events, closed: Events | None = None
    ) -> None:
        self.server, self.source, self.events = server, source, events
        self.closed: Events = closed if closed is not None else queue.Queue()
        self.env = {"SSCARD_SOCKET": server.path}

    def answer_next(self, **answer: Any) -> threading.Thread:
        """Answer the next pin_requested event (from another thread, as the page would)."""

        def go() -> None:
            event = self.events.get(timeout=30)
            assert event["kind"] == "pin_requested"
            self.source.answer(event["request"], **answer)

        thread = threading.Thread(target=go, daemon=True)
        thread.start()
        return thread


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[tuple[NativeSocketServer, Terminal]] = []

    def start(reader: str = "sim:typical", **terminal_kw: Any) -> Served:
        terminal = Terminal.open(reader) if not terminal_kw else Terminal.open(reader, **terminal_kw)
        events, closed, publish = pin_events()
        source = PagePinSource(publish)
        server = NativeSocketServer(terminal, str(tmp_path / f"s{len(started)}.sock"), pin_source=source).start()
        started.append((server, terminal))
        return Served(server, source, events, closed)

    yield start
    for server, terminal in started:
        server.close()
        terminal.close()


# -- byte-exact reads -----------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["typical", "long_name", "rare_char", "v1_t0"])
@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_ireadcardbas_is_byte_exact_with_sscard_read(
    native: dict[str, Path], serve: Callable[..., Served], persona: str, encoding: str
) -> None:
    served = serve(f"sim:{persona}")
    env = {**served.env, **({"SSCARD_NATIVE_ENCODING": "utf-8"} if encoding == "utf-8" else {})}
    [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", env=env)
    expected = cli_line(f"sim:{persona}")
    assert rc == 0
    assert out == expected.encode("utf-8" if encoding == "utf-8" else "gb18030")
    if persona == "rare_char" and encoding == "gbk":
        assert "䶮".encode("gb18030") in out  # GB18030's 4-byte form, not a '?'
    if persona == "v1_t0":
        assert b"|1.00|" in out


def test_the_example_program_prints_the_card_number(native: dict[str, Path], serve: Callable[..., Served]) -> None:
    served = serve("sim:typical")
    proc = subprocess.run([str(native["example"])], capture_output=True, env={**os.environ, **served.env}, check=True)
    assert proc.stdout.decode() == cli_line("sim:typical").split("|")[2] + "\n"


def test_a_small_buffer_gets_no_partial_line(native: dict[str, Path], serve: Callable[..., Served]) -> None:
    served = serve("sim:typical")
    [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", env={**served.env, "SSCARD_OUTINFO_SIZE": "64"})
    assert rc == -14 and len(out) <= 63 and b"|" not in out


# -- error paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize("function", ALL_FUNCTIONS)
def test_no_service_is_minus_11_within_a_second(native: dict[str, Path], tmp_path: Path, function: str) -> None:
    arg = "00|00|" if function == "iReadCardBas_HSM_Step2" else "3"
    began = time.monotonic()
    [(rc, out)] = run_c(native["driver"], LIB, function, arg, env={"SSCARD_SOCKET": str(tmp_path / "none.sock")})
    assert time.monotonic() - began < 1.0
    assert rc == -11
    text = out.decode("gbk")
    assert "无法连接读卡服务" in text and "cannot connect" in text


@pytest.mark.parametrize("function", ALL_FUNCTIONS)
def test_null_pOutInfo_is_minus_14(native: dict[str, Path], tmp_path: Path, function: str) -> None:
    [(rc, _)] = run_c(native["driver"], LIB, f"{function}:NULL", env={"SSCARD_SOCKET": str(tmp_path / "none.sock")})
    assert rc == -14


@pytest.mark.parametrize("function", ALL_FUNCTIONS[5:])
def test_unsupported_functions_say_so(native: dict[str, Path], serve: Callable[..., Served], function: str) -> None:
    served = serve("sim:typical")
    [(rc, out)] = run_c(native["driver"], LIB, function, env=served.env)
    assert rc == -13 and function.encode() in out and "不支持".encode("gbk") in out


def test_bad_itype_is_minus_14(native: dict[str, Path], tmp_path: Path) -> None:
    [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", "7", env={"SSCARD_SOCKET": str(tmp_path / "x")})
    assert rc == -14 and "参数错误".encode("gbk") in out


def test_not_an_ssc_is_minus_1(native: dict[str, Path], serve: Callable[..., Served]) -> None:
    served = serve("sim:not_ssc")
    [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", env=served.env)
    assert rc == -1 and "社会保障卡".encode("gbk") in out


def test_service_dying_mid_call_is_an_error_not_a_hang(native: dict[str, Path], tmp_path: Path) -> None:
    import socket

    path = str(tmp_path / "dying.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def die() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"0\t120\n110100|1101")  # the header promises more than comes
        conn.close()

    threading.Thread(target=die, daemon=True).start()
    [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", env={"SSCARD_SOCKET": path})
    listener.close()
    assert rc == -11 and b"110100|" not in out


# -- PIN through the page source ------------------------------------------------------------------


def test_verify_pin_answered_by_the_page(native: dict[str, Path], serve: Callable[..., Served]) -> None:
    served = serve("sim:typical")
    served.answer_next(pin="123456")
    [(rc, out)] = run_c(native["driver"], LIB, "iVerifyPIN", env=served.env)
    assert rc == 0 and out == b""


def test_wrong_pin_is_minus_51_with_tries_left(native: dict[str, Path], serve: Callable[..., Served]) -> None:
    served = serve("sim:typical")
    served.answer_next(pin="000000")
    [(rc, out)] = run_c(native["driver"], LIB, "iVerifyPIN", env=served.env)
    assert rc == -51
    assert re.findall(rb"\d+", out) == [b"2"]


def test_blocked_pin_is_minus_52_without_asking(native: dict[str, Path], serve: Callable[..., Served]) -> None:
    served = serve("sim:pin_blocked")
    [(rc, _)] = run_c(native["driver"], LIB, "iVerifyPIN", env=served.env)
    assert rc == -52 and served.events.empty()


def test_cancel_is_minus_31(native: dict[str, Path], serve: Callable[..., Served]) -> None:
    served = serve("sim:typical")
    served.answer_next(cancel=True)
    [(rc, out)] = run_c(native["driver"], LIB, "iVerifyPIN", env=served.env)
    assert rc == -31 and "取消".encode("gbk") in out


def test_no_answer_is_minus_32(native: dict[str, Path], serve: Callable[..., Served]) -> None:
    served = serve("sim:typical")
    began = time.monotonic()
    [(rc, _)] = run_c(native["driver"], LIB, "iVerifyPIN", env={**served.env, "SSCARD_PIN_TIMEOUT": "1"})
    assert rc == -32 and time.monotonic() - began < 10
    requested = served.events.get_nowait()
    assert requested["operation"] == "verify"
    # Who asked and for how long (issue 16 item 2: the page shows both), then the request's end.
    assert requested["timeout"] == 1
    assert re.fullmatch(r".+ \(PID \d+\)", requested["caller"]), requested["caller"]
    assert requested["caller"].startswith(Path(native["driver"]).name[:15])
    assert served.closed.get(timeout=5) == {
        "kind": "pin_request_closed",
        "request": requested["request"],
        "reason": "timeout",
    }


def test_a_pin_of_the_wrong_format_is_minus_33(native: dict[str, Path], serve: Callable[..., Served]) -> None:
    served = serve("sim:typical")
    served.answer_next(pin="12")
    [(rc, _)] = run_c(native["driver"], LIB, "iVerifyPIN", env=served.env)
    assert rc == -33


def test_change_pin_answered_by_the_page(native: dict[str, Path], serve: Callable[..., Served]) -> None:
    served = serve("sim:typical")
    served.answer_next(old="123456", new="654321")
    [(rc, _)] = run_c(native["driver"], LIB, "iChangePIN", env=served.env)
    assert rc == 0
    served.answer_next(pin="654321")
    [(rc, _)] = run_c(native["driver"], LIB, "iVerifyPIN", env=served.env)
    assert rc == 0


# -- HSM two-step -----------------------------------------------------------------------------------


def test_hsm_two_step_through_the_library(native: dict[str, Path], serve: Callable[..., Served]) -> None:
    from sscard.config import Config
    from sscard.psam.hsm import HsmStep1
    from test_auth import hsm

    served = serve("sim:v3", config=Config(key_service="hsm"))
    [(rc, step1)] = run_c(native["driver"], LIB, "iReadCardBas_HSM_Step1", env=served.env)
    assert rc == 0 and step1.count(b"|") == 9
    answer = hsm(HsmStep1.parse(step1.decode("ascii")))
    [(rc, line)] = run_c(native["driver"], LIB, "iReadCardBas_HSM_Step2", answer, env=served.env)
    assert rc == 0 and line.count(b"|") == 11
    [(rc, _)] = run_c(native["driver"], LIB, "iReadCardBas_HSM_Step2", answer, env=served.env)
    assert rc == -14  # no step 1 pending any more


# -- concurrency, sanitizers, ctypes ----------------------------------------------------------------


def test_two_processes_times_20_calls_do_not_interleave(native: dict[str, Path], serve: Callable[..., Served]) -> None:
    from sscard.transports.base import Transport

    log: list[bytes] = []

    class Logged:
        def __init__(self, inner: Transport) -> None:
            self._inner = inner

        def transmit(self, apdu: bytes) -> bytes:
            log.append(apdu)
            time.sleep(0.0005)  # widen the window an interleaving would need
            return self._inner.transmit(apdu)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    served = serve("sim:typical", transport_wrapper=Logged)
    [(rc, one)] = run_c(native["driver"], LIB, "iReadCardBas", env=served.env)
    assert rc == 0
    single, log[:] = list(log), []
    procs = [
        subprocess.Popen(
            [str(native["driver"]), str(LIB), "iReadCardBas", "3", "20"],
            stdout=subprocess.PIPE,
            env={**os.environ, **served.env},
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    for output in outputs:
        assert output == (f"0\t{len(one)}\n".encode() + one) * 20
    assert len(single) > 0 and log == single * 40


def test_the_library_under_asan_and_ubsan(
    native: dict[str, Path], serve: Callable[..., Served], tmp_path: Path
) -> None:
    served = serve("sim:rare_char")
    env = {**served.env, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    assert run_c(native["driver_asan"], ASAN_LIB, "iReadCardBas", env=env)[0][0] == 0
    assert run_c(native["driver_asan"], ASAN_LIB, "iReadCardBas", env={**env, "SSCARD_OUTINFO_SIZE": "40"})[0][0] == -14
    served.answer_next(pin="000000")
    assert run_c(native["driver_asan"], ASAN_LIB, "iVerifyPIN", env=env)[0][0] == -51
    for function in ALL_FUNCTIONS[5:]:
        assert run_c(native["driver_asan"], ASAN_LIB, function, env=env)[0][0] == -13
        assert (
            run_c(native["driver_asan"], ASAN_LIB, function, env={"SSCARD_SOCKET": str(tmp_path / "no")})[0][0] == -11
        )
        assert run_c(native["driver_asan"], ASAN_LIB, f"{function}:NULL", env=env)[0][0] == -14


def test_ctypes_binds_by_name(
    native: dict[str, Path], serve: Callable[..., Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stands in for the managed callers (C#, Java JNA) that bind the symbols by name."""
    served = serve("sim:typical")
    monkeypatch.setenv("SSCARD_SOCKET", served.server.path)
    lib = ctypes.CDLL(str(LIB))
    lib.iReadCardBas.argtypes = [ctypes.c_int, ctypes.c_char_p]
    lib.iReadCardBas.restype = ctypes.c_long
    buf = ctypes.create_string_buffer(1024)
    rc = lib.iReadCardBas(3, buf)
    assert rc == 0 and buf.value == cli_line("sim:typical").encode("gb18030")


def test_only_national_symbols_are_exported(native: dict[str, Path]) -> None:
    nm = subprocess.run(["nm", "-D", "--defined-only", str(LIB)], capture_output=True, text=True, check=True)
    names = {line.split()[-1] for line in nm.stdout.splitlines() if line.strip()}
    assert names == set(ALL_FUNCTIONS)


def test_install_puts_library_header_and_pkg_config(native: dict[str, Path], tmp_path: Path) -> None:
    subprocess.run(["make", "-C", str(NATIVE), "-s", "install", f"PREFIX={tmp_path}"], check=True)
    assert (tmp_path / "lib/libSSCardDriver.so").exists() and (tmp_path / "include/SSCardDriver.h").exists()
    pc = (tmp_path / "lib/pkgconfig/sscarddriver.pc").read_text()
    assert f"prefix={tmp_path}" in pc and "-lSSCardDriver" in pc


def test_library_messages_match_their_source() -> None:
    sys.path.insert(0, str(NATIVE))
    try:
        from messages import MESSAGES  # type: ignore[import-not-found]
        from messages import header as messages_header
    finally:
        sys.path.pop(0)
    header = (NATIVE / "src/messages.h").read_text()
    assert header == messages_header()
    for key, text in MESSAGES.items():
        for enc, suffix in (("utf-8", "UTF8"), ("gbk", "GBK")):
            literal = re.search(rf'#define MSG_{key}_{suffix} "(.*)"', header)
            assert literal is not None
            raw = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), literal.group(1).encode("ascii"))
            assert raw == text.encode(enc)


# -- protocol and pinpad units ------------------------------------------------------------------------


def test_escaping_round_trips() -> None:
    for text in ["", "a\tb\nc\\d\re", "\\t"]:
        assert unescape(escape(text)) == text
    request = parse_request(b"SSCARD1\tiReadCardBas_HSM_Step2\tutf-8\t1024\t60000\t" + escape("A|\tB|").encode())
    assert request.args == ("A|\tB|",) and request.pin_timeout == 60


class FakePinpad:
    """A PC/SC part-10 reader at the SCardControl boundary: features, and the card's answer."""

    def __init__(self, inner: Any, answer: bytes) -> None:
        self._inner, self.answer, self.calls = inner, answer, []

    def control(self, code: int, data: bytes) -> bytes:
        self.calls.append((code, data))
        if code == CM_IOCTL_GET_FEATURE_REQUEST:
            return bytes(
                [FEATURE_VERIFY_PIN_DIRECT, 4, 0x42, 0, 0x0D, 0x52, FEATURE_MODIFY_PIN_DIRECT, 4, 0x42, 0, 0x0D, 0x53]
            )
        return self.answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize(
    ("answer", "rc"), [(b"\x90\x00", 0), (b"\x63\xc2", -51), (b"\x64\x01", -31), (b"\x64\x00", -32)]
)
def test_pinpad_source_against_a_fake_reader(native: dict[str, Path], tmp_path: Path, answer: bytes, rc: int) -> None:
    pads: list[FakePinpad] = []

    def wrap(inner: Any) -> Any:
        pads.append(FakePinpad(inner, answer))
        return pads[-1]

    terminal = Terminal.open("sim:typical", transport_wrapper=wrap)
    with NativeSocketServer(terminal, str(tmp_path / "p.sock"), pin_source=PinpadPinSource()) as server:
        [(got, _)] = run_c(native["driver"], LIB, "iVerifyPIN", env={"SSCARD_SOCKET": server.path})
    terminal.close()
    assert got == rc
    code, structure = pads[-1].calls[-1]
    assert code == 0x42000D52 and structure == verify_structure(6, 60)
    assert structure.endswith(bytes.fromhex("0020000003FFFFFF"))


# -- through pcscd + vpcd ------------------------------------------------------------------------------


@pytest.fixture
def socket_process(tmp_path: Path, vpcd_reader: str) -> Iterator[tuple[dict[str, str], subprocess.Popen[str]]]:
    """``python -m sscard.native_socket`` on the vpcd reader: events on its stdout, answers on stdin."""
    path = str(tmp_path / "pcsc.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sscard.native_socket", "--socket", path, "--reader", vpcd_reader],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and '"listening"' in proc.stdout.readline()
    yield {"SSCARD_SOCKET": path}, proc
    proc.terminate()
    proc.wait(10)


@pytest.mark.pcscd
def test_through_pcscd_vpcd(
    native: dict[str, Path],
    socket_process: tuple[dict[str, str], subprocess.Popen[str]],
    vpcd_card: Any,
    vpcd_reader: str,
) -> None:
    env, proc = socket_process
    began = time.monotonic()
    [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", env=env)
    assert rc == -2 and time.monotonic() - began < 1.0  # no card: at once
    for persona in ("typical", "long_name", "rare_char", "v1_t0"):
        link = vpcd_card(persona)
        expected = cli_line(vpcd_reader)
        [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", env=env)
        assert rc == 0 and out == expected.encode("gb18030"), persona
        [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", env={**env, "SSCARD_NATIVE_ENCODING": "utf-8"})
        assert rc == 0 and out == expected.encode("utf-8"), persona
        link.remove()
        from support import pcsc_env

        pcsc_env.wait_for_reader(vpcd_reader, present=False)
    vpcd_card("typical")
    assert proc.stdin is not None and proc.stdout is not None
    # A PIN call on a card other than the one last read is CARD_CHANGED (−20, docs/native.md)
    [(rc, _)] = run_c(native["driver"], LIB, "iVerifyPIN", env=env)
    assert rc == -20
    [(rc, _)] = run_c(native["driver"], LIB, "iReadCardBas", env=env)
    assert rc == 0

    def answer(pin: str) -> None:
        event = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        while event["kind"] == "pin_request_closed":  # the previous request's end
            event = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        assert event["kind"] == "pin_requested" and event["operation"] == "verify"
        proc.stdin.write(json.dumps({"request": event["request"], "pin": pin}) + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    for pin, rc_expected in (("000000", -51), ("123456", 0)):
        thread = threading.Thread(target=answer, args=(pin,))
        thread.start()
        [(rc, out)] = run_c(native["driver"], LIB, "iVerifyPIN", env=env)
        thread.join(10)
        assert rc == rc_expected, out


# -- faults ----------------------------------------------------------------------------------------


def _sim_served(tmp_path: Path, card: Any) -> tuple[NativeSocketServer, Terminal, Any]:
    from sscard.transports.sim import SimReader

    reader = SimReader(card, "sim:test")
    terminal = Terminal(reader)
    server = NativeSocketServer(terminal, str(tmp_path / "f.sock"), pin_source=PagePinSource(lambda e: None))
    return server.start(), terminal, reader


@pytest.mark.parametrize("after", [1, 3, 5])
def test_card_pulled_mid_read_is_an_error_never_a_partial_line(
    native: dict[str, Path], tmp_path: Path, after: int
) -> None:
    from sscard.sim import SimulatedCard, load_persona

    server, terminal, _ = _sim_served(tmp_path, SimulatedCard(load_persona("typical"), remove_after=after))
    try:
        [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", env={"SSCARD_SOCKET": server.path})
    finally:
        server.close()
        terminal.close()
    assert rc == -2 and b"|" not in out


def test_no_card_is_minus_2_at_once(native: dict[str, Path], tmp_path: Path) -> None:
    from sscard.sim import SimulatedCard, load_persona

    server, terminal, reader = _sim_served(tmp_path, SimulatedCard(load_persona("typical")))
    reader.remove()
    try:
        for function in ("iReadCardBas", "iVerifyPIN", "iChangePIN", "iReadCardBas_HSM_Step1"):
            began = time.monotonic()
            [(rc, out)] = run_c(native["driver"], LIB, function, env={"SSCARD_SOCKET": server.path})
            assert rc == -2 and time.monotonic() - began < 1.0, function
            assert "没有卡".encode("gbk") in out
    finally:
        server.close()
        terminal.close()


def test_a_service_that_never_answers_times_out(native: dict[str, Path], tmp_path: Path) -> None:
    import socket

    path = str(tmp_path / "mute.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    began = time.monotonic()
    [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", env={"SSCARD_SOCKET": path, "SSCARD_TIMEOUT": "1"})
    listener.close()
    assert rc == -12 and 1.0 <= time.monotonic() - began < 5
    assert "超时".encode("gbk") in out


def test_threads_of_one_process_share_the_library(serve: Callable[..., Served], native: dict[str, Path]) -> None:
    served = serve("sim:typical")
    expected = cli_line("sim:typical").encode("gb18030")
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def worker() -> None:
        lib = ctypes.CDLL(str(LIB))
        lib.iReadCardBas.argtypes = [ctypes.c_int, ctypes.c_char_p]
        lib.iReadCardBas.restype = ctypes.c_long
        for _ in range(10):
            buf = ctypes.create_string_buffer(1024)
            rc = lib.iReadCardBas(3, buf)
            with lock:
                results.append((rc, buf.value))

    os.environ["SSCARD_SOCKET"] = served.server.path
    try:
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        del os.environ["SSCARD_SOCKET"]
    assert results == [(0, expected)] * 40


def test_an_inherited_systemd_socket_is_served(
    native: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from sscard.native_socket import SYSTEMD_SOCKET_UNIT, systemd_socket

    path = str(tmp_path / "activated.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    fd = os.dup(listener.fileno())  # what systemd would pass (at fd 3; here wherever dup put it)
    listener.close()
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    inherited = systemd_socket(first_fd=fd)
    assert inherited is not None and "LISTEN_FDS" not in os.environ
    terminal = Terminal.open("sim:typical")
    with NativeSocketServer(terminal, path, sock=inherited) as server:
        [(rc, _)] = run_c(native["driver"], LIB, "iReadCardBas", env={"SSCARD_SOCKET": server.path})
    terminal.close()
    assert rc == 0
    assert os.path.exists(path)  # systemd's socket: left for systemd to remove
    assert "ListenStream=/run/sscard/sscard.sock" in SYSTEMD_SOCKET_UNIT and "SocketMode=0660" in SYSTEMD_SOCKET_UNIT


def test_the_doc_shows_the_example_that_is_compiled() -> None:
    assert (NATIVE / "examples/read_card.c").read_text() in (ROOT / "docs/native.md").read_text()


def test_bad_requests_get_minus_14(serve: Callable[..., Served]) -> None:
    import socket

    served = serve("sim:typical")
    for line in (
        b"HELLO\n",
        b"SSCARD1\tiReadCardBas\tlatin1\t1024\t0\t3\n",
        b"SSCARD1\tiReadCardBas\tgbk\t1024\t0\t9\n",
    ):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(served.server.path)
            conn.sendall(line)
            answer = conn.makefile("rb").read()
        assert answer.startswith(b"-14\t"), (line, answer)


def test_a_listener_with_a_full_backlog_is_minus_11_within_a_second(native: dict[str, Path], tmp_path: Path) -> None:
    """A service that hangs without accepting: the connection cannot complete."""
    import socket

    path = str(tmp_path / "full.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    queued = []
    for _ in range(8):  # fill the backlog
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        try:
            client.connect(path)
        except BlockingIOError:
            client.close()
            break
        queued.append(client)
    began = time.monotonic()
    [(rc, _)] = run_c(native["driver"], LIB, "iReadCardBas", env={"SSCARD_SOCKET": path})
    took = time.monotonic() - began
    for client in queued:
        client.close()
    listener.close()
    assert rc == -11 and took < 1.0


def test_async_runner_queues_socket_calls_with_the_services_lock(native: dict[str, Path], tmp_path: Path) -> None:
    """The service's run(): an asyncio.Lock and worker threads; a socket call waits for an HTTP one."""
    import asyncio

    from sscard.errors import SscardError
    from sscard.native_socket import async_runner

    class ServiceBusy(SscardError):  # the service's own (sscard.service), by its stable code
        code = "SERVICE_BUSY"

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    lock = asyncio.Lock()
    spans: list[tuple[str, float, float]] = []

    async def run(operation: Callable[[], Any], timeout: float = 10.0) -> Any:
        try:
            await asyncio.wait_for(lock.acquire(), timeout)
        except asyncio.TimeoutError:
            raise ServiceBusy("queued") from None
        try:
            return await asyncio.to_thread(operation)
        finally:
            lock.release()

    def http_read() -> None:
        began = time.monotonic()
        time.sleep(0.5)  # an HTTP operation holding the reader
        spans.append(("http", began, time.monotonic()))

    terminal = Terminal.open("sim:typical")

    def timed(operation: Callable[[], tuple[int, str]]) -> tuple[int, str]:
        async def inner() -> tuple[int, str]:
            def op() -> tuple[int, str]:
                began = time.monotonic()
                result = operation()
                spans.append(("socket", began, time.monotonic()))
                return result

            result: tuple[int, str] = await run(op)
            return result

        return asyncio.run_coroutine_threadsafe(inner(), loop).result()

    with NativeSocketServer(terminal, str(tmp_path / "a.sock"), runner=async_runner(loop, run)) as server:
        asyncio.run_coroutine_threadsafe(run(http_read), loop)
        time.sleep(0.05)
        [(rc, _)] = run_c(native["driver"], LIB, "iReadCardBas", env={"SSCARD_SOCKET": server.path})
        assert rc == 0
        server.runner = timed
        [(rc, _)] = run_c(native["driver"], LIB, "iReadCardBas", env={"SSCARD_SOCKET": server.path})
        assert rc == 0
        busy = asyncio.run_coroutine_threadsafe(run(lambda: time.sleep(1.5)), loop)
        time.sleep(0.05)

        async def impatient(operation: Callable[[], Any]) -> Any:
            return await run(operation, timeout=0.2)

        server.runner = async_runner(loop, impatient)
        [(rc, _)] = run_c(native["driver"], LIB, "iReadCardBas", env={"SSCARD_SOCKET": server.path})
        assert rc == -11  # SERVICE_BUSY
        busy.result(5)
    terminal.close()
    loop.call_soon_threadsafe(loop.stop)
    http = next(span for span in spans if span[0] == "http")
    assert all(span[1] >= http[2] for span in spans if span[0] == "socket")


def test_part10_structures_byte_for_byte() -> None:
    """PIN_VERIFY_STRUCTURE / PIN_MODIFY_STRUCTURE as PC/SC part 10 lays them out (little-endian)."""
    from sscard.native_socket import modify_structure

    assert verify_structure(6, 60).hex().upper() == ("3C0081030006060201040800000000080000000020000003FFFFFF")
    assert modify_structure(6, 30).hex().upper() == (
        "1E008103000004060603020304080001020000000C000000805E010007FFFFFFFFFFFFFF"
    )


@pytest.mark.parametrize(("answer", "rc"), [(b"\x90\x00", 0), (b"\x64\x02", -34), (b"\x63\xc0", -52)])
def test_pinpad_change_against_a_fake_reader(native: dict[str, Path], tmp_path: Path, answer: bytes, rc: int) -> None:
    pads: list[FakePinpad] = []

    def wrap(inner: Any) -> Any:
        pads.append(FakePinpad(inner, answer))
        return pads[-1]

    terminal = Terminal.open("sim:typical", transport_wrapper=wrap)
    with NativeSocketServer(terminal, str(tmp_path / "c.sock"), pin_source=PinpadPinSource()) as server:
        [(got, _)] = run_c(native["driver"], LIB, "iChangePIN", env={"SSCARD_SOCKET": server.path})
    terminal.close()
    assert got == rc and pads[-1].calls[-1][0] == 0x42000D53


def test_pinpad_on_a_reader_without_one_is_minus_14(native: dict[str, Path], tmp_path: Path) -> None:
    terminal = Terminal.open("sim:typical")  # the simulator's transport has no control channel
    with NativeSocketServer(terminal, str(tmp_path / "n.sock"), pin_source=PinpadPinSource()) as server:
        [(got, out)] = run_c(native["driver"], LIB, "iVerifyPIN", env={"SSCARD_SOCKET": server.path})
    terminal.close()
    assert got == -14 and "参数错误".encode("gbk") in out
