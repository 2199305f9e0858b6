"""The event monitor: state diffs, surviving a lost service, the three consuming forms, ``sscard watch``.

Three tiers, as elsewhere:

* the monitor loop against a scripted :class:`~sscard.transports.watch.EventSource` (no PC/SC):
  backoff, reconnect, consumer failures, filters, iterator and asyncio forms;
* :class:`~sscard.transports.pcsc_events.PcscEventSource` against an in-memory stand-in for
  pyscard's ``scard`` module, for the one thing pcscd + vpcd cannot do here: plugging a reader in and
  out (vpcd readers are static; real hot-plug needs USB);
* end to end through the real pcscd + vpcd (``@pytest.mark.pcscd``): card in and out, pcscd killed
  and started again, and ``sscard watch`` as a subprocess.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from sscard.events import Backoff, Event, EventKind, Monitor, diff
from sscard.transports.watch import Cancelled, ReaderSnapshot, ServiceLost
from support import pcsc_env

R1, R2 = "Reader A 00 00", "Reader B 00 00"
ATR1, ATR2 = bytes.fromhex("3B6D000000814E43238697150100A3C1E5"), bytes.fromhex("3B8080")
FAST = Backoff(first=0.01, factor=2.0, ceiling=0.04)


def snap(name: str, present: bool = False, atr: bytes = ATR1, counter: int = 0) -> ReaderSnapshot:
    return ReaderSnapshot(name, present, atr if present else b"", counter)


def kinds(events: list[Event]) -> list[tuple[str, str | None]]:
    return [(e.kind.value, e.reader) for e in events]


# -- diff ---------------------------------------------------------------------------------------


def test_diff_reports_what_is_there_at_start() -> None:
    events = diff({}, {R1: snap(R1, True), R2: snap(R2)}, "initial")
    assert kinds(events) == [("reader_attached", R1), ("card_inserted", R1), ("reader_attached", R2)]
    assert events[1].atr == ATR1
    assert {e.cause for e in events} == {"initial"}


def test_diff_card_in_and_out() -> None:
    empty, full = {R1: snap(R1, counter=4)}, {R1: snap(R1, True, counter=5)}
    assert kinds(diff(empty, full)) == [("card_inserted", R1)]
    assert kinds(diff(full, {R1: snap(R1, counter=6)})) == [("card_removed", R1)]
    assert diff(full, full) == []


def test_diff_sees_a_swap_between_two_looks() -> None:
    """Pulled and another pushed in before we looked again: pcsc-lite's event counter moved."""
    before = {R1: snap(R1, True, ATR1, counter=5)}
    same_atr = {R1: snap(R1, True, ATR1, counter=7)}
    other_atr = {R1: snap(R1, True, ATR2, counter=5)}
    assert kinds(diff(before, same_atr)) == [("card_removed", R1), ("card_inserted", R1)]
    assert kinds(diff(before, other_atr)) == [("card_removed", R1), ("card_inserted", R1)]
    assert diff(before, other_atr)[1].atr == ATR2


def test_diff_reader_unplugged_with_a_card_in_it() -> None:
    events = diff({R1: snap(R1, True), R2: snap(R2)}, {R2: snap(R2)})
    assert kinds(events) == [("card_removed", R1), ("reader_detached", R1)]


def test_event_json_line() -> None:
    inserted = diff({}, {R1: snap(R1, True)})[1].to_json()
    assert inserted["event"] == "card_inserted"
    assert inserted["reader"] == R1 and inserted["atr"] == ATR1.hex().upper()
    assert inserted["time"][10] == "T" and inserted["time"][-6] in "+-", "ISO 8601 with a UTC offset"
    removed = diff({R1: snap(R1, True)}, {R1: snap(R1)})[0].to_json()
    assert "atr" not in removed and "cause" not in removed
    lost = Event(EventKind.SERVICE_LOST, detail="pcscd gone").to_json()
    assert lost["reader"] is None and lost["detail"] == "pcscd gone"


# -- the monitor loop against a scripted source -------------------------------------------------


