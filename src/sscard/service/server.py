"""The HTTP server under the service: uvicorn, with connection limits uvicorn does not have.

uvicorn closes keep-alive connections that stay idle (``timeout_keep_alive``), but it waits for
ever for a connection that never finishes its request line and headers, or whose body never
ends (slowloris), and its one cap, ``limit_concurrency``, counts those stalled connections too and
then answers *every* new request 503: a program that opens enough silent connections would starve
the kiosk page it was meant to protect.  So the service runs uvicorn with its own HTTP protocol
classes (the h11 and httptools ones with :class:`GuardedConnection` mixed in), which add:

* **header timeout** (``[service] header_timeout``): a connection must complete a request's
  headers within this many seconds of connecting (or of its previous response); else it is
  closed.  Bytes received before the headers end are also capped (:data:`MAX_HEADER_BYTES`), for
  both parsers alike.
* **body timeout** (``[service] body_timeout``): once the headers are in, the whole body must
  arrive within this many seconds; else the connection is closed and the request ends as a client
  disconnect (no response, no traceback).
* **a connection cap that evicts** (``[service] max_connections``): at the cap, a new connection
  closes the *oldest connection still waiting for a request* (stalled, trickling its headers, or
  idle between keep-alive requests) instead of being refused.  A legitimate client therefore
  always gets in, and the stalled connections held at any time are bounded by the cap.  Requests
  being answered and open WebSockets are never evicted; only when every connection is one of those
  is a new connection closed at once.

Time spent in the application (a queued card operation) is not limited here: ``queue_timeout``
bounds that.  WebSockets are kept alive by uvicorn's pings (20 s) once upgraded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from sscard.service.logs import RefusalLog, clean
from sscard.service.problems import BadRequest, error_response

log = logging.getLogger("sscard.service")

#: Request line plus headers, in bytes, before they must have ended (h11's own default limit).
MAX_HEADER_BYTES = 16 * 1024
#: uvicorn's keep-alive idle timeout, in seconds (its default, made explicit).
KEEP_ALIVE = 5


@dataclass(frozen=True)
class Limits:
    """The connection limits of one server (``[service]`` keys of the same names)."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 256


