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
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from sscard import __version__
from sscard.config import Config
from sscard.errors import SscardError, UsageError
from sscard.events import Event, Monitor
from sscard.session import SessionEvent
from sscard.ssc.pin import Pin
from sscard.terminal import Terminal

log = logging.getLogger("sscard.service")

DEFAULT_PORT = 8765
MAX_BODY = 64 * 1024
PIN_FIELDS = frozenset({"pin", "old_pin", "new_pin", "old", "new"})


# -- errors as JSON ------------------------------------------------------------------------------


class ServiceError(SscardError):
    """Errors of the service itself (not of the card): refused origin, busy, too large, bad request."""

    code = "SERVICE_ERROR"
    status = 400


class OriginRefused(ServiceError):
    code = "ORIGIN_REFUSED"
    message_en = "Requests from this web page are not allowed."
    message_zh_text = "不允许来自该网页的请求。"
    status = 403


class Unauthorized(ServiceError):
    code = "UNAUTHORIZED"
    message_en = "A valid bearer token is required."
    message_zh_text = "需要有效的访问令牌。"
    status = 401


class ServiceBusy(ServiceError):
    code = "SERVICE_BUSY"
    message_en = "The card reader is busy with another request. Please try again."
    message_zh_text = "读卡器正忙，请稍后重试。"
    status = 503
    retriable = True


class RequestTooLarge(ServiceError):
    code = "REQUEST_TOO_LARGE"
    message_en = "The request is too large."
    message_zh_text = "请求数据过大。"
    status = 413


class BadRequest(ServiceError):
    code = "BAD_REQUEST"
    message_en = "The request is not valid: {problem}."
    message_zh_text = "请求无效：{problem}。"
    status = 400

    def __init__(self, problem: str) -> None:
        super().__init__(None, problem=problem)


#: HTTP status per sscard error code; anything unlisted is 409 (the card said no) or 500.
HTTP_STATUS: dict[str, int] = {
    "NO_SERVICE": 503,
    "NO_READER": 503,
    "NO_CARD": 409,
    "CARD_REMOVED": 409,
    "TIMEOUT": 504,
    "USAGE_ERROR": 400,
    "CONFIG_ERROR": 500,
    "NOT_SIGNED_IN": 409,
    "SESSION_ACTIVE": 409,
    "PIN_FORMAT": 400,
    "TRANSPORT_ERROR": 503,
}


#: Answers carry personal data: no browser or proxy cache may keep them.
NO_STORE = {"Cache-Control": "no-store"}


def error_response(exc: SscardError) -> JSONResponse:
    status = exc.status if isinstance(exc, ServiceError) else HTTP_STATUS.get(exc.code, 409)
    return JSONResponse({"error": exc.to_dict()}, status_code=status, headers=NO_STORE)


# -- the event hub -------------------------------------------------------------------------------


