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
import ipaddress
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from sscard import __version__
from sscard.config import Config
from sscard.errors import SscardError, UsageError
from sscard.events import Event, Monitor
from sscard.service.logs import RefusalLog, clean
from sscard.session import SessionEvent
from sscard.ssc.pin import Pin
from sscard.terminal import Terminal

log = logging.getLogger("sscard.service")

DEFAULT_PORT = 8765
MAX_BODY = 64 * 1024
PIN_FIELDS = frozenset({"pin", "old_pin", "new_pin", "old", "new"})


# -- errors as JSON ------------------------------------------------------------------------------


class ServiceError(SscardError):
    """Errors of the service itself (not of the card): refused origin, busy, too large, bad request.

    Their HTTP statuses are in :data:`HTTP_STATUS` with everyone else's (one table, which the
    tests hold docs/service.md to).
    """

    code = "SERVICE_ERROR"


class OriginRefused(ServiceError):
    code = "ORIGIN_REFUSED"
    message_en = "Requests from this web page are not allowed."
    message_zh_text = "不允许来自该网页的请求。"


class Unauthorized(ServiceError):
    code = "UNAUTHORIZED"
    message_en = "A valid bearer token is required."
    message_zh_text = "需要有效的访问令牌。"


class ServiceBusy(ServiceError):
    code = "SERVICE_BUSY"
    message_en = "The card reader is busy with another request. Please try again."
    message_zh_text = "读卡器正忙，请稍后重试。"
    retriable = True


class RequestTooLarge(ServiceError):
    code = "REQUEST_TOO_LARGE"
    message_en = "The request is too large."
    message_zh_text = "请求数据过大。"


class BadRequest(ServiceError):
    """A body that is not a JSON object of the documented fields and types.

    ``problem`` (English) is in the answer's ``problem`` field and message; ``problem_zh`` is its
    Chinese counterpart, so that ``message_zh`` stays wholly Chinese.
    """

    code = "BAD_REQUEST"
    message_en = "The request is not valid: {problem}."
    message_zh_text = "请求无效。"

    def __init__(self, problem: str, problem_zh: str = "") -> None:
        super().__init__(None, problem=problem)
        self.problem_zh = problem_zh

    @property
    def message_zh(self) -> str:
        return f"请求无效：{self.problem_zh}。" if self.problem_zh else self.message_zh_text


class NotFound(ServiceError):
    code = "NOT_FOUND"
    message_en = "There is no such endpoint."
    message_zh_text = "没有这个接口。"


class MethodNotAllowed(ServiceError):
    code = "METHOD_NOT_ALLOWED"
    message_en = "This endpoint does not take this request method."
    message_zh_text = "该接口不支持此请求方法。"


class InternalError(ServiceError):
    code = "INTERNAL"
    message_en = "Internal error in the service (a bug: see the service's log)."
    message_zh_text = "服务内部错误，请查看服务日志。"


class _ClientGone(Exception):
    """The client closed the connection before its request body ended: nobody to answer."""


#: HTTP status per error code: the one table (docs/service.md's "Errors" table is checked against
#: it by tests/test_service.py).  Every code not listed is 409: the card or the session said no.
HTTP_STATUS: dict[str, int] = {
    "BAD_REQUEST": 400,
    "USAGE_ERROR": 400,
    "PIN_FORMAT": 400,
    "UNAUTHORIZED": 401,
    "ORIGIN_REFUSED": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "REQUEST_TOO_LARGE": 413,
    "INTERNAL": 500,
    "SERVICE_BUSY": 503,
    "NO_SERVICE": 503,
    "NO_READER": 503,
    "NO_CARD": 409,
    "CARD_REMOVED": 409,
    "TIMEOUT": 504,
    "CONFIG_ERROR": 500,
    "TRANSPORT_ERROR": 503,
}
#: The status of every code :data:`HTTP_STATUS` does not list.
DEFAULT_STATUS = 409


def http_status(code: str) -> int:
    """The HTTP status an error with this code is answered with."""
    return HTTP_STATUS.get(code, DEFAULT_STATUS)