class ScriptedSource:
    """One connection to a pretend service: ``steps[0]`` answers open()+snapshot(), the rest answer
    wait() in turn; an exception in a step is raised.  Past the script, wait() blocks until cancel."""

    def __init__(self, steps: list[Any]) -> None:
        self.steps = list(steps)
        self.cancelled = threading.Event()
        self.closed = False
        self._first: Any = None

    def open(self) -> None:
        self._first = self.steps.pop(0)
        if isinstance(self._first, BaseException):
            raise self._first

    def snapshot(self) -> Mapping[str, ReaderSnapshot]:
        assert isinstance(self._first, dict)
        return self._first

    def wait(self) -> Mapping[str, ReaderSnapshot]:
        if self.steps:
            step = self.steps.pop(0)
            if isinstance(step, BaseException):
                raise step
            assert isinstance(step, dict)
            return step
        self.cancelled.wait(10)
        raise Cancelled

    def cancel(self) -> None:
        self.cancelled.set()

    def close(self) -> None:
        self.closed = True


def scripted(*connections: list[Any]) -> tuple[Callable[[], ScriptedSource], list[ScriptedSource]]:
    made: list[ScriptedSource] = []
    remaining = list(connections)

    def factory() -> ScriptedSource:
        source = ScriptedSource(remaining.pop(0) if remaining else [ServiceLost("script over")])
        made.append(source)
        return source

    return factory, made


def collect(monitor: Monitor, count: int, timeout: float = 5.0) -> list[Event]:
    """Run ``monitor`` on its thread until ``count`` events arrived, then stop it."""
    events: list[Event] = []
    enough = threading.Event()

    def on_event(event: Event) -> None:
        events.append(event)
        if len(events) >= count:
            enough.set()

    thread = monitor.start(on_event)
    assert enough.wait(timeout), f"only {kinds(events)} within {timeout} s"
    monitor.stop()
    thread.join(5)
    assert not thread.is_alive(), "the monitor did not stop"
    return events


def test_monitor_reports_changes_after_the_initial_state() -> None:
    factory, made = scripted(
        [{R1: snap(R1)}, {R1: snap(R1, True, counter=1)}, {R1: snap(R1, counter=2)}],
    )
    events = collect(Monitor(source=factory, backoff=FAST), 3)
    assert kinds(events) == [("reader_attached", R1), ("card_inserted", R1), ("card_removed", R1)]
    assert [e.cause for e in events] == ["initial", None, None]
    assert made[0].closed


def test_monitor_without_initial_state() -> None:
    factory, _ = scripted([{R1: snap(R1, True)}, {R1: snap(R1, counter=1)}])
    events = collect(Monitor(source=factory, initial=False, backoff=FAST), 1)
    assert kinds(events) == [("card_removed", R1)]


def test_monitor_survives_the_service_going_away_and_coming_back() -> None:
    factory, made = scripted(
        [{R1: snap(R1, True)}, ServiceLost("pcscd died")],
        [ServiceLost("still down")],
        [ServiceLost("still down")],
        [{R1: snap(R1, True, counter=3)}],
    )
    events = collect(Monitor(source=factory, backoff=FAST), 8)
    assert kinds(events) == [
        ("reader_attached", R1),
        ("card_inserted", R1),
        ("card_removed", R1),
        ("reader_detached", R1),
        ("service_lost", None),  # said once, not once per retry
        ("service_restored", None),
        ("reader_attached", R1),
        ("card_inserted", R1),
    ]
    assert [e.cause for e in events[2:4]] == ["service_lost", "service_lost"]
    assert events[4].detail == "pcscd died"
    assert [e.cause for e in events[6:]] == ["service_restored", "service_restored"]
    assert all(source.closed for source in made)


def test_monitor_reports_a_service_that_is_not_there_at_start() -> None:
    factory, _ = scripted([ServiceLost("no pcscd")], [{}])
    events = collect(Monitor(source=factory, backoff=FAST), 2)
    assert kinds(events) == [("service_lost", None), ("service_restored", None)]


def test_monitor_backs_off_between_attempts() -> None:
    attempts: list[float] = []

    def factory() -> ScriptedSource:
        attempts.append(time.monotonic())
        return ScriptedSource([ServiceLost("down")] if len(attempts) < 5 else [{}])

    collect(Monitor(source=factory, backoff=Backoff(first=0.02, factor=2.0, ceiling=0.08)), 2)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(gaps) == 4
    assert gaps[0] >= 0.015 and gaps[1] >= 0.035 and gaps[2] >= 0.07 and gaps[3] >= 0.07
    assert gaps[3] < gaps[2] + 0.05, "the ceiling caps the delay"


