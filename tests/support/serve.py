"""``sscard serve`` as a real process for the tests that talk to it over HTTP: a free port, the
environment without the developer's ``SSCARD_`` settings, and a wait until the service answers
``/v1/status`` (its process still running, at most 20 s), stopped when the block ends."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

SERVE = [sys.executable, "-m", "sscard.cli", "serve"]
START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without ``SSCARD_`` settings (but the vpcd slot the pcscd fixtures chose)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_") or k == "SSCARD_VPCD_SLOT"}
    return {**env, **extra}


@contextlib.contextmanager
def running_service(
    args: list[str],
    port: int,
    cwd: Path,
    *,
    env: dict[str, str] | None = None,
    stdout: int = subprocess.PIPE,
) -> Iterator[subprocess.Popen[str]]:
    """``sscard serve ARGS --port PORT`` until the block ends; the block starts once it answers."""
    process = subprocess.Popen(
        [*SERVE, *args, "--port", str(port)],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env() if env is None else env,
        cwd=cwd,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "the service did not come up"
                time.sleep(0.2)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=15)
