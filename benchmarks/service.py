"""The local service under load: event fan-out to many WebSocket subscribers, read latency through
the service next to the Python facade, and the service's memory.

    .venv/bin/python benchmarks/service.py [--subscribers 100] [--rounds 5] [--reads 50] [--slot S] [--json PATH]

It starts ``sscard serve --reader "Virtual PCD 00 0S"`` as a subprocess (``python -m sscard.cli``,
a free loopback port, its own configuration file with the defaults), and puts a simulated card
(persona ``typical``) into vpcd slot S (:class:`sscard.sim.VpcdLink`).  Then:

1. **Events.**  ``--subscribers`` WebSocket clients (the ``websockets`` library, all on this
   process's asyncio loop, each sending the service's own ``Origin`` as a kiosk page would)
   subscribe to ``/v1/events``.  Each round inserts the card, waits until every subscriber has
   received ``card_inserted`` (or ``--timeout`` passed), removes it and waits for ``card_removed``.
   Every subscriber's receive time is taken as ``time.monotonic()`` when its ``recv()`` returns and
   compared with the first subscriber's, with the moment pcscd powered the card (the vpcd link's
   ``powered_at``) and with the wake of a raw PC/SC client blocked in ``SCardGetStatusChange``
   in this process (:class:`common.RawStatusWaiter`, the floor for any PC/SC client).
   The subscribers all live on one asyncio loop, which takes turns over their sockets, so part of
   the spread is the measuring client's own.  To show how much, the same number of subscribers
   first receive ``--rounds`` broadcasts of a message of the same size from a bare ``websockets``
   server in another process (``websockets.broadcast``: one frame written to every socket in a
   tight loop): the **client floor**.
2. **Reads.**  With the card in, ``--reads`` rounds each time one ``POST /v1/read`` through the
   service (``http.client``, one keep-alive connection, until the JSON body is parsed) and one
   ``Terminal.read()`` in this process (a terminal opened once on the same reader, as the service
   keeps its own), alternating which goes first.  One untimed warm-up read each opens the
   connections.  Printed: medians and the ratio service / facade.
3. **Memory.**  The service process's ``VmRSS`` idle after start, with the subscribers connected,
   after the events and reads (``loaded``), its peak (``VmHWM``) and after the subscribers left.

Every wait has a timeout (``--timeout``); blocking calls run on daemon threads, so nothing can keep
the script from ending.  It is a benchmark, not a test: it exits 0 whatever the figures (even when
subscribers miss events: that is reported), and non-zero only when it could not run (no pcscd, no
reader, the service would not start or died, a read failed).  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import websockets
from common import (
    STEP_TIMEOUT,
    BenchmarkError,
    RawStatusWaiter,
    Row,
    Spread,
    SpreadRow,
    Stats,
    format_spread_table,
    format_table,
    header_lines,
    is_empty,
    is_present,
    machine_info,
    ms,
    now_iso,
    process_memory,
    reader_state,
    require_reader,
    vpcd_reader_name,
    wait_until,
    write_json,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from sscard.config import Config
from sscard.errors import SscardError
from sscard.sim import Persona, SimulatedCard, VpcdLink, load_persona
from sscard.terminal import Terminal

NAME = "service"
DEFAULT_SUBSCRIBERS = 100
DEFAULT_ROUNDS = 5
DEFAULT_READS = 50
PERSONA = "typical"
#: Ad-hoc runs use vpcd slot 1, so that a test run on slot 0 can share the pcscd.
FALLBACK_SLOT = 1
#: How long the service is left alone after it answers before its idle memory is taken.
SETTLE_S = 1.0
#: How often waits for subscribers look at what has arrived (arrival times are taken on receipt).
_POLL_S = 0.005

T = TypeVar("T")


def default_slot() -> int:
    """``SSCARD_VPCD_SLOT`` (as the tests), else :data:`FALLBACK_SLOT`."""
    try:
        return int(os.environ.get("SSCARD_VPCD_SLOT", str(FALLBACK_SLOT)))
    except ValueError:
        return FALLBACK_SLOT


async def in_thread(function: Callable[[], T], timeout: float, what: str) -> T:
    """Run a blocking call on a daemon thread and await it, giving up after ``timeout`` seconds.

    Not the loop's default executor: a call that never returns would keep ``asyncio.run`` from
    ending; a daemon thread is simply left behind.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(result: T) -> None:
        if not future.done():
            future.set_result(result)

    def fail(error: BaseException) -> None:
        if not future.done():
            future.set_exception(error)

    def work() -> None:
        try:
            result = function()
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody waits
                loop.call_soon_threadsafe(fail, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver, result)

    threading.Thread(target=work, name=f"bench-{what}", daemon=True).start()
    try:
        return await asyncio.wait_for(future, timeout)
    except asyncio.TimeoutError:
        raise BenchmarkError(f"{what} did not finish within {timeout:g} s") from None