def test_an_unexpected_source_error_is_logged_and_survived(caplog: pytest.LogCaptureFixture) -> None:
    factory, _ = scripted([{R1: snap(R1)}, RuntimeError("driver bug")], [{R1: snap(R1, True)}])
    events = collect(Monitor(source=factory, backoff=FAST), 6)
    assert kinds(events) == [
        ("reader_attached", R1),
        ("reader_detached", R1),
        ("service_lost", None),
        ("service_restored", None),
        ("reader_attached", R1),
        ("card_inserted", R1),
    ]
    assert "RuntimeError: driver bug" in (events[2].detail or "")
    assert any("event source failed" in r.message and r.exc_info for r in caplog.records)


def test_a_failing_consumer_does_not_stop_the_monitor(caplog: pytest.LogCaptureFixture) -> None:
    factory, _ = scripted([{R1: snap(R1)}, {R1: snap(R1, True, counter=1)}, {R1: snap(R1, counter=2)}])
    seen: list[Event] = []
    done = threading.Event()

    def consumer(event: Event) -> None:
        seen.append(event)
        if len(seen) == 3:
            done.set()
        raise ValueError("kiosk UI bug")

    monitor = Monitor(source=factory, backoff=FAST)
    thread = monitor.start(consumer)
    assert done.wait(5)
    monitor.stop()
    thread.join(5)
    assert kinds(seen) == [("reader_attached", R1), ("card_inserted", R1), ("card_removed", R1)]
    assert sum("event consumer failed" in r.message for r in caplog.records) == 3


def test_reader_filter_keeps_service_events() -> None:
    factory, _ = scripted(
        [
            {R1: snap(R1), R2: snap(R2)},
            {R1: snap(R1, True, counter=1), R2: snap(R2, True, counter=1)},
            ServiceLost("pcscd died"),
        ],
    )
    events = collect(Monitor("reader b", source=factory, backoff=FAST), 5)
    assert kinds(events) == [
        ("reader_attached", R2),
        ("card_inserted", R2),
        ("card_removed", R2),
        ("reader_detached", R2),
        ("service_lost", None),
    ]


def test_iterator_form_stops_when_the_loop_is_left() -> None:
    factory, made = scripted([{R1: snap(R1)}, {R1: snap(R1, True, counter=1)}])
    got = []
    for event in Monitor(source=factory, backoff=FAST):
        got.append(event)
        if len(got) == 2:
            break
    assert kinds(got) == [("reader_attached", R1), ("card_inserted", R1)]
    assert made[0].cancelled.is_set() and made[0].closed


def test_asyncio_form() -> None:
    factory, _ = scripted([{R1: snap(R1)}, {R1: snap(R1, True, counter=1)}])

    async def first_two() -> list[Event]:
        got: list[Event] = []
        async for event in Monitor(source=factory, backoff=FAST).aevents():
            got.append(event)
            if len(got) == 2:
                break
        return got

    got = asyncio.run(asyncio.wait_for(first_two(), 5))
    assert kinds(got) == [("reader_attached", R1), ("card_inserted", R1)]


def test_published_events_join_the_stream() -> None:
    factory, _ = scripted([{R1: snap(R1)}])
    monitor = Monitor(source=factory, backoff=FAST)
    got: list[Event] = []
    arrived = threading.Event()

    def on_event(event: Event) -> None:
        got.append(event)
        if event.kind is EventKind.QR_SCANNED:
            arrived.set()

    monitor.publish(Event(EventKind.QR_SCANNED, "/dev/sscard-qr"))  # not running: dropped
    thread = monitor.start(on_event)
    while not got:
        time.sleep(0.01)
    scan = Event(EventKind.QR_SCANNED, "/dev/sscard-qr", data={"kind": "electronic_ssc", "code": "X"})
    monitor.publish(scan)
    assert arrived.wait(5)
    monitor.stop()
    thread.join(5)
    assert [e.kind for e in got] == [EventKind.READER_ATTACHED, EventKind.QR_SCANNED]
    line = scan.to_json()
    assert line["event"] == "qr_scanned" and line["kind"] == "electronic_ssc" and line["reader"] == "/dev/sscard-qr"


def test_stop_before_start_and_twice_is_harmless() -> None:
    factory, _ = scripted([{}])
    monitor = Monitor(source=factory, backoff=FAST)
    monitor.stop()
    monitor.stop()
    events = collect(Monitor(source=scripted([{R1: snap(R1)}])[0], backoff=FAST), 1)
    assert kinds(events) == [("reader_attached", R1)]


# -- PcscEventSource against an in-memory scard (reader hot-plug) -------------------------------