class Hub:
    """Fans events out to every WebSocket subscriber; safe to call from any thread."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queues: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, payload: dict[str, Any]) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._fan_out, payload)

    def _fan_out(self, payload: dict[str, Any]) -> None:
        for queue in list(self.queues):
            if queue.qsize() < 1000:  # a stuck subscriber loses events rather than our memory
                queue.put_nowait(payload)

    @contextlib.contextmanager
    def subscribe(self) -> Any:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.queues.add(queue)
        try:
            yield queue
        finally:
            self.queues.discard(queue)


# -- the service ---------------------------------------------------------------------------------


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

    async def run(self, operation: Callable[[], Any]) -> Any:
        """One card operation at a time; the blocking call runs on a worker thread."""
        try:
            await asyncio.wait_for(self.lock.acquire(), timeout=self.queue_timeout)
        except asyncio.TimeoutError:
            raise ServiceBusy(f"waited {self.queue_timeout:g} s for the reader") from None
        try:
            return await anyio.to_thread.run_sync(operation)
        finally:
            self.lock.release()

    def start_events(self) -> None:
        self.hub.loop = asyncio.get_running_loop()
        self.terminal.sessions.subscribe(self._on_session)
        source = getattr(self.terminal.reader, "event_source", None)
        if callable(source):
            pattern = None if self.config.reader and self.config.reader.startswith("sim:") else self.config.reader
            self.monitor = Monitor(pattern, source=source)
            self.monitor.start(self._on_event)
        if self.config.qr_port:
            from sscard.credentials import follow_scanner, qr_config

            threading.Thread(
                target=follow_scanner,
                args=(self.config.qr_port, qr_config(self.config), self.scanner_stop, self._on_event),
                name="sscard-service-scan",
                daemon=True,
            ).start()

    def stop_events(self) -> None:
        self.scanner_stop.set()
        if self.monitor is not None:
            self.monitor.stop()
        self.terminal.close()

    def _on_event(self, event: Event) -> None:
        self.hub.publish(event.to_json())

    def _on_session(self, event: SessionEvent) -> None:
        payload = event.to_json()
        payload["method"] = event.session.method.value
        self.hub.publish(payload)


# -- security middleware -------------------------------------------------------------------------


class Guard:
    """Origin allow-list, bearer token and body size for HTTP and WebSocket alike."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        problem = self._check(scope, headers)
        if problem is not None:
            log.warning("refused %s %s: %s", scope["type"], scope.get("path"), problem.code)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4403, "reason": problem.code})
                return
            await error_response(problem)(scope, receive, send)
            return
        if scope["type"] == "http":
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > MAX_BODY:
                await error_response(RequestTooLarge(f"{length} bytes"))(scope, receive, send)
                return
            receive = _limited(receive)
        await self.app(scope, receive, send)

    def _check(self, scope: Scope, headers: dict[str, str]) -> ServiceError | None:
        host = headers.get("host", "")
        if self.service.allowed_hosts and host not in self.service.allowed_hosts:
            # DNS rebinding: a page whose name now resolves to 127.0.0.1 is same-origin to the
            # browser and sends no Origin; only the Host header gives it away.
            return OriginRefused(f"host {host!r}")
        origin = headers.get("origin")
        if origin is not None and origin not in self.service.allowed_origins:
            return OriginRefused(f"origin {origin!r}")
        site = headers.get("sec-fetch-site")
        if origin is None and site not in (None, "same-origin", "none"):
            # <img src="http://127.0.0.1:8765/v1/photo"> on another site sends no Origin, but
            # browsers do say where the request comes from.
            return OriginRefused(f"Sec-Fetch-Site {site!r}")
        token = self.service.token
        if token and origin is None and scope.get("path") not in ("/", "/v1/openapi.json"):
            # Browser pages are vouched for by their Origin; other clients by the bearer token.
            import hmac

            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return Unauthorized()
        return None


