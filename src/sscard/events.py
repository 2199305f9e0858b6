"""Card and reader events for kiosk software: a monitor that does not die.

    from sscard.events import Monitor

    for event in Monitor():                       # blocks; Ctrl-C or monitor.stop() ends it
        print(event.kind, event.reader, event.atr)

    monitor = Monitor()
    monitor.start(on_event)                       # callback form, on a daemon thread
    async for event in Monitor().aevents():       # asyncio form
        ...

Events: ``card_inserted`` (with the ATR), ``card_removed``, ``reader_attached``, ``reader_detached``,
``service_lost`` and ``service_restored``.  When the monitor starts (and when the service comes
back) it first reports what is already there, as ``reader_attached``/``card_inserted`` events with
``cause="initial"`` (or ``"service_restored"``), so a kiosk never has to ask separately.

A kiosk runs for months, so the loop survives everything (docs/design.md §6): when pcscd goes away the
monitor reports ``card_removed``/``reader_detached`` for what it knew (``cause="service_lost"``:
every PC/SC connection died with pcscd, so to software the cards are gone), then
``service_lost``, then reconnects with exponential backoff and says ``service_restored``.  An
unexpected error is logged with its traceback and handled the same way.  It never polls on a fixed
interval of its own: the source blocks until pcscd reports a change (:mod:`sscard.transports.pcsc_events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sscard.backoff import Backoff
from sscard.clock import local_now as _now
from sscard.errors import UsageError
from sscard.transports.watch import Cancelled, EventSource, ReaderSnapshot, ServiceLost

log = logging.getLogger("sscard.events")


class EventKind(enum.Enum):
    CARD_INSERTED = "card_inserted"
    CARD_REMOVED = "card_removed"
    READER_ATTACHED = "reader_attached"
    READER_DETACHED = "reader_detached"
    SERVICE_LOST = "service_lost"
    SERVICE_RESTORED = "service_restored"
    # Serial devices (docs/serial.md), published into the same stream by whoever reads them:
    QR_SCANNED = "qr_scanned"
    ID_CARD_READ = "id_card_read"
    DEVICE_REMOVED = "device_removed"
    DEVICE_RESTORED = "device_restored"

    def __str__(self) -> str:
        return self.value


#: The kinds the ``reader`` filter applies to; service and serial-device events always pass.
READER_KINDS = frozenset(
    {EventKind.CARD_INSERTED, EventKind.CARD_REMOVED, EventKind.READER_ATTACHED, EventKind.READER_DETACHED}
)


@dataclass(frozen=True)
class Event:
    """One thing that happened.  ``cause`` is None for a change seen as it happened; otherwise
    ``"initial"`` (found at start), ``"service_restored"`` (found when pcscd came back) or
    ``"service_lost"`` (the card or reader is gone because pcscd is)."""

    kind: EventKind
    reader: str | None = None
    atr: bytes | None = None
    time: dt.datetime | None = None
    cause: str | None = None
    detail: str | None = None
    #: Extra keys for the JSON line (serial events: the credential's ``kind`` and ``code``).
    data: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """One line of ``sscard watch`` (docs/cli.md): these keys never change meaning."""
        out: dict[str, Any] = {
            "event": self.kind.value,
            "reader": self.reader,
            "time": (self.time or _now()).isoformat(timespec="milliseconds"),
        }
        if self.kind is EventKind.CARD_INSERTED:
            out["atr"] = (self.atr or b"").hex().upper()
        if self.cause is not None:
            out["cause"] = self.cause
        if self.detail is not None:
            out["detail"] = self.detail
        if self.data:
            out.update({key: value for key, value in self.data.items() if key not in out})
        return out


def diff(
    before: Mapping[str, ReaderSnapshot], after: Mapping[str, ReaderSnapshot], cause: str | None = None
) -> list[Event]:
    """The events that turn ``before`` into ``after``, in reader order; removals before insertions."""
    now = _now()
    events: list[Event] = []
    for name, old in before.items():
        if name not in after:
            if old.present:
                events.append(Event(EventKind.CARD_REMOVED, name, time=now, cause=cause))
            events.append(Event(EventKind.READER_DETACHED, name, time=now, cause=cause))
    for name, new in after.items():
        old_state = before.get(name)
        if old_state is None:
            events.append(Event(EventKind.READER_ATTACHED, name, time=now, cause=cause))
            if new.present:
                events.append(Event(EventKind.CARD_INSERTED, name, new.atr, now, cause))
            continue
        swapped = old_state.present and new.present and (old_state.counter != new.counter or old_state.atr != new.atr)
        if old_state.present and (not new.present or swapped):
            events.append(Event(EventKind.CARD_REMOVED, name, time=now, cause=cause))
        if new.present and (not old_state.present or swapped):
            events.append(Event(EventKind.CARD_INSERTED, name, new.atr, now, cause))
    return events


def pcsc_source() -> EventSource:
    from sscard.transports.pcsc_events import PcscEventSource

    return PcscEventSource()


_END = object()


class Monitor:
    """Watch readers and cards; see the module docstring for the three ways to consume events.

    ``reader`` keeps only events of readers whose name contains it (case-insensitive); service
    events always pass.  ``source`` makes the event source (default: PC/SC); it is called again
    after the service is lost, so a fresh connection is used each time.
    """

    def __init__(
        self,
        reader: str | None = None,
        *,
        source: Callable[[], EventSource] = pcsc_source,
        initial: bool = True,
        backoff: Backoff | None = None,
    ) -> None:
        self.reader = reader
        self.initial = initial
        self.backoff = backoff or Backoff()
        self._make_source = source
        self._source: EventSource | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running = False
        self._deliver: Callable[[Event], None] | None = None

    # -- the loop ---------------------------------------------------------------------------

    def run(self, emit: Callable[[Event], None]) -> None:
        """Report events to ``emit`` until :meth:`stop`; blocks.  Never raises for service trouble."""
        with self._lock:
            if self._running:
                raise UsageError("this monitor is already running", "监视器已在运行")
            self._running = True
            self._stop.clear()
        try:
            deliver = self._filtered(emit)
            self._deliver = deliver
            self._loop(deliver)
        finally:
            with self._lock:
                self._running = False
                self._source = None
                self._deliver = None

    def publish(self, event: Event) -> None:
        """Add an event from another source (a QR scanner, an ID-card reader) to this stream.

        Delivered on the caller's thread, through the same reader filter and consumer; dropped
        when the monitor is not running.
        """
        deliver = self._deliver
        if deliver is not None:
            deliver(event)

    def _filtered(self, emit: Callable[[Event], None]) -> Callable[[Event], None]:
        pattern = (self.reader or "").lower()

        def deliver(event: Event) -> None:
            if pattern and event.kind in READER_KINDS and event.reader and pattern not in event.reader.lower():
                return
            try:
                emit(event)
            except Exception:
                # The consumer's bug must not stop the monitor (docs/design.md §6): say so, keep going.
                log.exception("event consumer failed on %s", event.kind)

        return deliver

    def _loop(self, emit: Callable[[Event], None]) -> None:
        known: dict[str, ReaderSnapshot] = {}
        service_up: bool | None = None
        delays = self.backoff.delays()
        while not self._stop.is_set():
            source = self._make_source()
            with self._lock:
                if self._stop.is_set():
                    return
                self._source = source
            try:
                try:
                    source.open()
                    current = dict(source.snapshot())
                except ServiceLost as exc:
                    if service_up is not False:
                        log.warning("PC/SC service unavailable (%s); retrying with backoff", exc.detail or exc)
                        emit(Event(EventKind.SERVICE_LOST, time=_now(), detail=exc.detail or str(exc)))
                        service_up = False
                    self._stop.wait(next(delays))
                    continue
                cause = "initial" if service_up is None else "service_restored"
                if service_up is False:
                    log.warning("PC/SC service is back")
                    emit(Event(EventKind.SERVICE_RESTORED, time=_now()))
                service_up, delays = True, self.backoff.delays()
                for event in diff(known, current, cause):
                    if self.initial or cause != "initial":
                        emit(event)
                known = current
                while True:
                    current = dict(source.wait())
                    for event in diff(known, current):
                        emit(event)
                    known = current
            except Cancelled:
                return
            except ServiceLost as exc:
                detail = exc.detail or str(exc)
                log.warning("PC/SC service lost (%s); reconnecting with backoff", detail)
                for event in diff(known, {}, "service_lost"):
                    emit(event)
                known = {}
                emit(Event(EventKind.SERVICE_LOST, time=_now(), detail=detail))
                service_up = False
                self._stop.wait(next(delays))
            except Exception as exc:
                log.exception("event source failed; treating it as a lost service and reconnecting")
                for event in diff(known, {}, "service_lost"):
                    emit(event)
                known = {}
                emit(Event(EventKind.SERVICE_LOST, time=_now(), detail=f"{type(exc).__name__}: {exc}"))
                service_up = False
                self._stop.wait(next(delays))
            finally:
                source.close()

    def stop(self) -> None:
        """End :meth:`run` (from any thread, or from an event callback) as soon as possible."""
        with self._lock:
            self._stop.set()
            source = self._source
        if source is not None:
            source.cancel()

    # -- consuming forms --------------------------------------------------------------------

    def start(self, callback: Callable[[Event], None]) -> threading.Thread:
        """Run on a daemon thread, calling ``callback(event)`` there; :meth:`stop` ends it."""
        thread = threading.Thread(target=self.run, args=(callback,), name="sscard-monitor", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def __iter__(self) -> Iterator[Event]:
        """Events as they come, blocking between them; leaving the loop stops the monitor."""
        events: queue.SimpleQueue[object] = queue.SimpleQueue()

        def run() -> None:
            try:
                self.run(events.put)
            finally:
                events.put(_END)

        thread = threading.Thread(target=run, name="sscard-monitor", daemon=True)
        thread.start()
        try:
            while True:
                item = events.get()
                if item is _END:
                    return
                assert isinstance(item, Event)
                yield item
        finally:
            self.stop()
            thread.join(timeout=5)

    async def aevents(self) -> AsyncIterator[Event]:
        """The asyncio form: the blocking loop runs on a thread and hands events to this loop."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[object] = asyncio.Queue()

        def put(item: object) -> None:
            loop.call_soon_threadsafe(events.put_nowait, item)

        def run() -> None:
            try:
                self.run(put)
            finally:
                with contextlib.suppress(RuntimeError):  # the event loop closed first
                    put(_END)

        thread = threading.Thread(target=run, name="sscard-monitor", daemon=True)
        thread.start()
        try:
            while True:
                item = await events.get()
                if item is _END:
                    return
                assert isinstance(item, Event)
                yield item
        finally:
            self.stop()
            await asyncio.to_thread(thread.join, 5)