class FakeScard:
    """Just enough of ``smartcard.scard`` for PcscEventSource; constants come from the real module."""

    def __init__(self) -> None:
        from smartcard import scard

        self._real = scard
        self.readers: dict[str, tuple[int, bytes]] = {}  # name -> (event state, atr)
        self.changed = threading.Condition()
        self.cancelled = False
        self.calls: list[int] = []  # timeouts of SCardGetStatusChange

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def _pnp_state(self) -> int:
        return len(self.readers) << 16

    def plug(self, name: str) -> None:
        with self.changed:
            self.readers[name] = (self._real.SCARD_STATE_EMPTY, b"")
            self.changed.notify_all()

    def unplug(self, name: str) -> None:
        with self.changed:
            del self.readers[name]
            self.changed.notify_all()

    def SCardEstablishContext(self, scope: int) -> tuple[int, int]:
        return 0, 1

    def SCardReleaseContext(self, context: int) -> int:
        return 0

    def SCardCancel(self, context: int) -> int:
        with self.changed:
            self.cancelled = True
            self.changed.notify_all()
        return 0

    def SCardListReaders(self, context: int, groups: list[str]) -> tuple[int, list[str]]:
        if not self.readers:
            return self._real.SCARD_E_NO_READERS_AVAILABLE, []
        return 0, list(self.readers)

    def _answer(self, queries: list[tuple[str, int]]) -> tuple[list[tuple[str, int, list[int]]], bool]:
        out, changed = [], False
        for name, known in queries:
            if name == "\\\\?PnP?\\Notification":
                state = self._pnp_state()
            elif name in self.readers:
                state = self.readers[name][0]
            else:
                state = self._real.SCARD_STATE_UNKNOWN
            if known != self._real.SCARD_STATE_UNAWARE and state != known:
                changed = True
                state |= self._real.SCARD_STATE_CHANGED
            out.append((name, state, list(self.readers.get(name, (0, b""))[1])))
        return out, changed

    def SCardGetStatusChange(self, context: int, timeout: int, queries: list[tuple[str, int]]) -> tuple[int, Any]:
        self.calls.append(timeout)
        with self.changed:
            while True:
                if self.cancelled:
                    return self._real.SCARD_E_CANCELLED, []
                states, changed = self._answer(queries)
                if changed or timeout == 0:
                    return 0, states
                self.changed.wait(5)