#: Answers carry personal data: no browser or proxy cache may keep them.
NO_STORE = {"Cache-Control": "no-store"}


def error_response(exc: SscardError) -> JSONResponse:
    return JSONResponse({"error": exc.to_dict()}, status_code=http_status(exc.code), headers=NO_STORE)


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
    #: Every refusal (Origin, Host, token, size, busy, connection limits) is logged through this.
    refusals: RefusalLog = field(default_factory=lambda: RefusalLog(log))

    async def run(self, operation: Callable[[], Any]) -> Any:
        """One card operation at a time; the blocking call runs on a worker thread."""
        try:
            await asyncio.wait_for(self.lock.acquire(), timeout=self.queue_timeout)
        except asyncio.TimeoutError:
            self.refusals.refused("busy", f"a request waited {self.queue_timeout:g} s for the reader")
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
        refusal = self._check(scope, headers)
        if refusal is not None:
            reason, problem = refusal
            self._log_refusal(scope, reason, problem)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4403, "reason": problem.code})
                return
            await error_response(problem)(scope, receive, send)
            return
        if scope["type"] == "http":
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > MAX_BODY:
                problem = RequestTooLarge(f"{length[:12]} bytes")
                self._log_refusal(scope, "size", problem)
                await error_response(problem)(scope, receive, send)
                return
            receive = _limited(receive)
        await self.app(scope, receive, send)

    def _log_refusal(self, scope: Scope, reason: str, problem: ServiceError) -> None:
        client = scope.get("client")
        where = clean(client[0]) if client else "?"
        path, detail = clean(scope.get("path", "")), clean(problem.detail or "")
        self.service.refusals.refused(reason, f"{scope['type']} {path} from {where}: {problem.code} {detail}")

    def _check(self, scope: Scope, headers: dict[str, str]) -> tuple[str, ServiceError] | None:
        """The reason and the error a request is refused with, or None to let it through.

        A client that is not on a loopback address (the service was started with
        ``--allow-remote``) is admitted by the bearer token alone: what it says in ``Host`` and
        ``Origin`` is its own choice, so neither can vouch for it.  Loopback clients are checked
        for DNS rebinding (Host), foreign pages (Origin, Sec-Fetch-Site) and, without an Origin,
        the token when one is configured.
        """
        token = self.service.token
        origin = headers.get("origin")
        if not client_is_loopback(scope):
            if not token:
                # create_app/serve refuse --allow-remote without a token; this holds even if the
                # service is embedded some other way.
                return "remote", Unauthorized("a client not on loopback, and no [service] token configured")
            if not _token_matches(headers, token):
                return "token", Unauthorized("a client not on loopback without the bearer token")
            if origin is not None and origin not in self.service.allowed_origins:
                return "origin", OriginRefused(f"origin {clean(origin)!r}")
            return None
        host = headers.get("host", "")
        if self.service.allowed_hosts and host not in self.service.allowed_hosts:
            # DNS rebinding: a page whose name now resolves to 127.0.0.1 is same-origin to the
            # browser and sends no Origin; only the Host header gives it away.
            return "host", OriginRefused(f"host {clean(host)!r}")
        if origin is not None and origin not in self.service.allowed_origins:
            return "origin", OriginRefused(f"origin {clean(origin)!r}")
        site = headers.get("sec-fetch-site")
        if origin is None and site not in (None, "same-origin", "none"):
            # <img src="http://127.0.0.1:8765/v1/photo"> on another site sends no Origin, but
            # browsers do say where the request comes from.
            return "sec-fetch-site", OriginRefused(f"Sec-Fetch-Site {clean(site)!r}")
        open_path = scope.get("path") in ("/", "/v1/openapi.json")
        if token and origin is None and not open_path and not _token_matches(headers, token):
            # Browser pages are vouched for by their Origin; other clients by the bearer token.
            return "token", Unauthorized()
        return None


