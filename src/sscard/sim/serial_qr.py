"""A simulated QR scanner on a pseudo-terminal pair: a real serial port without hardware.

    with SimulatedQrScanner(link="/tmp/sscard-qr") as sim:     # like a udev name for the scanner
        port = SerialPort(sim.path)                              # pyserial on the pty's slave side
        sim.scan("4243754826492874240001130000")                 # what the scanner would send
        sim.send_raw(b"\\xff\\xfe\\r")                            # line noise
        sim.unplug()                                             # the client's next read: DEVICE_REMOVED
        sim.plug()                                               # a new pty; the link follows it

The simulator holds the master side of a pty (``os.openpty``, raw mode) and writes what a scanner
sends: the code, then its terminator, optionally wrapped in a prefix and suffix.  Programs open the
slave side (:attr:`path`) with pyserial, exactly as they open ``/dev/ttyACM0``, so tests and the
``sscard sim qr`` demo go through the real serial stack.  A scan sent while no program has the port
open is lost, as with hardware (pyserial empties the input buffer when it opens a port):
:meth:`~SimulatedQrScanner.wait_for_reader` waits for a reader first.

Unplugging closes the master: Linux then fails every read on the slave with ``EIO`` (pyserial:
"device reports readiness to read but returned no data"), which is what a USB-serial adapter
pulled out of its socket does, and the link is removed, so the port is absent until :meth:`plug`
makes a new pty and points the link at it.  Without a link the path changes on every plug, as a
``/dev/ttyACMn`` name can: a stable path needs the link, as it needs a udev rule on a kiosk.

Like the rest of :mod:`sscard.sim` this is the other side of the wire: it never imports
:mod:`sscard.qr`, so the scanner protocol is tested against an independent writer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import time
import tty
from pathlib import Path
from types import TracebackType

from sscard.errors import DeviceRemoved

log = logging.getLogger("sscard.sim")

#: Terminators by name, as a scanner's manual calls them.
CR, LF, CRLF = b"\r", b"\n", b"\r\n"


class SimulatedQrScanner:
    """A QR scanner that can be scanned, fed garbage, unplugged and plugged back in.

    ``link``: a path to keep as a symlink to the current pty (created or replaced; removed while
    unplugged and on :meth:`close`).  The scanner starts plugged in unless ``plugged`` is False.
    """

    def __init__(self, link: str | os.PathLike[str] | None = None, *, plugged: bool = True) -> None:
        self.link = None if link is None else Path(link)
        self._master: int | None = None
        self._slave_path: str | None = None
        self.scans = 0
        if plugged:
            self.plug()

    @property
    def path(self) -> str:
        """Where a client opens the scanner: the link if there is one, else the current pty."""
        if self.link is not None:
            return str(self.link)
        if self._slave_path is None:
            raise DeviceRemoved("simulated QR scanner", "unplugged, and it has no link path")
        return self._slave_path

    @property
    def slave_path(self) -> str | None:
        """The current pty's device (``/dev/pts/N``), None while unplugged."""
        return self._slave_path

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> None:
        """Plug in: a new pty (raw mode) and, with a link, the link pointed at it."""
        if self.plugged:
            return
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            slave_path = os.ttyname(slave)
        finally:
            # Only clients hold the slave side open, so the master sees whether one does (POLLHUP
            # while none does: wait_for_reader) and a scan is never sent into an unread port.
            os.close(slave)
        self._master, self._slave_path = master, slave_path
        if self.link is not None:
            temporary = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            os.symlink(slave_path, temporary)
            os.replace(temporary, self.link)  # atomic: the link never dangles while plugged
        log.info("simulated QR scanner plugged in at %s (%s)", self.path, slave_path)

    @property
    def reader_connected(self) -> bool:
        """Whether a program has the port open (a scan sent before that is lost, as on hardware:
        pyserial empties the input buffer when it opens a port)."""
        if self._master is None:
            return False
        poller = select.poll()
        poller.register(self._master, select.POLLIN)
        return not any(events & select.POLLHUP for _, events in poller.poll(0))

    def wait_for_reader(self, timeout: float | None = None, interval: float = 0.05) -> bool:
        """Wait up to ``timeout`` seconds (None: for ever) until a program opens the port."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.reader_connected:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(interval)
        return True

    def unplug(self) -> None:
        """Pull the cable: the pty hangs up (clients get EIO) and the link disappears."""
        if not self.plugged:
            return
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        master, self._master = self._master, None
        if master is not None:
            with contextlib.suppress(OSError):
                os.close(master)
        log.info("simulated QR scanner at %s unplugged (%s)", self.link or self._slave_path, self._slave_path)
        self._slave_path = None

    def scan(self, code: str, terminator: bytes = CR, prefix: bytes = b"", suffix: bytes = b"") -> None:
        """Send one scan as the scanner would: prefix, the code (UTF-8), suffix, terminator."""
        self.send_raw(prefix + code.encode("utf-8") + suffix + terminator)
        self.scans += 1

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are: line noise, half a scan, a scanner in a wrong mode."""
        if self._master is None:
            raise DeviceRemoved(str(self.link or "simulated QR scanner"), "the simulated scanner is unplugged")
        view = memoryview(data)
        while view:
            written = os.write(self._master, view)
            view = view[written:]

    def close(self) -> None:
        self.unplug()

    def __enter__(self) -> SimulatedQrScanner:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = self._slave_path if self.plugged else "unplugged"
        return f"SimulatedQrScanner(link={str(self.link) if self.link else None!r}, {state})"