def test_pnp_notification_reports_readers_plugged_in_and_out(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("smartcard")
    from sscard.transports import pcsc_events

    fake = FakeScard()
    fake.plug(R1)
    monkeypatch.setattr(pcsc_events, "scard", fake)
    events: list[Event] = []
    arrived = threading.Condition()

    def on_event(event: Event) -> None:
        with arrived:
            events.append(event)
            arrived.notify_all()

    def wait_for(count: int) -> None:
        with arrived:
            assert arrived.wait_for(lambda: len(events) >= count, 5), kinds(events)

    monitor = Monitor(backoff=FAST)
    thread = monitor.start(on_event)
    wait_for(1)
    fake.plug(R2)
    wait_for(2)
    fake.unplug(R1)
    wait_for(3)
    monitor.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert kinds(events) == [("reader_attached", R1), ("reader_attached", R2), ("reader_detached", R1)]
    blocking = [t for t in fake.calls if t != 0]
    assert blocking and set(blocking) == {0xFFFFFFFF}, "waits block without a timeout of our own"


# -- end to end through pcscd + vpcd ------------------------------------------------------------


class Recorder:
    """A monitor running on its thread, with a way to wait for particular events."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.events: list[Event] = []
        self._arrived = threading.Condition()
        self.thread = monitor.start(self._on_event)

    def _on_event(self, event: Event) -> None:
        with self._arrived:
            self.events.append(event)
            self._arrived.notify_all()

    def wait_for(self, kind: EventKind, reader: str | None = None, timeout: float = 15.0, after: int = 0) -> Event:
        def found() -> Event | None:
            for event in self.events[after:]:
                if event.kind is kind and (reader is None or event.reader == reader):
                    return event
            return None

        with self._arrived:
            self._arrived.wait_for(lambda: found() is not None, timeout)
            event = found()
        assert event is not None, f"no {kind} for {reader} in {kinds(self.events)}"
        return event

    def stop(self) -> None:
        self.monitor.stop()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def recorder(vpcd_reader: str) -> Iterator[Recorder]:
    rec = Recorder(Monitor(vpcd_reader, backoff=Backoff(first=0.05, factor=2.0, ceiling=0.5)))
    rec.wait_for(EventKind.READER_ATTACHED, vpcd_reader)
    yield rec
    rec.stop()


@pytest.mark.pcscd
def test_card_in_and_out_through_pcscd(vpcd_card: pcsc_env.InsertCard, vpcd_reader: str, recorder: Recorder) -> None:
    link = vpcd_card("typical")
    inserted = recorder.wait_for(EventKind.CARD_INSERTED, vpcd_reader)
    assert inserted.atr == link.card.atr and inserted.cause is None
    link.remove()
    recorder.wait_for(EventKind.CARD_REMOVED, vpcd_reader)
    link2 = vpcd_card("v1_t0")
    second = recorder.wait_for(EventKind.CARD_INSERTED, vpcd_reader, after=len(recorder.events) - 1)
    assert second.atr == link2.card.atr


@pytest.mark.pcscd
def test_pcscd_killed_and_started_again(
    pcscd: pcsc_env.Pcscd,
    vpcd_card: pcsc_env.InsertCard,
    vpcd_reader: str,
    recorder: Recorder,
    tmp_path: Path,
) -> None:
    """Issue 3 item 6: lost and restored are reported, the card is seen again, the next read works."""
    from sscard.terminal import Terminal

    link = vpcd_card("typical", reconnect=True)
    recorder.wait_for(EventKind.CARD_INSERTED, vpcd_reader)
    terminal = Terminal.open(vpcd_reader)
    before = terminal.read()

    pcscd.kill()
    lost = recorder.wait_for(EventKind.SERVICE_LOST)
    gone = recorder.wait_for(EventKind.CARD_REMOVED, vpcd_reader)
    assert gone.cause == "service_lost" and lost.detail
    mark = len(recorder.events)
    pcscd.restart(tmp_path / "pcscd-restarted.log")
    recorder.wait_for(EventKind.SERVICE_RESTORED, after=mark)
    again = recorder.wait_for(EventKind.CARD_INSERTED, vpcd_reader, after=mark)
    # With a real reader pcscd finds the card as it starts (cause "service_restored"); the vpcd
    # card may reconnect a moment after pcscd is up, and is then an ordinary insertion.
    assert again.atr == link.card.atr and again.cause in ("service_restored", None)

    after = terminal.read()  # the old connection died with pcscd: replaced transparently
    assert after.to_json() == before.to_json()
    terminal.close()


@pytest.mark.pcscd
def test_sscard_watch_prints_json_lines(
    pcscd: pcsc_env.Pcscd, vpcd_card: pcsc_env.InsertCard, vpcd_reader: str, tmp_path: Path
) -> None:
    """``sscard watch`` as a kiosk would run it: insert, remove, pcscd restart, one JSON line each."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "sscard.cli", "-v", "watch", "--reader", vpcd_reader, "--timeout", "60"]
    watch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[dict[str, Any]] = []

    def next_event(kind: str) -> dict[str, Any]:
        assert watch.stdout is not None
        while True:
            line = watch.stdout.readline()
            if not line:
                stderr = watch.stderr.read() if watch.stderr else ""
                pytest.fail(f"watch ended ({watch.wait()}) before {kind}; got {lines}; stderr: {stderr}")
            lines.append(json.loads(line))
            if lines[-1]["event"] == kind:
                return lines[-1]

    try:
        assert next_event("reader_attached")["cause"] == "initial"
        link = vpcd_card("typical", reconnect=True)
        inserted = next_event("card_inserted")
        assert inserted["atr"] == link.card.atr.hex().upper() and inserted["reader"] == vpcd_reader
        link.remove()
        assert next_event("card_removed")["reader"] == vpcd_reader
        vpcd_card("typical", reconnect=True)
        next_event("card_inserted")
        pcscd.kill()
        next_event("service_lost")
        pcscd.restart(tmp_path / "pcscd-restarted.log")
        next_event("service_restored")
        assert next_event("card_inserted").get("cause") in ("service_restored", None)
    finally:
        watch.terminate()
        _out, err = watch.communicate(timeout=10)
    assert watch.returncode == 0, err
    assert "Traceback" not in err
    seen = {line["event"] for line in lines}
    pcsc_kinds = {
        "card_inserted",
        "card_removed",
        "reader_attached",
        "reader_detached",
        "service_lost",
        "service_restored",
    }
    assert seen >= pcsc_kinds, "all six PC/SC kinds, reader_detached from the pcscd restart"
    for line in lines:
        assert set(line) <= {"event", "reader", "atr", "time", "cause", "detail"}
        assert line["time"][:4].isdigit() and "T" in line["time"]