# -- the service process ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServiceProcess:
    """``sscard serve`` on a free loopback port, with a configuration file of its own (defaults only)."""

    def __init__(self, reader: str, workdir: Path, timeout: float) -> None:
        self.reader = reader
        self.workdir = workdir
        self.timeout = timeout
        self.port = 0
        self.log_path = workdir / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> dict[str, Any]:
        """Start it and wait until ``GET /v1/status`` answers; returns that status."""
        self.port = free_port()
        config = self.workdir / "sscard.toml"
        config.write_text("[service]\nqueue_timeout = 10\n", encoding="utf-8")
        # Nothing of the caller's sscard set-up (SSCARD_READER, key services ...) leaks in.
        env = {key: value for key, value in os.environ.items() if not key.startswith("SSCARD_")}
        env["SSCARD_CONFIG"] = str(config)
        command = [sys.executable, "-m", "sscard.cli", "serve", "--reader", self.reader, "--port", str(self.port)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env
            )
        deadline = time.monotonic() + self.timeout
        while True:
            self.check_alive()
            try:
                status, body = self.request("GET", "/v1/status", timeout=1.0)
            except OSError:
                status, body = 0, b""
            if status == 200:
                answer: dict[str, Any] = json.loads(body)
                return answer
            if time.monotonic() > deadline:
                raise BenchmarkError(
                    f"`sscard serve` did not answer on port {self.port} within {self.timeout:g} s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def request(self, method: str, path: str, *, timeout: float) -> tuple[int, bytes]:
        """One request on a fresh connection (for the status checks, not the timed reads)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read()
        except http.client.HTTPException as exc:
            raise OSError(str(exc)) from exc
        finally:
            connection.close()

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise BenchmarkError(f"`sscard serve` exited with status {self.process.returncode}\n{self.log_tail()}")

    def memory(self) -> dict[str, int]:
        self.check_alive()
        return process_memory(self.pid)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "service log (last lines):\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down cleanly), SIGKILL if it does not go in time."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(self.timeout)


#: The client floor's server: a bare websockets server that broadcasts one event-sized message to
#: every client whenever any client sends "go".  Run as ``python -c FLOOR_SERVER PORT MESSAGE``.
FLOOR_SERVER = """
import asyncio, json, sys
from websockets.asyncio.server import broadcast, serve

clients = set()

async def handler(connection):
    clients.add(connection)
    try:
        await connection.send(json.dumps({"event": "hello"}))
        async for message in connection:
            if message == "go":
                broadcast(clients, sys.argv[2])
    finally:
        clients.discard(connection)

async def main():
    async with serve(handler, "127.0.0.1", int(sys.argv[1])):
        await asyncio.Future()

asyncio.run(main())
"""


class FloorServer:
    """:data:`FLOOR_SERVER` in a subprocess on a free loopback port."""

    def __init__(self, message: str, timeout: float) -> None:
        self.message = message
        self.timeout = timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-c", FLOOR_SERVER, str(self.port), self.message],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + self.timeout
        while True:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise BenchmarkError(f"the client-floor websockets server exited: {error[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchmarkError(
                        f"the client-floor websockets server did not listen within {self.timeout:g} s"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(self.timeout)


# -- WebSocket subscribers -------------------------------------------------------------------


class Subscriber:
    """One ``/v1/events`` client that records ``(monotonic receive time, text)`` of every message."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.messages: list[tuple[float, str]] = []
        self.connection: ClientConnection | None = None
        self.closed = False
        self._task: asyncio.Task[None] | None = None

    async def open(self, uri: str, origin: str, timeout: float) -> None:
        self.connection = await connect(
            uri, origin=Origin(origin), open_timeout=timeout, close_timeout=2.0, ping_interval=None
        )
        hello = json.loads(await asyncio.wait_for(self.connection.recv(), timeout))
        if hello.get("event") != "hello":
            raise BenchmarkError(f"subscriber {self.index}: the first message was not hello: {hello!r}")
        self._task = asyncio.create_task(self._receive(self.connection))

    async def _receive(self, connection: ClientConnection) -> None:
        try:
            while True:
                message = await connection.recv()
                received = time.monotonic()  # first thing: this is when the subscriber has it
                self.messages.append((received, message if isinstance(message, str) else message.decode()))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True

    def arrival(self, event: str, reader: str, since: int) -> float | None:
        """Receive time of the first ``event`` for ``reader`` among the messages from index ``since`` on."""
        for received, text in self.messages[since:]:
            payload = json.loads(text)
            if payload.get("event") == event and payload.get("reader") == reader:
                return received
        return None

    async def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def open_subscribers(
    count: int, uri: str, origin: str, timeout: float, alive: Callable[[], None] | None = None
) -> list[Subscriber]:
    """``count`` subscribers, all connected and greeted; ``alive`` says why when the server is gone."""
    subscribers = [Subscriber(index) for index in range(count)]
    results = await asyncio.gather(
        *(subscriber.open(uri, origin, timeout) for subscriber in subscribers), return_exceptions=True
    )
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        await close_subscribers(subscribers, timeout)
        if alive is not None:
            alive()
        raise BenchmarkError(
            f"{len(failures)} of {count} WebSocket subscribers could not connect to {uri}: {failures[0]!r}"
        )
    return subscribers


async def close_subscribers(subscribers: Sequence[Subscriber], timeout: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(s.close() for s in subscribers), return_exceptions=True), timeout)


