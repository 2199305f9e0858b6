"""``GET /healthz``, ``GET /readyz`` and ``GET /metrics`` (docs/service.md "Health and metrics").

``/healthz`` says the process answers (its event loop runs); it touches nothing else, so a hung
pcscd cannot make a liveness probe restart a service that would come back by itself.

``/readyz`` says whether a card can be read now, one named check each:

* ``pcscd`` — pcscd answers (a PC/SC context, the reader's state);
* ``reader`` — the configured reader is there;
* ``serial`` — each configured serial device (``[qr] port``, ``[idcard] port``) is there and, for
  the QR scanner the service holds open, not reported removed by its follower;
* ``operations`` — no card operation has been running longer than ``[service] queue_timeout``
  (past that, every request queued behind it is refused SERVICE_BUSY).

200 when every check passes, else 503; the body names each check and, for a failed one, the
stable error code.  No card data, no ATR, no device path and no PIN ever appears in it.  The
probe runs on a worker thread under :data:`PROBE_TIMEOUT`, so a pcscd that hangs is a failed
check, not a hung request.  Both pass through the guard like every other path (loopback, Origin,
token).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sscard import __version__
from sscard.errors import NoReader, NoService, SscardError
from sscard.service.metrics import CONTENT_TYPE
from sscard.service.problems import NO_STORE, NotFound, error_response
from sscard.service.state import Service

#: Seconds the readiness probe waits for pcscd before calling the check failed.
PROBE_TIMEOUT = 1.0
#: What the scraper-only port (``sscard serve --metrics-port``) answers; anything else is 404 there.
SCRAPE_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


class ScrapeOnly:
    """On the ``--metrics-port`` listener only :data:`SCRAPE_PATHS`: no card endpoint, no WebSocket.

    One uvicorn server listens on both ports (one event loop, one terminal); the port a request
    came in on (the ASGI ``server``) tells which listener it is.
    """

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        on_scrape_port = scope["type"] in ("http", "websocket") and server is not None and server[1] == self.port
        if on_scrape_port and not (scope["type"] == "http" and scope.get("path") in SCRAPE_PATHS):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4404, "reason": "NOT_FOUND"})
                return
            await error_response(NotFound())(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "service": "sscard", "version": __version__}, headers=NO_STORE)


async def readyz(request: Request) -> Response:
    service: Service = request.app.state.service
    checks = await readiness(service)
    ready = all(check["ok"] for check in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503, headers=NO_STORE)


async def metrics(request: Request) -> Response:
    service: Service = request.app.state.service
    return Response(service.metrics.render(), media_type=CONTENT_TYPE, headers=NO_STORE)


async def readiness(service: Service) -> dict[str, dict[str, Any]]:
    """Each check by name: ``{"ok": bool, ...}`` (and ``code`` when it failed)."""
    pcscd, reader = await _probe_reader(service)
    serial = _serial(service)
    service.metrics.probed(
        None if "skipped" in pcscd else pcscd["ok"],
        reader["ok"] if pcscd["ok"] else None,  # with pcscd down, whether the reader is there is not known
        serial["devices"],
    )
    return {"pcscd": pcscd, "reader": reader, "serial": serial, "operations": _operations(service)}


async def _probe_reader(service: Service) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``pcscd`` and ``reader`` checks, from one look at the reader's state (``card_present``)."""
    reader = service.terminal.reader
    error: SscardError | None = None
    try:
        await _look(service)
    except SscardError as exc:
        error = exc
    except asyncio.TimeoutError:
        error = NoService(f"no answer within {PROBE_TIMEOUT:g} s")
    pcscd: dict[str, Any] = {"ok": True}
    if reader.name.startswith("sim:"):
        pcscd["skipped"] = "a simulated reader does not use pcscd"
    found: dict[str, Any] = {"ok": error is None, "name": reader.name}
    if error is not None:
        found["code"] = error.code
        if not isinstance(error, NoReader):
            pcscd = {"ok": False, "code": error.code}
    return pcscd, found


async def _look(service: Service) -> None:
    """``card_present()`` on a worker thread, waited for at most :data:`PROBE_TIMEOUT`.

    A look that has not come back (pcscd hung) is not abandoned and not repeated: the next
    probe waits on the same one, so a probe every few seconds cannot pile up blocked threads.
    """
    pending = service.probe
    if pending is None or pending.done() or pending.get_loop() is not asyncio.get_running_loop():
        pending = service.probe = asyncio.ensure_future(anyio.to_thread.run_sync(service.terminal.reader.card_present))
    await asyncio.wait_for(asyncio.shield(pending), PROBE_TIMEOUT)


def _serial(service: Service) -> dict[str, Any]:
    devices = {
        device: os.path.exists(path) and service.metrics.device_reported_up(device)
        for path, device in service.metrics.devices.items()
    }
    check: dict[str, Any] = {"ok": all(devices.values()), "devices": devices}
    if not check["ok"]:
        check["code"] = "DEVICE_NOT_FOUND"
    return check


def _operations(service: Service) -> dict[str, Any]:
    limit = service.queue_timeout
    running = service.metrics.longest_running()
    if running is None:
        return {"ok": True, "running": None, "timeout": limit}
    operation, seconds = running
    check: dict[str, Any] = {"ok": seconds <= limit, "running": operation, "seconds": round(seconds, 3)}
    check["timeout"] = limit
    if not check["ok"]:
        check["code"] = "SERVICE_BUSY"  # what every request queued behind it gets
    return check
