"""The PC/SC test environment: pcscd, vsmartcard's vpcd reader, and waiting on reader state.

Used by ``conftest.py`` (fixtures ``pcscd``, ``vpcd_card``, ``vpcd_reader``) and by tests that
talk PC/SC directly.  pyscard is imported inside the functions, so collecting the test suite never
needs it.

Waiting is done with ``SCardGetStatusChange``, which blocks until pcscd reports a change, in short
slices so a card that vanished in between (a ``remove_after`` card) is noticed too.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sscard.sim import VpcdLink

#: pcscd's client socket (pcsc-lite honours this variable too).
PCSCD_SOCKET = Path(os.environ.get("PCSCLITE_CSOCK_NAME", "/run/pcscd/pcscd.comm"))
#: Where distributions install the vpcd driver (Debian: vsmartcard-vpcd).
VPCD_DRIVER_GLOBS = (
    "/usr/lib/pcsc/drivers/serial/libifdvpcd.so*",
    "/usr/lib/*/pcsc/drivers/serial/libifdvpcd.so*",
    "/usr/lib64/pcsc/drivers/serial/libifdvpcd.so*",
    "/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so*",
)
#: ``SSCARD_VPCD_SLOT`` moves the tests to another vpcd slot, e.g. when two test runs share pcscd.
DEFAULT_SLOT = int(os.environ.get("SSCARD_VPCD_SLOT", "0"))
STATE_TIMEOUT = 10.0
#: The type of the ``vpcd_card`` fixture: ``insert(persona="typical", slot=…, **card_overrides)``.
InsertCard = Callable[..., VpcdLink]
_SLICE_MS = 100


class PcscEnvironmentError(RuntimeError):
    """pcscd or vpcd is missing or would not start; the message says what to install or check."""


def reader_name(slot: int = DEFAULT_SLOT) -> str:
    """vpcd's PC/SC reader name for ``slot``: "Virtual PCD 00 00", "Virtual PCD 00 01", …"""
    return f"Virtual PCD 00 {slot:02d}"


def missing_prerequisites() -> str | None:
    """Why end-to-end PC/SC tests cannot run here, or None when pcscd, vpcd and pyscard are all there."""
    if shutil.which("pcscd") is None and not Path("/usr/sbin/pcscd").exists():
        return "pcscd is not installed (Debian: apt-get install pcscd)"
    if not any(glob.glob(pattern) for pattern in VPCD_DRIVER_GLOBS):
        return "the vpcd virtual reader driver is not installed (Debian: apt-get install vsmartcard-vpcd)"
    try:
        import smartcard.scard  # noqa: F401
    except ImportError as exc:
        return f"pyscard cannot be imported ({exc})"
    return None


@contextlib.contextmanager
def pcsc_context() -> Iterator[Any]:
    """An established PC/SC context, released on exit."""
    from smartcard import scard

    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if result != scard.SCARD_S_SUCCESS:
        raise PcscEnvironmentError(f"SCardEstablishContext: {scard.SCardGetErrorMessage(result)}")
    try:
        yield context
    finally:
        scard.SCardReleaseContext(context)


def pcscd_answers() -> bool:
    """Whether a pcscd is running and answering on its socket."""
    if not PCSCD_SOCKET.exists():
        return False
    try:
        with pcsc_context():
            return True
    except PcscEnvironmentError:
        return False


def list_readers() -> list[str]:
    from smartcard import scard

    with pcsc_context() as context:
        result, readers = scard.SCardListReaders(context, [])
    return list(readers) if result == scard.SCARD_S_SUCCESS else []