async def arrivals(
    subscribers: Sequence[Subscriber], marks: Sequence[int], event: str, reader: str, timeout: float
) -> list[float | None]:
    """Every subscriber's receive time of ``event`` after its mark; None for those without it by ``timeout``."""
    deadline = time.monotonic() + timeout
    times: list[float | None] = [None] * len(subscribers)
    while True:
        for number, subscriber in enumerate(subscribers):
            if times[number] is None:
                times[number] = subscriber.arrival(event, reader, marks[number])
        waiting = [n for n, s in enumerate(subscribers) if times[n] is None and not s.closed]
        if not waiting or time.monotonic() > deadline:
            return times
        await asyncio.sleep(_POLL_S)


# -- measurements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRound:
    """One insertion as the subscribers heard of it; per-subscriber lists (None: never received)."""

    round: int
    subscribers: int
    received: int
    pcscd_detection_ms: float | None  # powered_at - inserted_at; None if vpcd saw no power-on
    raw_client_after_powered_ms: float | None
    after_first_ms: list[float | None]
    after_powered_ms: list[float | None]
    after_raw_client_ms: list[float | None]


@dataclass(frozen=True)
class ReadSample:
    round: int
    first: str  # "service" or "facade": which of the two went first this round
    service_ms: float
    facade_ms: float


#: The reader name in the client floor's message (any name: only its size matters).
FLOOR_READER = "Virtual PCD 00 01"


def floor_message() -> str:
    """A message as large as the service's ``card_inserted`` (same keys, same ATR length)."""
    return json.dumps(
        {
            "event": "card_inserted",
            "reader": FLOOR_READER,
            "time": "2026-01-01T00:00:00.000+00:00",
            "atr": "3B6D000000814E43238697150100A3C1E5",
        },
        separators=(",", ":"),
    )


def _relative(times: Sequence[float | None], origin: float | None) -> list[float | None]:
    if origin is None:
        return [None] * len(times)
    return [None if t is None else ms(t - origin) for t in times]


