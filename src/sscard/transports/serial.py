"""Serial devices (QR scanners, resident ID-card readers) through pyserial.

This is the only module of sscard that imports pyserial (docs/design.md §1); the protocols above it
(:mod:`sscard.qr`, :mod:`sscard.idcard`) speak to the small
:class:`~sscard.transports.stream.ByteStream` interface (which :class:`SerialPort` implements), so they
are tested over real pseudo-terminals and could run over anything that moves bytes.

Every pyserial failure becomes a typed error (``termios.error`` included: pyserial's ``flush`` and
``reset_input_buffer`` let it through when the port has vanished): a port that is not there is
:class:`~sscard.errors.DeviceNotFound`; a port that vanishes mid-use (USB unplugged — pyserial
then reports "device reports readiness to read but returned no data", or an ``EIO``) is
:class:`~sscard.errors.DeviceRemoved`; :meth:`SerialPort.reopen` opens the same path again once
the device is back (a udev link such as ``/dev/sscard-qr`` keeps the path stable).
"""

from __future__ import annotations

import contextlib
import logging
import os
import termios
import time

import serial

from sscard.errors import DeviceNotFound, DeviceRemoved

log = logging.getLogger("sscard.serial")


class SerialPort:
    """One serial port by path, opened at construction; 8N1 at ``baudrate``."""

    def __init__(self, path: str, baudrate: int = 115200) -> None:
        self.path = path
        self.baudrate = baudrate
        self._port: serial.Serial | None = None
        self._open()

    @property
    def name(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"SerialPort({self.path!r}, {self.baudrate})"

    def _open(self) -> None:
        if not os.path.exists(self.path):
            raise DeviceNotFound(self.path, "no such port")
        try:
            self._port = serial.Serial(self.path, self.baudrate, timeout=0, exclusive=True)
        except (serial.SerialException, OSError, termios.error) as exc:
            raise DeviceNotFound(self.path, str(exc)) from None

    def _require(self) -> serial.Serial:
        if self._port is None:
            raise DeviceRemoved(self.path, "the port is closed")
        return self._port

    def read(self, size: int, timeout: float | None) -> bytes:
        port = self._require()
        try:
            port.timeout = timeout
            return bytes(port.read(size))
        except (serial.SerialException, OSError, termios.error) as exc:
            self._lost(exc)
            raise DeviceRemoved(self.path, str(exc)) from None

    def write(self, data: bytes) -> None:
        port = self._require()
        try:
            port.write(data)
            port.flush()
        except (serial.SerialException, OSError, termios.error) as exc:
            self._lost(exc)
            raise DeviceRemoved(self.path, str(exc)) from None

    def discard_input(self) -> None:
        """Drop whatever the device sent before we asked (stray bytes of an earlier exchange)."""
        port = self._require()
        try:
            port.reset_input_buffer()
        except (serial.SerialException, OSError, termios.error) as exc:
            self._lost(exc)
            raise DeviceRemoved(self.path, str(exc)) from None

    def _lost(self, exc: BaseException) -> None:
        log.warning("serial device %s lost: %s", self.path, exc)
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    @property
    def connected(self) -> bool:
        return self._port is not None

    def reopen(self, timeout: float | None = None, interval: float = 0.2) -> None:
        """Open the same path again, waiting up to ``timeout`` s (None: forever) for it to return."""
        self.close()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self._open()
                log.info("serial device %s is back", self.path)
                return
            except DeviceNotFound:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                time.sleep(interval)

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    def __enter__(self) -> SerialPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
