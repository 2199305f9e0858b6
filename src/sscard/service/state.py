"""What every route shares: the terminal, its one-operation-at-a-time lock, the hub, the monitor.

A neutral module of the service: the routes and the vendor-bridge messages (:mod:`.compat`) take
a :class:`Service`; the application wiring (:mod:`.app`) makes one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from sscard.config import Config
from sscard.events import Event, EventKind, Monitor
from sscard.native_socket import NativeSocketServer, PagePinSource, PinpadPinSource, PinSource, async_runner
from sscard.native_socket import systemd_socket as inherited_socket
from sscard.offers import CredentialInbox
from sscard.service.hub import Hub
from sscard.service.logs import RefusalLog
from sscard.service.metrics import Metrics
from sscard.service.problems import ServiceBusy
from sscard.session import SessionEvent
from sscard.terminal import Terminal
from sscard.transports.base import event_factory

log = logging.getLogger("sscard.service")


@dataclass
class Service:
    """Everything the routes share: the terminal, its lock, the hub, the monitor."""

    config: Config
    terminal: Terminal
    allowed_origins: frozenset[str]
    token: str | None = None
    #: Host headers accepted (loopback names of the bound port); empty: any (tests only).
    allowed_hosts: frozenset[str] = frozenset()
    queue_timeout: float = 10.0
    hub: Hub = field(default_factory=Hub)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    monitor: Monitor | None = None
    scanner_stop: threading.Event = field(default_factory=threading.Event)
    #: Every refusal (Origin, Host, token, size, busy, connection limits) is logged through this.
    refusals: RefusalLog = field(default_factory=lambda: RefusalLog(log))
    #: The national-interface socket (docs/native.md) and the page's PIN requests, when listening.
    native: NativeSocketServer | None = None
    pin_page: PagePinSource | None = None
    #: What the resident just showed (card, QR code, ID card), for the next sign-in (sscard.offers).
    inbox: CredentialInbox = field(default_factory=CredentialInbox)
    _pin_source: PinSource | None = None
    #: GET /metrics (sscard.service.metrics): the terminal's observer, fed the events and refusals too.
    metrics: Metrics = field(init=False)
    #: The readiness probe's look at the reader still running, if any (sscard.service.ready).
    probe: asyncio.Future[bool] | None = None

    def __post_init__(self) -> None:
        self.metrics = Metrics(self.config, subscribers=lambda: len(self.hub.queues))
        self.terminal.observer = self.metrics
        self.refusals.counted = self.metrics.refused

    async def run(self, operation: Callable[[], Any]) -> Any:
        """One card operation at a time; the blocking call runs on a worker thread."""
        began = time.perf_counter()
        try:
            await asyncio.wait_for(self.lock.acquire(), timeout=self.queue_timeout)
        except asyncio.TimeoutError:
            self.metrics.queued(time.perf_counter() - began)
            self.refusals.refused("busy", f"a request waited {self.queue_timeout:g} s for the reader")
            raise ServiceBusy(f"waited {self.queue_timeout:g} s for the reader") from None
        self.metrics.queued(time.perf_counter() - began)
        try:
            return await anyio.to_thread.run_sync(operation)
        finally:
            self.lock.release()

    def start_events(self) -> None:
        self.hub.loop = asyncio.get_running_loop()
        self.terminal.sessions.subscribe(self._on_session)
        source = event_factory(self.terminal.reader)
        if source is not None:
            pattern = None if self.config.reader and self.config.reader.startswith("sim:") else self.config.reader
            self.monitor = Monitor(pattern, source=source)
            self.monitor.start(self._on_event)
        if self.config.qr_port:
            from sscard.credentials import follow_scanner, qr_config

            threading.Thread(
                target=follow_scanner,
                args=(self.config.qr_port, qr_config(self.config), self.scanner_stop, self._on_event),
                kwargs={"on_credential": self.inbox.offer_credential},
                name="sscard-service-scan",
                daemon=True,
            ).start()
        if self.config.idcard_port:
            from sscard.credentials import follow_idcard

            threading.Thread(
                target=follow_idcard,
                args=(self.config.idcard_port, self.config.idcard_baudrate, self.scanner_stop, self._on_event),
                kwargs={"on_credential": self.inbox.offer_credential},
                name="sscard-service-idcard",
                daemon=True,
            ).start()

    def start_native(self, path: str | None) -> None:
        """Listen for libSSCardDriver.so on ``path`` (or on the socket systemd passed), if either.

        Socket calls go through :meth:`run`, so they queue with the HTTP calls; a ``page`` PIN
        source publishes ``pin_requested`` on the hub and ``POST /v1/pin-entry`` answers it.
        """
        inherited = inherited_socket()
        if path is None and inherited is None:
            return
        source = self.pin_source()
        self.native = NativeSocketServer(
            self.terminal,
            str(inherited.getsockname()) if inherited is not None else path or "",
            runner=async_runner(asyncio.get_running_loop(), self.run),
            pin_source=source,
            on_call=self.metrics.native_call,
            group=socket_group(),
            sock=inherited,
        ).start()
        log.info("national-interface socket on %s", self.native.path)

    def pin_source(self) -> PinSource:
        """The configured PIN source (``[service] pin_source``), made once: the native socket's
        iVerifyPIN/iChangePIN and a vendor bridge's PIN calls without a PIN share it."""
        if self._pin_source is None:
            if self.config.service_pin_source == "pinpad":
                self._pin_source = PinpadPinSource()
            else:
                self.pin_page = self._pin_source = PagePinSource(self._on_pin_request)
        return self._pin_source

    def stop_native(self) -> None:
        native, self.native = self.native, None
        if native is not None:
            native.close()

    def stop_events(self) -> None:
        self.scanner_stop.set()
        if self.monitor is not None:
            self.monitor.stop()
        self.terminal.close()

    def _on_event(self, event: Event) -> None:
        if event.reader is not None and event.cause != "service_lost":
            if event.kind is EventKind.CARD_INSERTED:
                self.inbox.offer("card", event.reader)
            elif event.kind in (EventKind.CARD_REMOVED, EventKind.READER_DETACHED):
                self.inbox.withdraw("card", event.reader)
        elif event.cause == "service_lost":
            self.inbox.withdraw("card")
        self.metrics.on_event(event)
        self.hub.publish(event.to_json())

    def publish_event(self, event: Event) -> None:
        """An event from a credential wait (scans, ID cards, devices) onto the hub, as the monitor's are."""
        self._on_event(event)

    def sources(self) -> tuple[str, ...]:
        """The sign-in methods this service can wait for: the card, and the QR kinds and the ID
        card when ``[qr] port`` / ``[idcard] port`` are set."""
        methods = ["card"]
        if self.config.qr_port:
            methods += ["qr", "evoucher"]
        if self.config.idcard_port:
            methods.append("idcard")
        return tuple(methods)

    def _on_pin_request(self, request: dict[str, Any]) -> None:
        """``pin_requested`` on /v1/events: ``event`` as every event there has, ``kind`` as issue 13 names it."""
        self.hub.publish({"event": request["kind"], **request})

    def _on_session(self, event: SessionEvent) -> None:
        payload = event.to_json()
        payload["method"] = event.session.method.value
        self.hub.publish(payload)


def socket_group() -> str | None:
    """``sscard`` when that group exists (the kiosk programs' users join it), else None: the
    socket keeps the process's group (docs/native.md)."""
    import grp

    try:
        grp.getgrnam("sscard")
    except KeyError:
        return None
    return "sscard"