async def event_round(
    number: int,
    subscribers: Sequence[Subscriber],
    raw: RawStatusWaiter,
    slot: int,
    reader: str,
    persona: Persona,
    timeout: float,
) -> EventRound:
    link = VpcdLink(SimulatedCard(persona), port=VpcdLink.port_for_slot(slot))
    try:
        marks = [len(subscriber.messages) for subscriber in subscribers]
        started = time.monotonic()
        try:
            await in_thread(lambda: link.insert(timeout=timeout), timeout + 1, "inserting the card")
        except SscardError as exc:
            raise BenchmarkError(f"cannot insert the simulated card into vpcd slot {slot}: {exc}") from exc
        raw_wake = await in_thread(
            lambda: raw.wait_for(is_present, after=started, timeout=timeout), timeout + 1, "the raw PC/SC client"
        )
        times = await arrivals(subscribers, marks, "card_inserted", reader, timeout)
        inserted_at, powered_at = link.inserted_at, link.powered_at
        if powered_at is not None and inserted_at is not None and powered_at < inserted_at:
            powered_at = None  # a power-on of an earlier link: not this card's
        present = [t for t in times if t is not None]
        first = min(present) if present else None

        marks = [len(subscriber.messages) for subscriber in subscribers]
        removing = time.monotonic()
        link.remove()
        await in_thread(
            lambda: raw.wait_for(is_empty, after=removing, timeout=timeout), timeout + 1, "the raw PC/SC client"
        )
        await arrivals(subscribers, marks, "card_removed", reader, timeout)  # so rounds do not overlap
    finally:
        link.remove()
    return EventRound(
        round=number,
        subscribers=len(subscribers),
        received=len(present),
        pcscd_detection_ms=ms(powered_at - inserted_at) if powered_at is not None and inserted_at is not None else None,
        raw_client_after_powered_ms=ms(raw_wake.time - powered_at) if powered_at is not None else None,
        after_first_ms=_relative(times, first),
        after_powered_ms=_relative(times, powered_at),
        after_raw_client_ms=_relative(times, raw_wake.time),
    )


async def client_floor(count: int, rounds: int, message: str, timeout: float) -> list[list[float | None]]:
    """Per round, each subscriber's receive time after the first of one bare broadcast (ms)."""
    server = FloorServer(message, timeout)
    subscribers: list[Subscriber] = []
    rounds_ms: list[list[float | None]] = []
    try:
        await in_thread(server.start, timeout + 1, "starting the client-floor server")
        subscribers = await open_subscribers(count, f"ws://127.0.0.1:{server.port}/", "http://127.0.0.1", timeout)
        trigger = subscribers[0].connection
        assert trigger is not None
        for _ in range(rounds):
            marks = [len(subscriber.messages) for subscriber in subscribers]
            await trigger.send("go")
            times = await arrivals(subscribers, marks, "card_inserted", FLOOR_READER, timeout)
            present = [t for t in times if t is not None]
            rounds_ms.append(_relative(times, min(present) if present else None))
            await asyncio.sleep(0.05)
    finally:
        await close_subscribers(subscribers, timeout)
        await in_thread(server.stop, 2 * timeout + 1, "stopping the client-floor server")
    return rounds_ms


class ServiceReader:
    """``POST /v1/read`` on one keep-alive connection, timed until the JSON body is parsed."""

    def __init__(self, port: int, timeout: float) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def read(self) -> float:
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self.connection.request("POST", "/v1/read", body=b"{}", headers={"Content-Type": "application/json"})
                response = self.connection.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.connection.close()  # the server ended an idle keep-alive connection: once more
                if attempt == 2:
                    raise BenchmarkError(f"POST /v1/read failed twice: {exc!r}") from exc
                continue
            except (OSError, http.client.HTTPException) as exc:
                self.connection.close()
                raise BenchmarkError(f"POST /v1/read failed: {exc!r}") from exc
            try:
                card = json.loads(body)
            except ValueError:
                card = None
            elapsed = time.perf_counter() - started
            if response.status != 200 or not isinstance(card, dict) or "card" not in card:
                raise BenchmarkError(f"POST /v1/read answered {response.status}: {body[:300]!r}")
            return ms(elapsed)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


def facade_read(terminal: Terminal) -> float:
    started = time.perf_counter()
    try:
        terminal.read()
    except SscardError as exc:
        raise BenchmarkError(f"Terminal.read() failed: {exc.code} {exc}") from exc
    return ms(time.perf_counter() - started)