def client_is_loopback(scope: Scope) -> bool:
    """Whether the ASGI client address is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x).

    No address (a Unix socket, an embedding that does not say) or one that is not an IP address
    counts as not loopback: when in doubt, the token is required.
    """
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(str(client[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _token_matches(headers: dict[str, str], token: str) -> bool:
    import hmac

    given = headers.get("authorization", "")
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), f"Bearer {token}".encode())


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


#: The fields each endpoint's body may have, with their JSON types (also the OpenAPI schemas).
FIELDS: dict[str, dict[str, type]] = {
    "/v1/read": {"allow_partial": bool},
    "/v1/verify": {"pin": str},
    "/v1/sign-in": {"pin": str},
    "/v1/token/verify": {"token": str, "terminal_id": str},
}


async def _body(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object of the endpoint's :data:`FIELDS`, each of its type.

    Everything a client can get wrong is a :class:`BadRequest` (400) in the JSON error form, never
    a 500: bytes that are not UTF-8, JSON nested past the recursion limit, a number past Python's
    4300-digit conversion limit, ``NaN``, duplicate keys, unknown fields, wrong types (so that
    ``"allow_partial": "false"`` is refused instead of being true).
    """
    try:
        raw = await request.body()
    except _TooLarge:
        raise RequestTooLarge() from None
    except ClientDisconnect:
        raise _ClientGone from None
    if not raw:
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text", "请求内容不是UTF-8编码的文本") from None
    try:
        data = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise BadRequest("the JSON is nested too deeply", "JSON嵌套层数过多") from None
    except _DuplicateKey as exc:
        raise BadRequest(f"the field {clean(exc.args[0], 40)!r} appears twice", "同一字段出现了两次") from None
    except ValueError:  # json.JSONDecodeError, or a number too long for int() (max_str_digits)
        raise BadRequest("the body is not valid JSON", "请求内容不是有效的JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", "请求内容必须是JSON对象")
    fields = FIELDS.get(request.url.path, {})
    for key, value in data.items():
        kind = fields.get(key)
        if kind is None:
            raise BadRequest(f"unknown field {clean(key, 40)!r}", "请求中有未知字段")
        if value is None:
            continue
        if type(value) is not kind:  # not isinstance: a bool is an int, and 0/1 are no booleans
            name = "true or false" if kind is bool else "a string"
            raise BadRequest(f"'{key}' must be {name}", "字段类型错误")
        if isinstance(value, str) and not _encodable(value):
            raise BadRequest(f"'{key}' is not valid text", "字段内容不是有效的文本")
    return data


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _encodable(value: str) -> bool:
    """False for strings with lone surrogates (a JSON ``"\\ud800"`` escape)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string", "字段类型错误")
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
        except _ClientGone:
            # Nobody is left to answer (uvicorn drops what is sent); one line, no traceback.
            service.refusals.refused("aborted", f"{clean(request.url.path)}: the client left before its body ended")
            return Response(status_code=400)
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
    allow_partial = body.get("allow_partial") is True
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
    """Read (and ignore) client messages, text or binary, so a close is noticed."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass


async def compat(websocket: WebSocket) -> None:
    """The vendor-bridge WebSocket: ``{"function": "iReadCardBas", "iType": 3}`` → national codes."""
    from sscard.service.compat import call

    service: Service = websocket.app.state.service
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                # The bridge protocol is JSON text; say so with a close frame (1003: unsupported
                # data) rather than dropping the socket.
                await websocket.close(code=1003, reason="binary frames are not accepted: send JSON text")
                return
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


def check_remote(host: str, allow_remote: bool, token: str | None) -> None:
    """Refuse to listen beyond loopback unless asked to and a token is configured (docs/service.md)."""
    if _is_loopback_name(host):
        return
    if not allow_remote:
        raise UsageError(
            "the service binds to 127.0.0.1; add --allow-remote to listen on another address (mind the Origin list)",
            "服务默认只监听本机地址；如需监听其他地址请加--allow-remote",
        )
    if not token:
        raise UsageError(
            "--allow-remote needs [service] token (or SSCARD_SERVICE_TOKEN): clients on other machines "
            "are admitted by the bearer token alone",
            "监听非本机地址时必须在配置中设置访问令牌（[service] token 或 SSCARD_SERVICE_TOKEN）",
        )


def _is_loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(config: Config, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, allow_remote: bool = False) -> None:
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
    app = create_app(config, host=host, port=port)
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
