"""libSSCardDriver.so against `sscard serve --socket` itself (issue 13): the service as a process,
the C driver of tests/native/ calling it, PINs answered over HTTP (``POST /v1/pin-entry``) after the
``pin_requested`` event on ``/v1/events``.  ``sim:`` readers need no pcscd; the ``pcscd`` test runs
the same on the vpcd reader with the simulated card inserted.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sscard.native_socket import SYSTEMD_SOCKET_UNIT
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