async def read_rounds(
    rounds: int, service: ServiceProcess, raw: RawStatusWaiter, slot: int, reader: str, persona: Persona, timeout: float
) -> list[ReadSample]:
    link = VpcdLink(SimulatedCard(persona), port=VpcdLink.port_for_slot(slot))
    client = ServiceReader(service.port, timeout)
    terminal: Terminal | None = None
    samples: list[ReadSample] = []
    try:
        started = time.monotonic()
        try:
            await in_thread(lambda: link.insert(timeout=timeout), timeout + 1, "inserting the card")
        except SscardError as exc:
            raise BenchmarkError(f"cannot insert the simulated card into vpcd slot {slot}: {exc}") from exc
        await in_thread(
            lambda: raw.wait_for(is_present, after=started, timeout=timeout), timeout + 1, "the raw PC/SC client"
        )
        opened = await in_thread(lambda: Terminal.open(reader, config=Config()), timeout, "Terminal.open")
        terminal = opened
        await in_thread(client.read, timeout, "the warm-up read through the service")
        await in_thread(lambda: facade_read(opened), timeout, "the warm-up read through the facade")
        for number in range(1, rounds + 1):
            service_first = number % 2 == 1
            times: dict[str, float] = {}
            for which in ("service", "facade") if service_first else ("facade", "service"):
                if which == "service":
                    times[which] = await in_thread(client.read, timeout, "a read through the service")
                else:
                    times[which] = await in_thread(lambda: facade_read(opened), timeout, "a read through the facade")
            samples.append(
                ReadSample(number, "service" if service_first else "facade", times["service"], times["facade"])
            )
    finally:
        client.close()
        if terminal is not None:
            with contextlib.suppress(Exception):
                terminal.close()
        link.remove()
    with contextlib.suppress(BenchmarkError):
        await in_thread(lambda: wait_until(reader, is_empty, "empty", timeout), timeout + 1, "removing the card")
    return samples


# -- the result ------------------------------------------------------------------------------


def _flat(rounds: Sequence[EventRound], key: str) -> list[float | None]:
    return [value for sample in rounds for value in getattr(sample, key)]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _mib(kb: int | None) -> str:
    return f"{kb / 1024:8.1f} MiB" if kb is not None else "     n/a"


#: (JSON key, printed label) of the memory samples, in the order they are taken.
MEMORY = (
    ("idle_rss_kb", "idle, after start (VmRSS)"),
    ("connected_rss_kb", "subscribers connected, before any event (VmRSS)"),
    ("loaded_rss_kb", "loaded: after the events and reads, subscribers still connected (VmRSS)"),
    ("peak_hwm_kb", "peak since start (VmHWM)"),
    ("after_rss_kb", "after the subscribers left (VmRSS)"),
)


