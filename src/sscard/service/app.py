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
bodies), :mod:`.guard` (Origin/Host/token, size), :mod:`.metrics` (Prometheus), :mod:`.state`
(the :class:`Service` the routes share), :mod:`.compat` (the vendor-bridge messages),
:mod:`.bridge_profiles` and :mod:`.bridge` (vendor bridges' own ports and message shapes, as
data), :mod:`.routes`, :mod:`.ready` (``/healthz``, ``/readyz``, ``/metrics``), :mod:`.openapi`,
:mod:`.server` (uvicorn's HTTP protocols with the connection limits), :mod:`.logs`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from sscard.config import Config
from sscard.errors import UsageError
from sscard.service.bodies import FIELDS, MAX_BODY
from sscard.service.guard import OPEN_PATHS, Guard, GuardPolicy, check_remote, client_is_loopback
from sscard.service.logs import RequestIds
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
from sscard.service.ready import ScrapeOnly, healthz, metrics, readyz
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
log = logging.getLogger("sscard.service")


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
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> Starlette:
    """The ASGI app; ``terminal`` defaults to ``Terminal.open(config=config)``.

    ``socket_path`` (default ``[service] socket``): also answer libSSCardDriver.so on that
    Unix-domain socket (docs/native.md); a socket systemd passed (``sscard.socket``) is used
    instead of binding one.  ``[bridge] profile``: also answer that vendor bridge's messages on
    its port (``app.state.bridge_port``, which :func:`serve` listens on too; docs/service.md,
    "Vendor bridge profiles").  A broken profile is a CONFIG_ERROR here, at start-up.

    ``metrics_port``: the scraper-only listener's port (``--metrics-port``), which answers only
    ``/metrics``, ``/healthz`` and ``/readyz`` (:class:`~sscard.service.ready.ScrapeOnly`).
    """
    profile = None
    if config.bridge_profile:
        from sscard.service.bridge_profiles import load_profile

        profile = load_profile(config.bridge_profile)
        _check_bridge(profile, config, port)
    origins = allowed_origins if allowed_origins is not None else list(config.service_origins)
    shown_host = f"[{host}]" if ":" in host else host
    own = [f"{shown_host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"]
    if not origins:
        origins = [f"http://{name}" for name in own]
    if metrics_port is not None:  # the scraper-only port's Host names (it serves no page: no Origin)
        scrape_host = metrics_host or host
        shown_scrape = f"[{scrape_host}]" if ":" in scrape_host else scrape_host
        own += [f"{shown_scrape}:{metrics_port}", f"localhost:{metrics_port}", f"127.0.0.1:{metrics_port}"]
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
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
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
    # request ids in the log, then the guard and CORS
    middleware = [Middleware(RequestIds, reader=service.terminal.reader.name), *_guarded(service)]
    if metrics_port is not None:
        middleware.append(Middleware(ScrapeOnly, port=metrics_port))
    bridge_port = None
    if profile is not None:
        from sscard.service.bridge import BridgePolicy, ByPort
        from sscard.service.bridge import routes as bridge_routes

        bridge_port = config.bridge_port or profile.port
        names = [f"{shown_host}:{bridge_port}", f"localhost:{bridge_port}", f"127.0.0.1:{bridge_port}"]
        policy = BridgePolicy(service, frozenset([*names, f"[::1]:{bridge_port}"]))
        bridge = Starlette(
            routes=bridge_routes(profile, service),
            middleware=[
                Middleware(RequestIds, reader=service.terminal.reader.name),
                *_guarded(policy, open_paths=frozenset()),
            ],
            exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        )
        # Outside the main app's guard: the bridge port's connections get the bridge's (same rules).
        middleware.insert(0, Middleware(ByPort, bridge=bridge, port=bridge_port))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.service = service
    app.state.bridge_port = bridge_port
    return app


def _guarded(policy: GuardPolicy, open_paths: frozenset[str] | None = None) -> list[Middleware]:
    """The guard and CORS, the same for the service's port and a vendor bridge's."""
    cors = Middleware(
        CORSMiddleware,
        allow_origins=sorted(policy.allowed_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "Authorization"],
        # Chrome's Private Network Access: an allowed page on the network may reach loopback.
        allow_private_network=True,
    )
    guard = Middleware(Guard, service=policy, open_paths=OPEN_PATHS if open_paths is None else open_paths)
    return [guard, cors]


def _check_bridge(profile: Any, config: Config, port: int) -> None:
    """The bridge needs its own port, and ``read_idcard`` an ID-card reader (CONFIG_ERROR at start-up)."""
    from sscard.errors import ConfigError

    bridge_port = config.bridge_port or profile.port
    if bridge_port == port:
        raise ConfigError(
            f"[bridge] port {bridge_port} is the service's own port: give the bridge another",
            problem_zh=f"接口桥端口 {bridge_port} 与服务端口相同，请另选端口",
            key="bridge.port",
        )
    if "read_idcard" in profile.operations() and not config.idcard_port:
        raise ConfigError(
            f"bridge profile {profile.source} reads ID cards: set [idcard] port",
            problem_zh=f"接口桥配置 {profile.source} 需要读取身份证，请设置[idcard]中的'port'",
            key="idcard.port",
            file=profile.source,
        )


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
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> None:
    """Run the service until SIGINT/SIGTERM (uvicorn handles both), with the connection limits of
    :mod:`sscard.service.server`.

    ``metrics_port`` adds the scraper-only listener on ``metrics_host`` (default ``host``): the
    same server and app, answering only /metrics, /healthz and /readyz there.  A vendor bridge
    (``[bridge] profile``) is one more listening socket of the same server.
    """
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
    scrape_host = metrics_host or host
    if metrics_port is not None:
        check_metrics_port(port, metrics_port)
        check_remote(scrape_host, allow_remote, config.service_token)
    app = create_app(
        config, host=host, port=port, socket_path=socket_path, metrics_port=metrics_port, metrics_host=scrape_host
    )
    service: Service = app.state.service
    limits = Limits(config.service_header_timeout, config.service_body_timeout, config.service_max_connections)
    raise_nofile(limits.max_connections)
    quiet_uvicorn()
    from uvicorn.config import LOGGING_CONFIG

    from sscard.logfmt import custom_logging

    settings = uvicorn.Config(
        app,
        # With --log-format json or a log file, uvicorn's loggers go through sscard's handler too;
        # otherwise its own text lines, as always.
        log_config=None if custom_logging() else LOGGING_CONFIG,
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
    bridge_port = app.state.bridge_port
    if bridge_port is None and metrics_port is None:
        uvicorn.Server(settings).run()
        return
    # A vendor bridge or the scrapers' port: more listening sockets of the same server (same
    # protocol classes, so the same connection limits), routed by the port a connection arrived
    # on (bridge.ByPort, ready.ScrapeOnly).
    sockets = [_listen(host, port)]
    if bridge_port is not None:
        sockets.append(_listen(host, bridge_port))
    if metrics_port is not None:
        sockets.append(_listen(scrape_host, metrics_port))
    server = uvicorn.Server(settings)
    server.run(sockets=sockets)
    if not server.started:
        raise SystemExit(3)  # as uvicorn.run does


def check_metrics_port(port: int, metrics_port: int) -> None:
    """The scraper-only port must be another port: on the same one it would hide every endpoint."""
    if metrics_port == port:
        raise UsageError(
            f"--metrics-port {metrics_port} is the service's own port; give another port",
            "指标端口不能与服务端口相同",
        )


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; in use or not allowed is a UsageError, in both languages."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port} ({exc.strerror})", f"无法监听 {host}:{port}（端口被占用或无权限）"
        ) from None
    sock.listen(2048)
    log.info("listening on %s:%d", host, port)
    return sock