class GuardedConnection(asyncio.Protocol):
    """Mixed into uvicorn's HTTP protocol classes (before them in the MRO); see the module docstring.

    It only reads the state uvicorn's protocols share (``cycle``, ``cycle.more_body``,
    ``cycle.response_complete``, ``connections``, ``transport``) and overrides the asyncio
    protocol callbacks, calling the originals.
    """

    limits: Limits = Limits()
    refusals: RefusalLog = RefusalLog(log)

    # Provided by the uvicorn protocol this is mixed into.
    transport: asyncio.Transport
    cycle: Any
    connections: set[Any]
    loop: asyncio.AbstractEventLoop

    _waiting_since: float
    _body_since: float | None
    _header_bytes: int
    _timer: asyncio.TimerHandle | None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but have the same methods.)
        self._waiting_since = time.monotonic()
        self._body_since = None
        self._header_bytes = 0
        self._timer = None
        if len(self.connections) >= self.limits.max_connections and not self._evict_one():
            # Every connection is busy with a request or is a WebSocket: nothing can give way.
            self.refusals.refused("connections", f"{len(self.connections)} connections open, closing a new one")
            cast(asyncio.Transport, transport).abort()
            return
        super().connection_made(transport)
        self._schedule(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is None:  # aborted in connection_made: uvicorn never saw it
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._waiting():
            self._header_bytes += len(data)
        cycle_before = self.cycle
        super().data_received(data)
        if self.cycle is not cycle_before and self.cycle is not None:
            # A request's headers ended: its body (if any) must follow within body_timeout.
            self._header_bytes = 0
            self._body_since = time.monotonic()
        elif self._waiting() and self._header_bytes > MAX_HEADER_BYTES:
            self.refusals.refused("headers", f"more than {MAX_HEADER_BYTES} bytes of request headers")
            self.transport.abort()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._waiting_since = time.monotonic()
        self._header_bytes = 0

    def send_400_response(self, msg: str) -> None:
        """A request the parser cannot read: the JSON error form too, and a rate-limited log line."""
        self.refusals.refused("malformed", f"unreadable HTTP request ({clean(msg)})")
        response = error_response(BadRequest("the HTTP request cannot be parsed", "无法解析该HTTP请求"))
        head = [b"HTTP/1.1 400 Bad Request", b"connection: close", b"content-length: %d" % len(response.body)]
        head += [name + b": " + value for name, value in response.raw_headers if name != b"content-length"]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + response.body)
        self.transport.close()

    # -- the timer ----------------------------------------------------------------------------

    def _waiting(self) -> bool:
        """Waiting for a request: none yet, or the last one answered (keep-alive)."""
        cycle = self.cycle
        return cycle is None or bool(cycle.response_complete)

    def _schedule(self, delay: float) -> None:
        self._timer = self.loop.call_later(max(delay, 0.01), self._check)

    def _check(self) -> None:
        self._timer = None
        transport = self.transport
        if transport is None or transport.is_closing() or transport.get_protocol() is not self:
            return  # closed, or upgraded to a WebSocket (uvicorn's pings look after it now)
        now = time.monotonic()
        limits = self.limits
        if self._waiting():
            left = self._waiting_since + limits.header_timeout - now
            if left <= 0:
                self.refusals.refused("header timeout", f"no complete request within {limits.header_timeout:g} s")
                transport.abort()
                return
            self._schedule(left)
            return
        if self.cycle.more_body and self._body_since is not None:
            left = self._body_since + limits.body_timeout - now
            if left <= 0:
                self.refusals.refused("body timeout", f"request body not complete within {limits.body_timeout:g} s")
                transport.abort()
                return
            self._schedule(left)
            return
        # The application is answering (a card operation may wait for the reader): look again later.
        self._schedule(limits.header_timeout)

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for a request; False if there is none."""
        oldest: GuardedConnection | None = None
        for connection in self.connections:
            if (
                isinstance(connection, GuardedConnection)
                and connection.transport is not None
                and not connection.transport.is_closing()
                and connection.transport.get_protocol() is connection
                and connection._waiting()
                and (oldest is None or connection._waiting_since < oldest._waiting_since)
            ):
                oldest = connection
        if oldest is None:
            return False
        cap = self.limits.max_connections
        self.refusals.refused("connections", f"at the cap of {cap}, closing the connection idle the longest")
        oldest.transport.abort()
        # abort() calls connection_lost (which discards it from the set) only on the next loop turn.
        self.connections.discard(oldest)
        return True


def protocol_classes(limits: Limits, refusals: RefusalLog) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools when installed, as uvicorn's "auto"; else h11) with the limits."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # pragma: no cover - httptools is a dependency of uvicorn[standard]
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]
    return cast(
        "type[asyncio.Protocol]",
        type("SscardHttpProtocol", (GuardedConnection, Base), {"limits": limits, "refusals": refusals}),
    )


def h11_protocol(limits: Limits, refusals: RefusalLog) -> type[asyncio.Protocol]:
    """The same on h11 (tests check both parsers)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return cast(
        "type[asyncio.Protocol]",
        type("SscardH11Protocol", (GuardedConnection, H11Protocol), {"limits": limits, "refusals": refusals}),
    )


class _UvicornRefusals(logging.Filter):
    """Drops uvicorn's own per-request warnings that :meth:`GuardedConnection.send_400_response`
    logs, rate-limited, instead (one line per malformed request would let a client flood the log)."""

    MESSAGES = frozenset({"Invalid HTTP request received.", "Unsupported upgrade request."})

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.MESSAGES


def quiet_uvicorn() -> None:
    """Install the filter on ``uvicorn.error`` (once)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _UvicornRefusals) for f in logger.filters):
        logger.addFilter(_UvicornRefusals())


def raise_nofile(max_connections: int) -> None:
    """Raise the soft open-file limit so the connection cap, not EMFILE, is what bounds connections.

    systemd's default soft limit is 1024 (the unit sets ``LimitNOFILE``); at EMFILE asyncio stops
    accepting *every* connection for a while, the kiosk page's included.  Room is left for pcscd,
    the serial devices, the event loop and uvicorn's listening sockets.
    """
    import resource

    needed = max_connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        log.warning(
            "open-file limit %d is below the %d that [service] max_connections = %d needs; raise LimitNOFILE",
            hard,
            needed,
            max_connections,
        )
