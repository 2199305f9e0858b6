"""The local kiosk service: JSON over HTTP, a WebSocket event stream, the vendor-bridge WebSocket.

    sscard serve [--host 127.0.0.1] [--port 8765] [--reader R]

Kiosk pages run in a locked-down browser on the same machine; this service is what they talk to
instead of a vendor DLL bridge (docs/service.md).  What keeps it safe to run on a kiosk:

* it binds to 127.0.0.1 unless told otherwise;
* every request that carries an ``Origin`` (every browser request) must come from an allowed
  origin (``[service] allowed_origins``, default: the service's own), so a page on the internet
  cannot read the card of whoever stands at the kiosk — WebSocket handshakes included;
* an optional bearer token (``[service] token``) for non-browser clients;
* PINs only in request bodies, never logged or echoed; bodies are size-limited;
* one card operation at a time per terminal (an ``asyncio.Lock``); others wait up to
  ``[service] queue_timeout`` and then get ``SERVICE_BUSY``.

Card operations are blocking calls into :class:`~sscard.terminal.Terminal`; they run on worker
threads (``anyio.to_thread``) so the event loop keeps serving the event stream meanwhile.

This module is the wiring: the app from its parts and the server that runs it.  The parts, each
importing only those below it: :mod:`.problems` (the service's errors, the JSON error form, the
HTTP statuses of the one error table), :mod:`.hub` (the event fan-out), :mod:`.bodies` (request
bodies), :mod:`.guard` (Origin/Host/token, size), :mod:`.state` (the :class:`Service` the routes
share), :mod:`.compat` (the vendor-bridge messages), :mod:`.routes`, :mod:`.openapi`,
:mod:`.server` (uvicorn's HTTP protocols with the connection limits), :mod:`.logs`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from sscard.config import Config
from sscard.service.bodies import FIELDS, MAX_BODY
from sscard.service.guard import Guard, check_remote, client_is_loopback
from sscard.service.problems import (
    DEFAULT_STATUS,
    HTTP_STATUS,
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    ServiceError,
    error_response,
    http_status,
)
from sscard.service.routes import (
    compat,
    current_session,
    events,
    index,
    medical_credential,
    openapi,
    photo,
    pin_entry,
    pin_status,
    read,
    readers,
    sign_in,
    sign_out,
    status,
    token_verify,
    verify,
)
from sscard.service.state import Service
from sscard.terminal import Terminal

#: Names the tests and embedders import from here (their modules are the ones above).
__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_STATUS",
    "FIELDS",
    "HTTP_STATUS",
    "MAX_BODY",
    "Service",
    "ServiceError",
    "check_remote",
    "client_is_loopback",
    "create_app",
    "http_status",
    "serve",
]

DEFAULT_PORT = 8765


def create_app(
    config: Config,
    terminal: Terminal | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    allowed_origins: list[str] | None = None,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
    socket_path: str | None = None,
) -> Starlette:
    """The ASGI app; ``terminal`` defaults to ``Terminal.open(config=config)``.

    ``socket_path`` (default ``[service] socket``): also answer libSSCardDriver.so on that
    Unix-domain socket (docs/native.md); a socket systemd passed (``sscard.socket``) is used
    instead of binding one.
    """
    origins = allowed_origins if allowed_origins is not None else list(config.service_origins)
    shown_host = f"[{host}]" if ":" in host else host
    own = [f"{shown_host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"]
    if not origins:
        origins = [f"http://{name}" for name in own]
    hosts = allowed_hosts if allowed_hosts is not None else own
    service = Service(
        config=config,
        terminal=terminal or Terminal.open(config=config),
        allowed_origins=frozenset(origins),
        token=token if token is not None else config.service_token,
        queue_timeout=config.service_queue_timeout,
        allowed_hosts=frozenset(hosts),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start_events()
        try:
            service.start_native(socket_path if socket_path is not None else config.service_socket)
            yield
        finally:
            service.stop_native()  # before the event monitor stops (and the terminal closes)
            service.stop_events()

    routes = [
        Route("/", index),
        Route("/v1/openapi.json", openapi),
        Route("/v1/status", status),
        Route("/v1/readers", readers),
        Route("/v1/read", read, methods=["POST"]),
        Route("/v1/photo", photo, methods=["GET", "POST"]),
        Route("/v1/verify", verify, methods=["POST"]),
        Route("/v1/pin-status", pin_status, methods=["POST"]),
        Route("/v1/sign-in", sign_in, methods=["POST"]),
        Route("/v1/sign-out", sign_out, methods=["POST"]),
        Route("/v1/session", current_session),
        Route("/v1/token/verify", token_verify, methods=["POST"]),
        Route("/v1/pin-entry", pin_entry, methods=["POST"]),
        Route("/v1/medical/credential", medical_credential, methods=["POST"]),
        WebSocketRoute("/v1/events", events),
        WebSocketRoute("/v1/compat", compat),
    ]
    cors = Middleware(
        CORSMiddleware,
        allow_origins=sorted(service.allowed_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "Authorization"],
        # Chrome's Private Network Access: an allowed page on the network may reach loopback.
        allow_private_network=True,
    )
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(Guard, service=service), cors],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.service = service
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 in the JSON error form."""
    status = getattr(exc, "status_code", 400)
    error: ServiceError = (
        NotFound() if status == 404 else MethodNotAllowed() if status == 405 else BadRequest(f"HTTP {status}")
    )
    response = error_response(error)
    if status == 405 and isinstance(exc, HTTPException) and exc.headers:
        response.headers.update(exc.headers)  # Allow:
    return response


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug still answers in the JSON error form (Starlette logs the traceback after this)."""
    return error_response(InternalError(type(exc).__name__))


def serve(
    config: Config,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    allow_remote: bool = False,
    socket_path: str | None = None,
) -> None:
    """Run the service until SIGINT/SIGTERM (uvicorn handles both), with the connection limits of
    :mod:`sscard.service.server`."""
    import uvicorn

    from sscard.service.server import (
        KEEP_ALIVE,
        MAX_HEADER_BYTES,
        Limits,
        protocol_classes,
        quiet_uvicorn,
        raise_nofile,
    )

    check_remote(host, allow_remote, config.service_token)
    app = create_app(config, host=host, port=port, socket_path=socket_path)
    service: Service = app.state.service
    limits = Limits(config.service_header_timeout, config.service_body_timeout, config.service_max_connections)
    raise_nofile(limits.max_connections)
    quiet_uvicorn()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        ws="auto",
        ws_max_size=MAX_BODY,
        http=protocol_classes(limits, service.refusals),
        timeout_keep_alive=KEEP_ALIVE,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