def _limited(receive: Receive) -> Receive:
    """Refuse bodies past MAX_BODY even without (or with a lying) Content-Length."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise _TooLarge
        return message

    return wrapped


class _TooLarge(Exception):
    pass


# -- routes --------------------------------------------------------------------------------------


async def _body(request: Request) -> dict[str, Any]:
    try:
        raw = await request.body()
    except _TooLarge:
        raise RequestTooLarge() from None
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _text(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string")
    return value


Handler = Callable[[Request], Awaitable[Response]]


def endpoint(handler: Callable[[Request, Service], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    """JSON in, JSON out, every SscardError as the stable JSON error form."""

    async def route(request: Request) -> Response:
        service: Service = request.app.state.service
        try:
            result = await handler(request, service)
        except SscardError as exc:
            return error_response(exc)
        if isinstance(result, Response):
            return result
        return JSONResponse(result, headers=NO_STORE)

    return route


@endpoint
async def status(request: Request, service: Service) -> Any:
    session = service.terminal.session
    return {
        "service": "sscard",
        "version": __version__,
        "reader": service.terminal.reader.name,
        "card_present": await anyio.to_thread.run_sync(_card_present, service.terminal),
        "session": session.to_json() if session else None,
    }


def _card_present(terminal: Terminal) -> bool | None:
    try:
        return terminal.reader.card_present()
    except SscardError:
        return None


@endpoint
async def readers(request: Request, service: Service) -> Any:
    from sscard.readers import reader_rows

    reader = service.terminal.reader
    if reader.name.startswith(("sim:", "replay:")):  # not a PC/SC reader: describe the one there is
        present = await anyio.to_thread.run_sync(_card_present, service.terminal)
        return {"readers": [{"name": reader.name, "card_present": present, "kind": "contact", "preference": 1}]}
    return {"readers": await anyio.to_thread.run_sync(reader_rows, service.config)}


@endpoint
async def read(request: Request, service: Service) -> Any:
    body = await _body(request)
    allow_partial = bool(body.get("allow_partial", False))
    card = await service.run(lambda: service.terminal.read(require_cardholder=not allow_partial))
    return card.to_json()


@endpoint
async def photo(request: Request, service: Service) -> Any:
    data = await service.run(service.terminal.read_photo)
    if request.query_params.get("format") == "json":
        return {"photo_base64": base64.b64encode(data).decode("ascii"), "bytes": len(data)}
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@endpoint
async def verify(request: Request, service: Service) -> Any:
    body = await _body(request)
    pin = Pin.from_text(_text(body, "pin") or "")  # one buffer, wiped by the terminal (issue 11)
    # Not wiped here: a cancelled request must not zero a PIN the worker thread may be packing.
    outcome = await service.run(lambda: service.terminal.verify(pin))
    return outcome.to_dict()


@endpoint
async def pin_status(request: Request, service: Service) -> Any:
    return (await service.run(service.terminal.pin_status)).to_dict()


@endpoint
async def sign_in(request: Request, service: Service) -> Any:
    body = await _body(request)
    text = _text(body, "pin", required=False)
    pin = None if text is None else Pin.from_text(text)  # one buffer, wiped by the terminal (issue 11)
    session = await service.run(lambda: service.terminal.sign_in(pin))
    return {"session": session.to_json()}


@endpoint
async def sign_out(request: Request, service: Service) -> Any:
    session = await service.run(service.terminal.sign_out)
    return {"session": session.to_json()}


@endpoint
async def current_session(request: Request, service: Service) -> Any:
    session = service.terminal.session
    return {"session": session.to_json() if session else None}


@endpoint
async def token_verify(request: Request, service: Service) -> Any:
    from sscard.tokens import key_ring, load_public_key, verify_token

    body = await _body(request)
    token = _text(body, "token") or ""
    path = service.config.token_public_key
    if not path:
        raise UsageError("this service has no [session] public_key to verify with", "服务未配置验证公钥")
    key = load_public_key(path)
    claims = verify_token(token, key_ring([key]), terminal_id=_text(body, "terminal_id", required=False))
    return {"session": claims.to_payload()}


async def openapi(request: Request) -> Response:
    from sscard.service.openapi import document

    return JSONResponse(document())


async def index(request: Request) -> Response:
    page = resources.files("sscard.service").joinpath("static").joinpath("index.html")
    html = page.read_text(encoding="utf-8") if page.is_file() else "<!doctype html><title>sscard</title>"
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


# -- WebSockets ----------------------------------------------------------------------------------


async def events(websocket: WebSocket) -> None:
    """Every card, reader, service, scan and session event as one JSON message."""
    service: Service = websocket.app.state.service
    await websocket.accept()
    with service.hub.subscribe() as queue:
        session = service.terminal.session
        await websocket.send_json(
            {"event": "hello", "version": __version__, "session": session.to_json() if session else None}
        )
        receiver = asyncio.create_task(_drain(websocket))
        try:
            while not receiver.done():
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    await websocket.send_json(getter.result())
                else:
                    getter.cancel()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            receiver.cancel()


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) client messages so a close is noticed."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive_text()


async def compat(websocket: WebSocket) -> None:
    """The vendor-bridge WebSocket: ``{"function": "iReadCardBas", "iType": 3}`` → national codes."""
    from sscard.service.compat import call

    service: Service = websocket.app.state.service
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            if len(text) > MAX_BODY:
                await websocket.send_json({"code": -13, "output": "", "message": "request too large"})
                continue
            await websocket.send_json(await call(service, text))
    except WebSocketDisconnect:
        return


# -- the application -----------------------------------------------------------------------------


def create_app(
    config: Config,
    terminal: Terminal | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    allowed_origins: list[str] | None = None,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
) -> Starlette:
    """The ASGI app; ``terminal`` defaults to ``Terminal.open(config=config)``."""
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
            yield
        finally:
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
    )
    app.state.service = service
    return app


def serve(config: Config, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Run the service until SIGINT/SIGTERM (uvicorn handles both)."""
    import uvicorn

    app = create_app(config, host=host, port=port)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, ws="auto", ws_max_size=MAX_BODY)
