"""What the service writes to its log about requests: escaped, and refusals rate-limited.

Two rules, kept in one place so that no log call can forget them:

* **Request data is escaped.**  A path, a header value or a WebSocket reason comes from the
  client; written raw, ``GET /%0A2026-12-01 INFO sscard granted`` forges a log line (log
  injection) and an ESC sequence repaints the operator's terminal.  :func:`clean` turns every
  control or otherwise unprintable character into a visible ``\\xNN``/``\\uNNNN`` escape and
  bounds the length; every log call that prints request data goes through it.
* **Refusals are rate-limited.**  A page or program that hammers the service with refused
  requests (a foreign Origin, a wrong token, oversized bodies, stalled connections) would
  otherwise fill the journal and hide what matters.  :class:`RefusalLog` writes the first
  refusal of each reason, then at most one line per reason per ``interval`` seconds, saying how
  many were suppressed in between.

And every request's log records carry its request id (:class:`RequestIds`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sscard.logfmt import log_context

#: Longest piece of request data written to the log, in characters, before ``…``.
MAX_LOGGED = 200


def clean(value: object, limit: int = MAX_LOGGED) -> str:
    """``value`` as text safe for one log line: control and unprintable characters escaped, bounded.

    Chinese and other printable non-ASCII text is kept as it is (it is readable in the journal);
    only categories C* (controls, format characters such as bidi overrides, unassigned, surrogates)
    and the line/paragraph separators Zl/Zp are escaped, and the backslash itself so that an escape
    in the output is always ours.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    out: list[str] = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
            continue
        category = unicodedata.category(char)
        if category[0] == "C" or category in ("Zl", "Zp"):
            point = ord(char)
            if point < 0x100:
                out.append(f"\\x{point:02x}")
            else:
                out.append(f"\\u{point:04x}" if point < 0x10000 else f"\\U{point:08x}")
        else:
            out.append(char)
    return "".join(out)


class RefusalLog:
    """One warning per refusal reason per ``interval`` seconds, with the count of those suppressed.

    Thread-safe (refusals are logged from the event loop, but cheap locking keeps it correct if a
    worker thread ever logs one).  ``clock`` is injectable for tests.
    """

    def __init__(
        self, logger: logging.Logger, interval: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        #: reason → (time of the last line written, refusals suppressed since)
        self._state: dict[str, tuple[float, int]] = {}
        #: Told every refusal's reason, suppressed or not (the service's metrics count them).
        self.counted: Callable[[str], None] | None = None

    def refused(self, reason: str, detail: str) -> bool:
        """Log one refusal (``detail`` already :func:`clean`); False when it was suppressed."""
        if self.counted is not None:
            self.counted(reason)
        now = self.clock()
        with self._lock:
            last, suppressed = self._state.get(reason, (None, 0))
            if last is not None and now - last < self.interval:
                self._state[reason] = (last, suppressed + 1)
                return False
            self._state[reason] = (now, 0)
        if suppressed:
            self.logger.warning(
                "refused (%s): %s (%d more refused for this reason in the last %.0f s, not logged)",
                reason,
                detail,
                suppressed,
                now - last if last is not None else 0.0,
            )
        else:
            self.logger.warning("refused (%s): %s", reason, detail)
        return True


#: A client's own ``X-Request-ID`` is kept when it looks like an id (so a kiosk page's id follows
#: its request into the log); anything else is replaced, so the header cannot forge log content.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestIds:
    """ASGI middleware: every HTTP request and WebSocket gets a request id in its log records
    (``request_id`` of ``--log-format json``, :func:`sscard.logfmt.log_context`, copied into the
    worker threads that run card operations) and in the ``X-Request-ID`` response header; the
    records also name the service's ``reader``."""

    def __init__(self, app: ASGIApp, reader: str | None = None) -> None:
        self.app = app
        self.reader = reader

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or ()).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", request_id.encode())]}
            await send(message)

        with log_context(request_id=request_id, reader=self.reader):
            await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
