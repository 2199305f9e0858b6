"""libSSCardDriver.so against `sscard serve --socket` itself (issue 13): the service as a process,
the C driver of tests/native/ calling it, PINs answered over HTTP (``POST /v1/pin-entry``) after the
``pin_requested`` event on ``/v1/events``.  ``sim:`` readers need no pcscd; the ``pcscd`` test runs
the same on the vpcd reader with the simulated card inserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sscard.native_socket import SYSTEMD_SOCKET_UNIT
from sscard.terminal import Terminal
from test_native import LIB, cli_line, native, run_c

__all__ = ["native"]  # the session fixture, shared with test_native.py

ALL_NATIONAL = ("iReadCardBas", "iReadCardBas_HSM_Step1", "iReadCardBas_HSM_Step2", "iVerifyPIN", "iChangePIN")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Serve:
    """One ``sscard serve --socket`` process: its port, socket and environment for the driver."""

    def __init__(self, process: subprocess.Popen[str], port: int, path: str) -> None:
        self.process, self.port, self.path = process, port, path
        self.env = {"SSCARD_SOCKET": path}

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.communicate(timeout=15)[1]


@pytest.fixture
def sscard_serve(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(reader: str = "sim:typical", extra_env: dict[str, str] | None = None) -> Serve:
        port = _free_port()
        path = str(tmp_path / f"serve{len(started)}.sock")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_") or k == "SSCARD_VPCD_SLOT"}
        process = subprocess.Popen(
            [sys.executable, "-m", "sscard.cli", "serve", "--reader", reader, "--port", str(port), "--socket", path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, **(extra_env or {})},
            cwd=tmp_path,
        )
        served = Serve(process, port, path)
        started.append(served)
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2):
                    if os.path.exists(path):
                        break
            except OSError:
                pass
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.1)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_serve_socket_reads_byte_exact(
    native: dict[str, Path], sscard_serve: Callable[..., Serve], encoding: str
) -> None:
    served = sscard_serve("sim:rare_char")
    env = {**served.env, **({"SSCARD_NATIVE_ENCODING": "utf-8"} if encoding == "utf-8" else {})}
    [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", env=env)
    assert rc == 0
    assert out == cli_line("sim:rare_char").encode("utf-8" if encoding == "utf-8" else "gb18030")


def test_serve_socket_is_0660_and_removed_on_shutdown(
    native: dict[str, Path], sscard_serve: Callable[..., Serve]
) -> None:
    served = sscard_serve()
    mode = os.stat(served.path)
    assert stat.S_ISSOCK(mode.st_mode) and stat.S_IMODE(mode.st_mode) == 0o660
    import grp

    try:
        wanted = grp.getgrnam("sscard").gr_gid
    except KeyError:
        wanted = os.getgid()  # no group sscard here: the process's group, no error
    assert mode.st_gid == wanted
    served.stop()
    assert not os.path.exists(served.path)


def test_serve_stopped_every_function_is_minus_11_within_a_second(
    native: dict[str, Path], sscard_serve: Callable[..., Serve]
) -> None:
    served = sscard_serve()
    [(rc, _)] = run_c(native["driver"], LIB, "iReadCardBas", env=served.env)
    assert rc == 0
    served.stop()
    for function in ALL_NATIONAL:
        began = time.monotonic()
        [(rc, out)] = run_c(
            native["driver"], LIB, function, arg="k" if function.endswith("Step2") else "3", env=served.env
        )
        assert rc == -11 and time.monotonic() - began < 1.0, function
        assert out  # a bilingual message, never an empty buffer


def test_the_socket_unit_is_shipped_and_printed() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sscard.cli", "serve", "--systemd-socket-unit"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout == SYSTEMD_SOCKET_UNIT
    for line in (
        "ListenStream=/run/sscard/sscard.sock",
        "SocketMode=0660",
        "SocketGroup=sscard",
        "Service=sscard.service",
    ):
        assert line in proc.stdout.splitlines()
    unit = subprocess.run(
        [sys.executable, "-m", "sscard.cli", "serve", "--systemd-unit"], capture_output=True, text=True, check=True
    ).stdout
    assert "Sockets=sscard.socket" in unit.split("[Service]")[1].split("\n[")[0]


def test_serve_takes_over_the_socket_systemd_passes(native: dict[str, Path], tmp_path: Path) -> None:
    """Socket activation as sscard.socket does it: fd 3, LISTEN_FDS=1, LISTEN_PID=the service's pid."""
    path = str(tmp_path / "activated.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_")}
    fd = listener.fileno()
    process = subprocess.Popen(
        [
            "sh",
            "-c",
            'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -m sscard.cli serve --reader sim:typical --port "$1"',
            sys.executable,
            str(port),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=(fd, 3),  # 3 stays open once preexec_fn made it the listener
        preexec_fn=lambda: (os.dup2(fd, 3), os.set_inheritable(3, True)),
    )
    listener.close()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline
                time.sleep(0.1)
        [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", env={"SSCARD_SOCKET": path})
        assert rc == 0 and out == cli_line("sim:typical").encode("gb18030")
    finally:
        process.terminate()
        process.communicate(timeout=15)
    assert os.path.exists(path), "systemd's socket is systemd's to remove"


# -- PINs through /v1/events and POST /v1/pin-entry --------------------------------------------------


def _post(port: int, path: str, body: dict[str, Any], origin: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", **({"Origin": origin} if origin else {})}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Page:
    """The kiosk page's part, on a thread: subscribe to /v1/events, answer the next pin_requested."""

    def __init__(self, port: int, answer: dict[str, Any] | None) -> None:
        self.port, self.answer = port, answer
        self.ready = threading.Event()
        self.event: dict[str, Any] | None = None
        self.status: int | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "no hello on /v1/events"

    async def _run(self) -> None:
        import websockets

        origin = f"http://127.0.0.1:{self.port}"
        async with websockets.connect(f"ws://127.0.0.1:{self.port}/v1/events", origin=origin) as ws:  # type: ignore[arg-type]
            assert json.loads(await ws.recv())["event"] == "hello"
            self.ready.set()
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if event.get("event") == "pin_requested":
                    break
            self.event = event
            if self.answer is not None:
                self.status, _ = await asyncio.to_thread(
                    _post, self.port, "/v1/pin-entry", {"request": event["request"], **self.answer}, origin
                )

    def join(self) -> None:
        self.thread.join(30)
        assert not self.thread.is_alive()


def test_verify_pin_answered_through_pin_entry(native: dict[str, Path], sscard_serve: Callable[..., Serve]) -> None:
    served = sscard_serve()
    page = Page(served.port, {"pin": "123456"})
    [(rc, out)] = run_c(native["driver"], LIB, "iVerifyPIN", env=served.env)
    page.join()
    assert rc == 0 and out == b""
    assert page.status == 204
    assert page.event is not None and page.event["kind"] == "pin_requested" and page.event["operation"] == "verify"


def test_wrong_pin_through_pin_entry_is_minus_51_and_never_logged(
    native: dict[str, Path], sscard_serve: Callable[..., Serve]
) -> None:
    served = sscard_serve()
    page = Page(served.port, {"pin": "918273"})
    [(rc, out)] = run_c(native["driver"], LIB, "iVerifyPIN", env=served.env)
    page.join()
    assert rc == -51 and re.findall(rb"\d+", out) == [b"2"]
    log = served.stop()
    assert "918273" not in log


def test_cancel_through_pin_entry_is_minus_31(native: dict[str, Path], sscard_serve: Callable[..., Serve]) -> None:
    served = sscard_serve()
    page = Page(served.port, {"cancel": True})
    [(rc, out)] = run_c(native["driver"], LIB, "iVerifyPIN", env=served.env)
    page.join()
    assert rc == -31 and "取消".encode("gbk") in out and page.status == 204


def test_change_pin_through_pin_entry(native: dict[str, Path], sscard_serve: Callable[..., Serve]) -> None:
    served = sscard_serve()
    page = Page(served.port, {"old": "123456", "new": "654321"})
    [(rc, _)] = run_c(native["driver"], LIB, "iChangePIN", env=served.env)
    page.join()
    assert rc == 0 and page.event is not None and page.event["operation"] == "change"


def test_no_answer_is_minus_32_and_a_late_answer_is_404(
    native: dict[str, Path], sscard_serve: Callable[..., Serve]
) -> None:
    served = sscard_serve()
    page = Page(served.port, None)
    began = time.monotonic()
    [(rc, out)] = run_c(native["driver"], LIB, "iVerifyPIN", env={**served.env, "SSCARD_PIN_TIMEOUT": "1"})
    page.join()
    assert rc == -32 and "超时".encode("gbk") in out and time.monotonic() - began < 10
    assert page.event is not None
    status, body = _post(served.port, "/v1/pin-entry", {"request": page.event["request"], "pin": "123456"})
    assert status == 404 and json.loads(body)["error"]["code"] == "NOT_FOUND"


def test_pin_entry_is_guarded_and_validated(sscard_serve: Callable[..., Serve]) -> None:
    served = sscard_serve()
    status, body = _post(served.port, "/v1/pin-entry", {"request": "nope", "pin": "123456"})
    assert status == 404 and b"123456" not in body
    status, body = _post(served.port, "/v1/pin-entry", {"request": "x", "pin": 123456})
    assert status == 400 and json.loads(body)["error"]["code"] == "BAD_REQUEST" and b"123456" not in body
    status, body = _post(served.port, "/v1/pin-entry", {"request": "x", "pinn": "1"})
    assert status == 400
    status, body = _post(served.port, "/v1/pin-entry", {"request": "x", "pin": "123456"}, origin="https://evil.example")
    assert status == 403 and json.loads(body)["error"]["code"] == "ORIGIN_REFUSED"
    assert "123456" not in served.stop()


@pytest.mark.pcscd
def test_serve_socket_through_pcscd_vpcd(
    native: dict[str, Path], sscard_serve: Callable[..., Serve], vpcd_card: Any, vpcd_reader: str
) -> None:
    """The issue's "done when", through the real pcscd + vpcd with the simulated card inserted."""
    served = sscard_serve(vpcd_reader)
    began = time.monotonic()
    [(rc, _)] = run_c(native["driver"], LIB, "iReadCardBas", env=served.env)
    assert rc == -2 and time.monotonic() - began < 1.0  # no card: at once
    vpcd_card("rare_char")
    expected = cli_line(vpcd_reader)
    [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", env=served.env)
    assert rc == 0 and out == expected.encode("gb18030")
    [(rc, out)] = run_c(native["driver"], LIB, "iReadCardBas", env={**served.env, "SSCARD_NATIVE_ENCODING": "utf-8"})
    assert rc == 0 and out == expected.encode("utf-8")
    for pin, wanted in (("000000", -51), ("123456", 0)):
        page = Page(served.port, {"pin": pin})
        [(rc, out)] = run_c(native["driver"], LIB, "iVerifyPIN", env=served.env)
        page.join()
        assert rc == wanted, out
    page = Page(served.port, {"cancel": True})
    [(rc, _)] = run_c(native["driver"], LIB, "iVerifyPIN", env=served.env)
    page.join()
    assert rc == -31
    served.stop()
    began = time.monotonic()
    [(rc, _)] = run_c(native["driver"], LIB, "iReadCardBas", env=served.env)
    assert rc == -11 and time.monotonic() - began < 1.0


# -- SCardControl on the transports (the pinpad PIN source's channel) --------------------------------


def test_a_transport_without_scardcontrol_says_so() -> None:
    from sscard.errors import ControlUnsupported
    from sscard.native_socket.pins import CM_IOCTL_GET_FEATURE_REQUEST as GET_FEATURES

    with Terminal.open("sim:typical") as terminal:
        terminal.pin_status()
        assert terminal.transport is not None
        with pytest.raises(ControlUnsupported) as caught:
            terminal.transport.control(GET_FEATURES, b"")
        assert caught.value.code == "PARAMETER_ERROR" and caught.value.row.national_code == -14


@pytest.mark.pcscd
def test_pcsc_transport_control_reaches_the_reader(vpcd_card: Any, vpcd_reader: str) -> None:
    """SCardControl through the real pcscd to vpcd: the feature query is answered (vpcd has no PIN
    pad, so no FEATURE_VERIFY_PIN_DIRECT) or refused as a typed PC/SC error, never a crash."""
    from sscard.errors import SscardError
    from sscard.native_socket.pins import CM_IOCTL_GET_FEATURE_REQUEST as GET_FEATURES
    from sscard.native_socket.pins import FEATURE_VERIFY_PIN_DIRECT, parse_features

    vpcd_card("typical")
    with Terminal.open(vpcd_reader) as terminal:
        terminal.pin_status()
        transport = terminal.transport
        assert transport is not None and type(transport).__name__ == "PcscTransport"
        try:
            answer = transport.control(GET_FEATURES, b"")
        except SscardError as exc:
            assert exc.code in ("TRANSPORT_ERROR", "CARD_ERROR", "NO_READER"), exc
        else:
            assert FEATURE_VERIFY_PIN_DIRECT not in parse_features(answer)
        with pytest.raises(SscardError):
            transport.control(0x42000000 + 3999, b"\x01")  # no such control code: a typed error
