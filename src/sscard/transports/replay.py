"""Replay recorded traces strictly, and record new ones (docs/design.md §6, docs/trace-format.md).

Replay sits at the transport boundary, below the APDU processors, so a replayed test runs the same
GET RESPONSE, resend and card-application code as a real card does.  It is strict in both
directions: a command the trace does not expect next fails at once, and so does a trace that still
has exchanges left when the test says it is done.  Either way the test, not the card, is wrong.

A trace holds ``**`` where a PIN was, so a replay would "verify" any PIN.  Replay transports and
readers therefore refuse every command that carries a PIN or key cryptogram
(:func:`~sscard.transports.trace.carries_secret`) with
:class:`~sscard.errors.ReplayPinRefused`, unless a test opens them with ``accept_any_pin=True``.

Recording wraps any transport.  Commands go through :func:`~sscard.transports.trace.redact_command`
before they are kept, so a trace file never holds a PIN, only ``**`` in its place.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from sscard import __version__
from sscard.errors import ReplayPinRefused, TraceMismatch, TransportFailure
from sscard.transports.base import ReaderBase, Transport, TransportBase
from sscard.transports.trace import Exchange, Trace, carries_secret, command_matches, redact_command


class ReplayTransport(TransportBase):
    """Plays the card side of ``trace``: each transmit must be the next recorded command.

    ``accept_any_pin``: for tests only, let PIN-bearing commands through (any PIN matches ``**``).
    """

    def __init__(self, trace: Trace, name: str = "replay", *, accept_any_pin: bool = False) -> None:
        self._trace = trace
        self._name = name
        self.accept_any_pin = accept_any_pin
        self._position = 0
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def atr(self) -> bytes:
        return self._trace.atr

    @property
    def protocol(self) -> str:
        return self._trace.protocol

    @property
    def trace(self) -> Trace:
        return self._trace

    @property
    def position(self) -> int:
        """How many exchanges have been replayed so far."""
        return self._position

    @property
    def finished(self) -> bool:
        """Whether every recorded exchange was replayed."""
        return self._position == len(self._trace.exchanges)

    def transmit(self, apdu: bytes) -> bytes:
        if self._closed:
            raise TransportFailure(f"{self._name} is closed")
        if not self.accept_any_pin and carries_secret(apdu):
            raise ReplayPinRefused(f"{self._name}: {redact_command(apdu)[:8]} not replayed")
        exchanges = self._trace.exchanges
        number = self._position + 1
        if self._position >= len(exchanges):
            raise TraceMismatch(
                f"exchange {number}: command after the end of the trace ({len(exchanges)} exchanges)",
                f"got {redact_command(apdu)}",
            )
        expected = exchanges[self._position]
        if not command_matches(expected.command, apdu):
            raise TraceMismatch(
                f"exchange {number}: unexpected command",
                f"expected {expected.command}, got {redact_command(apdu)}",
            )
        self._position += 1
        return expected.response

    def assert_finished(self) -> None:
        """Raise TraceMismatch unless every recorded exchange was replayed."""
        left = len(self._trace.exchanges) - self._position
        if left:
            upcoming = self._trace.exchanges[self._position]
            raise TraceMismatch(
                f"{left} recorded exchange(s) left over",
                f"next is exchange {self._position + 1}: {upcoming.command}",
            )

    def close(self) -> None:
        """Never raises, so that cleanup cannot mask the error that ended a test; see ``finished``."""
        self._closed = True


class ReplayReader(ReaderBase):
    """A reader that always holds the recorded card; every connect replays the trace from its start.

    PIN operations are refused (:class:`~sscard.errors.ReplayPinRefused`) unless ``accept_any_pin``
    — for tests that replay PIN traces, never for a kiosk (module docstring).
    """

    def __init__(self, path: str | Path, *, accept_any_pin: bool = False) -> None:
        self._path = str(path)
        self._trace = Trace.load(path)
        #: Read by the terminal facade, which refuses a PIN operation before it starts.
        self._accept_any_pin = accept_any_pin
        #: The transport of the last :meth:`connect`, so a test can call ``assert_finished()`` on it.
        self.last: ReplayTransport | None = None

    @property
    def name(self) -> str:
        return f"replay:{self._path}"

    @property
    def trace(self) -> Trace:
        return self._trace

    @property
    def accepts_pin(self) -> bool:
        """Only when a test opted in (``accept_any_pin``): a trace cannot check a PIN."""
        return self._accept_any_pin

    @property
    def recorded_header(self) -> Mapping[str, str]:
        return self.trace.header

    def card_present(self) -> bool:
        return True

    def wait_for_card(self, timeout: float | None = None) -> None:
        return None

    def connect(self) -> ReplayTransport:
        self.last = ReplayTransport(self._trace, name=self.name, accept_any_pin=self._accept_any_pin)
        return self.last


class RecordingTransport(TransportBase):
    """Wraps a transport and keeps every completed exchange, commands redacted, as a :class:`Trace`."""

    def __init__(self, inner: Transport, source: str) -> None:
        self._inner = inner
        self._source = " ".join(source.splitlines())  # one header line, whatever the caller passed
        self._date = dt.date.today().isoformat()
        self._exchanges: list[Exchange] = []

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def atr(self) -> bytes:
        return self._inner.atr

    @property
    def protocol(self) -> str:
        return self._inner.protocol

    @property
    def inner(self) -> Transport:
        return self._inner

    def transmit(self, apdu: bytes) -> bytes:
        response = self._inner.transmit(apdu)
        self._exchanges.append(Exchange(redact_command(apdu), bytes(response)))
        return response

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return self._inner.transaction()

    def close(self) -> None:
        self._inner.close()

    @property
    def trace(self) -> Trace:
        """A fresh Trace of everything recorded so far; changing it does not change the recording."""
        header = {
            "atr": self._inner.atr.hex().upper(),
            "protocol": self._inner.protocol,
            "reader": self._inner.name,
            "source": self._source,
            "date": self._date,
            "sscard": __version__,
        }
        return Trace(header, list(self._exchanges))

    def save(self, path: str | Path) -> None:
        self.trace.save(path)