@dataclass(frozen=True)
class Result:
    date: str
    machine: dict[str, Any]
    parameters: dict[str, Any]
    events: list[EventRound]
    floor: list[list[float | None]]
    reads: list[ReadSample]
    memory: dict[str, int | None]

    def event_spreads(self) -> dict[str, Spread]:
        rounds = self.events
        return {
            "after_first_ms": Spread.of(_flat(rounds, "after_first_ms")),
            "round_width_ms": Spread.of(
                [max((v for v in r.after_first_ms if v is not None), default=None) for r in rounds]
            ),
            "after_powered_ms": Spread.of(_flat(rounds, "after_powered_ms")),
            "after_raw_client_ms": Spread.of(_flat(rounds, "after_raw_client_ms")),
            "first_after_raw_client_ms": Spread.of(
                [min((v for v in r.after_raw_client_ms if v is not None), default=None) for r in rounds]
            ),
            "floor_after_first_ms": Spread.of([value for values in self.floor for value in values]),
            "floor_round_width_ms": Spread.of(
                [max((v for v in values if v is not None), default=None) for values in self.floor]
            ),
            "pcscd_detection_ms": Spread.of([r.pcscd_detection_ms for r in rounds]),
            "raw_client_after_powered_ms": Spread.of([r.raw_client_after_powered_ms for r in rounds]),
        }

    def read_stats(self) -> dict[str, Stats]:
        return {
            "service_ms": Stats.of([sample.service_ms for sample in self.reads]),
            "facade_ms": Stats.of([sample.facade_ms for sample in self.reads]),
        }

    def ratio(self) -> float | None:
        stats = self.read_stats()
        service, facade = stats["service_ms"].median, stats["facade_ms"].median
        return service / facade if self.reads and facade > 0 else None

    def delivered(self) -> tuple[int, int]:
        return sum(r.received for r in self.events), sum(r.subscribers for r in self.events)

    def render(self) -> str:
        spreads, reads, ratio = self.event_spreads(), self.read_stats(), self.ratio()
        delivered, expected = self.delivered()
        subscribers = self.parameters["subscribers"]
        title = "sscard service under load (benchmarks/service.py): events to WebSocket subscribers, reads, memory"
        lines = [*header_lines(title, self.machine, self.date, self.parameters), ""]
        lines.append(
            f"card_inserted to {subscribers} WebSocket subscribers of /v1/events, {len(self.events)} rounds: "
            f"{delivered} of {expected} delivered"
        )
        lines.append(
            format_spread_table(
                [
                    SpreadRow("spread", "after the first subscriber", spreads["after_first_ms"]),
                    SpreadRow("", "last - first subscriber (per round)", spreads["round_width_ms"]),
                    SpreadRow("floor", "after the first (bare websockets broadcast)", spreads["floor_after_first_ms"]),
                    SpreadRow("", "last - first (per round)", spreads["floor_round_width_ms"]),
                    SpreadRow("latency", "after pcscd powered the card", spreads["after_powered_ms"]),
                    SpreadRow("", "after a raw PC/SC client woke", spreads["after_raw_client_ms"]),
                    SpreadRow("", "first subscriber after the raw client", spreads["first_after_raw_client_ms"]),
                    SpreadRow("pcscd", "raw PC/SC client woke after power-on", spreads["raw_client_after_powered_ms"]),
                ]
            )
        )
        lines.append("")
        difference = reads["service_ms"].median - reads["facade_ms"].median
        lines.append(f"read latency, {len(self.reads)} alternating rounds on the same card")
        lines.append(
            format_table(
                [
                    Row("read", "service: POST /v1/read (HTTP keep-alive)", reads["service_ms"]),
                    Row("", "facade: Terminal.read() in process", reads["facade_ms"]),
                ]
            )
        )
        if ratio is not None:
            lines.append(f"ratio service / facade (medians): {ratio:.2f}; the service adds {difference:.2f} ms")
        lines.append("")
        lines.append("service memory (the `sscard serve` process)")
        lines.extend(f"  {label:<75} {_mib(self.memory.get(key))}" for key, label in MEMORY)
        lines.append("")
        lines.append("Subscriber times are taken on receipt in one asyncio loop: the floor rows are that loop's own")
        lines.append("share of the spread. 'after a raw PC/SC client woke' is what the service adds over pcscd.")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        delivered, expected = self.delivered()
        return {
            "benchmark": NAME,
            "date": self.date,
            "machine": self.machine,
            "parameters": self.parameters,
            "events": {
                "delivered": delivered,
                "expected": expected,
                "summary": {key: value.to_json() for key, value in self.event_spreads().items()},
                "rounds": [asdict(sample) for sample in self.events],
                "floor_rounds": [{"round": n, "after_first_ms": v} for n, v in enumerate(self.floor, 1)],
            },
            "read": {
                "summary": {key: value.to_json() for key, value in self.read_stats().items()},
                "ratio_median": _rounded(self.ratio()),
                "samples": [asdict(sample) for sample in self.reads],
            },
            "memory": self.memory,
        }


# -- running ---------------------------------------------------------------------------------