@dataclass
class Pcscd:
    """The pcscd the tests use: one we started (``process`` set) or one that was already running."""

    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def stop(self) -> None:
        """Stop the pcscd we started (by its PID); leave a pre-existing one alone."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def kill(self, timeout: float = 10.0) -> None:
        """Stop pcscd abruptly (SIGKILL), ours or not, as a crash would; wait until its socket is dead."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=timeout)
            self.process = None
        else:
            pid = _running_pcscd_pid()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, timeout)
        deadline = time.monotonic() + timeout
        while pcscd_answers():
            if time.monotonic() > deadline:
                raise PcscEnvironmentError(f"pcscd still answers {timeout} s after SIGKILL")
            time.sleep(0.05)

    def restart(self, log_path: Path, timeout: float = STATE_TIMEOUT) -> None:
        """Start pcscd again after :meth:`kill`; from then on it is ours, so :meth:`stop` stops it."""
        started = start_pcscd(log_path, timeout)
        self.process, self.log_path = started.process, started.log_path


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait for a killed process to vanish: pcscd refuses to start while its old PID still exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        time.sleep(0.05)


def _running_pcscd_pid() -> int | None:
    for pid_file in (Path("/run/pcscd/pcscd.pid"), Path("/var/run/pcscd/pcscd.pid")):
        with contextlib.suppress(OSError, ValueError):
            return int(pid_file.read_text().strip())
    result = subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, text=True, check=False)
    pids = result.stdout.split()
    return int(pids[0]) if pids else None


def start_pcscd(log_path: Path, timeout: float = STATE_TIMEOUT) -> Pcscd:
    """Run ``pcscd -f`` (foreground, so we own the process) and wait until it answers with the vpcd reader."""
    executable = shutil.which("pcscd") or "/usr/sbin/pcscd"
    with log_path.open("wb") as log:
        process = subprocess.Popen([executable, "-f"], stdout=log, stderr=subprocess.STDOUT)
    daemon = Pcscd(process, log_path)
    deadline = time.monotonic() + timeout
    while not (pcscd_answers() and reader_name(0) in list_readers()):
        if process.poll() is not None:
            raise PcscEnvironmentError(f"pcscd exited with status {process.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            daemon.stop()
            raise PcscEnvironmentError(f"pcscd did not come up with the vpcd reader in {timeout:.0f} s; see {log_path}")
        time.sleep(0.1)
    return daemon


def reader_state(reader: str) -> int:
    """The reader's current ``SCARD_STATE_*`` event flags."""
    from smartcard import scard

    with pcsc_context() as context:
        result, states = scard.SCardGetStatusChange(context, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
    if result != scard.SCARD_S_SUCCESS:
        raise PcscEnvironmentError(f"SCardGetStatusChange({reader}): {scard.SCardGetErrorMessage(result)}")
    return int(states[0][1])


def card_present(reader: str) -> bool:
    from smartcard import scard

    return bool(reader_state(reader) & scard.SCARD_STATE_PRESENT)


def wait_for_reader(
    reader: str, *, present: bool, timeout: float = STATE_TIMEOUT, give_up: Callable[[], bool] | None = None
) -> bool:
    """Block until ``reader`` shows a card (``present=True``) or shows empty.

    Returns False early when ``give_up()`` turns true (e.g. the simulated card was pulled before
    pcscd ever saw it); raises ``TimeoutError`` after ``timeout`` seconds.
    """
    from smartcard import scard

    wanted = scard.SCARD_STATE_PRESENT if present else scard.SCARD_STATE_EMPTY
    deadline = time.monotonic() + timeout
    with pcsc_context() as context:
        known = scard.SCARD_STATE_UNAWARE
        while True:
            wait_ms = 0 if known == scard.SCARD_STATE_UNAWARE else _SLICE_MS
            result, states = scard.SCardGetStatusChange(context, wait_ms, [(reader, known)])
            if result == scard.SCARD_S_SUCCESS:
                known = int(states[0][1]) & ~scard.SCARD_STATE_CHANGED
                if known & wanted:
                    return True
            elif result != scard.SCARD_E_TIMEOUT:
                raise PcscEnvironmentError(f"SCardGetStatusChange({reader}): {scard.SCardGetErrorMessage(result)}")
            if give_up is not None and give_up():
                return False
            if time.monotonic() > deadline:
                raise TimeoutError(f"{reader} did not show {'a card' if present else 'empty'} within {timeout} s")
