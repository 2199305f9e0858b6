"""The service's Prometheus metrics (``GET /metrics``, docs/service.md "Metrics"), with prometheus_client.

Where each figure is taken, once, at the depth where it happens:

* card operations — count, outcome, latency, cards pulled mid-operation, PIN outcomes — from the
  terminal itself (:class:`Metrics` is its :class:`~sscard.terminal.observe.OperationObserver`),
  so the HTTP routes, the vendor-bridge WebSocket and the national-interface socket are counted
  alike and no route has to remember to;
* the national-interface socket's calls and their return codes from its server (``on_call``);
* reader, card, pcscd and serial-device state from the event monitor's events, and from the
  readiness probe (``/readyz``) in between;
* queue wait from :meth:`sscard.service.state.Service.run` (the one lock every operation takes);
* refusals from the one :class:`~sscard.service.logs.RefusalLog` every refusal goes through;
* WebSocket subscribers from the hub, read when scraped.

Every label value is bounded and impersonal: operation names are the facade's method names,
outcomes are ``ok`` or a stable error code of the one error table, reasons are the guard's
literals, devices are ``qr``/``idcard``.  No card number, name, ATR, PIN, path or client address
ever becomes a label.  Each service has its own registry (no global state between apps in one
process).  prometheus_client takes 75 ms or more to import alone (~20 ms on top of the service's
own imports), so only the service imports this module, never ``sscard`` start-up
(tests/test_cli_startup.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import generate_latest

from sscard import __version__
from sscard.errors import ERROR_TABLE, CardRemoved, SscardError
from sscard.events import Event, EventKind
from sscard.ssc.application import PinOutcome, PinState

if TYPE_CHECKING:
    from sscard.config import Config

__all__ = ["CONTENT_TYPE", "OPERATION_BUCKETS", "QUEUE_BUCKETS", "Metrics", "outcome_of"]

#: The classic text format: every name and label here is a plain one, so the output of
#: ``generate_latest`` is valid 0.0.4 text, which every Prometheus (2.x included) reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Card-operation latency buckets, seconds: a read through vpcd takes ~0.05 s, a real reader 0.2–2 s.
#: Few on purpose: every bucket is a sample per operation in every scrape (docs/performance.md).
OPERATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
#: Queue-wait buckets, seconds, up to the default ``[service] queue_timeout`` of 10 s.
QUEUE_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 10.0)
#: The operations whose outcome is a PIN outcome.
PIN_OPERATIONS = frozenset({"verify", "change_pin"})
#: A PinOutcome that is not VERIFIED, as the error it means (PinOutcome.raise_for_error).
_PIN_STATE_CODES = {PinState.INCORRECT: "PIN_INCORRECT", PinState.BLOCKED: "PIN_BLOCKED"}
#: Every national return code a socket call can answer (the table's, and 0); others are "other".
_NATIONAL_CODES = frozenset(
    {0, -11, -13} | {row.national_code for row in ERROR_TABLE.values() if row.national_code is not None}
)


def outcome_of(operation: str, result: object, error: BaseException | None) -> str:
    """``ok`` or the stable error code an operation ended with (``INTERNAL`` for a bug).

    A VERIFY or CHANGE PIN that returned an INCORRECT or BLOCKED outcome is that code too: the
    card said no, though the facade returns it rather than raising it.
    """
    if error is not None:
        code = error.code if isinstance(error, SscardError) else "INTERNAL"
        return code if code in ERROR_TABLE else "INTERNAL"
    if operation in PIN_OPERATIONS and isinstance(result, PinOutcome):
        return _PIN_STATE_CODES.get(result.state, "ok")
    return "ok"


def pin_kind(result: object, error: BaseException | None) -> str | None:
    """The PIN outcome of a VERIFY/CHANGE PIN: its state (``verified``, ``incorrect``, ``blocked``
    …) or its PIN error (``format``, ``mismatch`` …); None when it ended on something else (no card)."""
    if error is None:
        return result.state.value if isinstance(result, PinOutcome) else None
    if isinstance(error, SscardError) and error.code.startswith("PIN_") and error.code in ERROR_TABLE:
        return error.code.removeprefix("PIN_").lower()
    return None


class Metrics:
    """One service's metrics: the terminal's observer, the events' consumer, the exposition."""

    def __init__(self, config: Config | None = None, subscribers: Callable[[], int] | None = None) -> None:
        # _created series double a scrape's size and no alert or dashboard here uses them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self.devices = _devices(config)
        self.operations = Counter(
            "sscard_card_operations",
            "Card operations the terminal ran, by operation and outcome (ok or the stable error code).",
            ["operation", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "sscard_card_operation_seconds",
            "How long each card operation took on the card (queue wait excluded).",
            ["operation"],
            buckets=OPERATION_BUCKETS,
            registry=registry,
        )
        self.running = Gauge(
            "sscard_card_operations_in_progress", "Card operations running now (0 or 1).", registry=registry
        )
        self.pulled = Counter(
            "sscard_cards_pulled",
            "Card operations that ended because the card left the reader mid-operation (CARD_REMOVED).",
            ["operation"],
            registry=registry,
        )
        self.pin = Counter(
            "sscard_pin_outcomes",
            "VERIFY and CHANGE PIN outcomes by kind (verified, incorrect, blocked, format …); never the PIN.",
            ["operation", "outcome"],
            registry=registry,
        )
        self.pcscd_up = Gauge("sscard_pcscd_up", "1 while pcscd answers, 0 while it does not.", registry=registry)
        self.reconnects = Counter(
            "sscard_pcscd_reconnects", "Times pcscd came back after being lost (service_restored).", registry=registry
        )
        self.reader_up = Gauge(
            "sscard_reader_up", "1 while the configured card reader is attached, else 0.", registry=registry
        )
        self.card_present = Gauge(
            "sscard_card_present", "1 while a card is in the configured reader, else 0.", registry=registry
        )
        self.serial_up = Gauge(
            "sscard_serial_device_up",
            "1 while a configured serial device (qr scanner, idcard reader) is there, else 0.",
            ["device"],
            registry=registry,
        )
        for path, device in self.devices.items():
            self.serial_up.labels(device).set(1 if os.path.exists(path) else 0)
        self.subscribers = Gauge(
            "sscard_websocket_subscribers", "WebSocket clients subscribed to /v1/events.", registry=registry
        )
        if subscribers is not None:
            self.subscribers.set_function(lambda: float(subscribers()))
        self.refusals = Counter(
            "sscard_request_refusals",
            "Requests and connections the service refused, by reason (origin, host, token, busy, size …).",
            ["reason"],
            registry=registry,
        )
        self.queue_wait = Histogram(
            "sscard_queue_wait_seconds",
            "How long a card operation waited for the reader (the one-at-a-time lock).",
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self.native_calls = Counter(
            "sscard_native_calls",
            "Calls on the national-interface socket (libSSCardDriver.so), by function and return code.",
            ["function", "code"],
            registry=registry,
        )
        info = Gauge("sscard_build_info", "Always 1; the sscard version as a label.", ["version"], registry=registry)
        info.labels(__version__).set(1)
        self._lock = threading.Lock()
        #: thread → (operation, monotonic start) of the outer operations running now.
        self._running: dict[int, tuple[str, float]] = {}
        self._readers: set[str] = set()
        self._cards: set[str] = set()
        self._device_events: dict[str, bool] = {}

    # -- the exposition ------------------------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text format (version 0.0.4) of every metric."""
        return generate_latest(self.registry)

    # -- the terminal's observer (sscard.terminal.observe) -------------------------------------

    def started(self, operation: str, nested: bool) -> None:
        if nested:
            return
        with self._lock:
            self._running[threading.get_ident()] = (operation, time.monotonic())
        self.running.inc()

    def finished(
        self, operation: str, nested: bool, seconds: float, result: object, error: BaseException | None
    ) -> None:
        if operation in PIN_OPERATIONS:
            kind = pin_kind(result, error)
            if kind is not None:
                self.pin.labels(operation, kind).inc()
        if nested:
            return  # counted as part of the operation the client asked for
        with self._lock:
            self._running.pop(threading.get_ident(), None)
        self.running.dec()
        self.operations.labels(operation, outcome_of(operation, result, error)).inc()
        self.latency.labels(operation).observe(seconds)
        if isinstance(error, CardRemoved):
            self.pulled.labels(operation).inc()

    def longest_running(self) -> tuple[str, float] | None:
        """The outer operation running longest now and for how many seconds, if any (``/readyz``)."""
        now = time.monotonic()
        with self._lock:
            running = list(self._running.values())
        if not running:
            return None
        operation, since = min(running, key=lambda item: item[1])
        return operation, now - since

    # -- the other sources ---------------------------------------------------------------------

    def queued(self, seconds: float) -> None:
        self.queue_wait.observe(seconds)

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def native_call(self, function: str, code: int) -> None:
        """One national-interface socket call; ``function`` is one the server knows, or ``other``."""
        self.native_calls.labels(function, str(code) if code in _NATIONAL_CODES else "other").inc()

    def on_event(self, event: Event) -> None:
        """The monitor's and the scanner's events: pcscd, reader, card and serial-device state."""
        kind = event.kind
        if kind is EventKind.SERVICE_LOST:
            self.pcscd_up.set(0)
        elif kind is EventKind.SERVICE_RESTORED:
            self.pcscd_up.set(1)
            self.reconnects.inc()
        elif kind in (EventKind.READER_ATTACHED, EventKind.READER_DETACHED, EventKind.CARD_INSERTED):
            self._reader_event(event)
        elif kind is EventKind.CARD_REMOVED:
            self._cards.discard(event.reader or "")
            self.card_present.set(1 if self._cards else 0)
        elif kind in (EventKind.DEVICE_REMOVED, EventKind.DEVICE_RESTORED):
            device = self.devices.get(event.reader or "")
            if device is not None:
                self._device_events[device] = kind is EventKind.DEVICE_RESTORED
                self.serial_up.labels(device).set(1 if kind is EventKind.DEVICE_RESTORED else 0)

    def _reader_event(self, event: Event) -> None:
        name = event.reader or ""
        if event.kind is EventKind.READER_DETACHED:
            self._readers.discard(name)
            self._cards.discard(name)
        else:
            self.pcscd_up.set(1)  # a snapshot came from it
            self._readers.add(name)
            if event.kind is EventKind.CARD_INSERTED:
                self._cards.add(name)
        self.reader_up.set(1 if self._readers else 0)
        self.card_present.set(1 if self._cards else 0)

    def probed(self, pcscd: bool | None, reader: bool | None, devices: dict[str, bool]) -> None:
        """What the readiness probe found (None: not known), between events."""
        if pcscd is not None:
            self.pcscd_up.set(1 if pcscd else 0)
        if reader is not None:
            self.reader_up.set(1 if reader else 0)
        for device, up in devices.items():
            self.serial_up.labels(device).set(1 if up else 0)

    def device_reported_up(self, device: str) -> bool:
        """False once the device's follower reported it removed, until it reported it restored."""
        return self._device_events.get(device, True)


def _devices(config: Config | None) -> dict[str, str]:
    """Configured serial device path → its label (``qr``, ``idcard``): the label never holds the path."""
    if config is None:
        return {}
    devices = {}
    if config.qr_port:
        devices[config.qr_port] = "qr"
    if config.idcard_port:
        devices[config.idcard_port] = "idcard"
    return devices