async def measure_async(
    subscribers_count: int, rounds: int, reads: int, slot: int, reader: str, timeout: float
) -> tuple[list[EventRound], list[list[float | None]], list[ReadSample], dict[str, int | None]]:
    persona = load_persona(PERSONA)
    memory: dict[str, int | None] = {key: None for key, _ in MEMORY}
    floor = await client_floor(subscribers_count, rounds, floor_message(), timeout)
    with tempfile.TemporaryDirectory(prefix="sscard-bench-service-") as workdir:
        service = ServiceProcess(reader, Path(workdir), timeout)
        raw = RawStatusWaiter(reader)
        subscribers: list[Subscriber] = []
        try:
            status = await in_thread(service.start, timeout + 5, "starting `sscard serve`")
            if status.get("reader") != reader:
                raise BenchmarkError(f"the service opened reader {status.get('reader')!r}, not {reader!r}")
            await in_thread(raw.start, timeout, "starting the raw PC/SC client")
            await asyncio.sleep(SETTLE_S)
            memory["idle_rss_kb"] = service.memory()["rss_kb"]

            uri = f"ws://127.0.0.1:{service.port}/v1/events"
            subscribers = await open_subscribers(subscribers_count, uri, service.origin, timeout, service.check_alive)
            await asyncio.sleep(SETTLE_S / 2)
            memory["connected_rss_kb"] = service.memory()["rss_kb"]

            events = [
                await event_round(number, subscribers, raw, slot, reader, persona, timeout)
                for number in range(1, rounds + 1)
            ]
            service.check_alive()
            samples = await read_rounds(reads, service, raw, slot, reader, persona, timeout)
            loaded = service.memory()
            memory["loaded_rss_kb"], memory["peak_hwm_kb"] = loaded["rss_kb"], loaded["hwm_kb"]

            await close_subscribers(subscribers, timeout)
            await asyncio.sleep(SETTLE_S / 2)
            memory["after_rss_kb"] = service.memory()["rss_kb"]
        finally:
            await close_subscribers(subscribers, timeout)
            await in_thread(raw.stop, timeout, "stopping the raw PC/SC client")
            await in_thread(service.stop, 2 * timeout + 1, "stopping `sscard serve`")
    return events, floor, samples, memory


def measure(subscribers: int, rounds: int, reads: int, slot: int, *, timeout: float) -> Result:
    """Run the benchmark; :class:`BenchmarkError` when it cannot."""
    reader = vpcd_reader_name(slot)
    require_reader(reader)
    if is_present(reader_state(reader)):
        print(f"{reader} holds a card (another program's?); waiting for it to go ...", file=sys.stderr)
        wait_until(reader, is_empty, "empty", timeout)
    parameters: dict[str, Any] = {
        "subscribers": subscribers,
        "rounds": rounds,
        "reads": reads,
        "reader": reader,
        "persona": PERSONA,
        "timeout_s": timeout,
    }
    date, machine = now_iso(), machine_info()
    events, floor, samples, memory = asyncio.run(measure_async(subscribers, rounds, reads, slot, reader, timeout))
    return Result(date, machine, parameters, events, floor, samples, memory)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/service.py",
        description="The local service under load: card events to many WebSocket subscribers, read latency "
        "through the service vs the Python facade, and the service's memory.",
    )
    parser.add_argument(
        "--subscribers", type=int, default=DEFAULT_SUBSCRIBERS, help="WebSocket subscribers (default %(default)s)"
    )
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="card insertions (default %(default)s)")
    parser.add_argument(
        "--reads", type=int, default=DEFAULT_READS, help="alternating service/facade read rounds (default %(default)s)"
    )
    parser.add_argument(
        "--slot",
        type=int,
        default=default_slot(),
        help=f"vpcd slot to use (default: $SSCARD_VPCD_SLOT, else {FALLBACK_SLOT}: 'Virtual PCD 00 0{FALLBACK_SLOT}')",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every sample and the summary here")
    parser.add_argument(
        "--timeout", type=float, default=STEP_TIMEOUT, metavar="SECONDS", help="give up on any one wait after this"
    )
    args = parser.parse_args(argv)
    if args.subscribers < 1 or args.rounds < 1 or args.reads < 1:
        parser.error("--subscribers, --rounds and --reads must be at least 1")
    if args.slot < 0:
        parser.error("--slot must be 0 or more")
    if args.timeout <= 0:
        parser.error("--timeout must be > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = measure(args.subscribers, args.rounds, args.reads, args.slot, timeout=args.timeout)
    except BenchmarkError as exc:
        print(f"benchmarks/service.py: cannot run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmarks/service.py: interrupted", file=sys.stderr)
        return 130
    print(result.render())
    if args.json is not None:
        write_json(args.json, result.to_json())
        print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
