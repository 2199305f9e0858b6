"""The routes: each endpoint's handler, the event stream and the vendor-bridge WebSocket (docs/service.md).

JSON in, JSON out: a handler takes the request and the :class:`~sscard.service.state.Service`
and returns a JSON value; :func:`endpoint` turns every SscardError into the stable JSON error form.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from sscard import __version__
from sscard.errors import SessionActive, SscardError, UsageError
from sscard.service.bodies import MAX_BODY, body_of, seconds_field, text_field
from sscard.service.logs import clean
from sscard.service.problems import NO_STORE, ClientGone, PinRequestNotFound, error_response
from sscard.service.state import Service
from sscard.ssc.pin import Pin
from sscard.terminal import Terminal

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("sscard.service")


def endpoint(handler: Callable[[Request, Service], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    """JSON in, JSON out, every SscardError as the stable JSON error form."""

    async def route(request: Request) -> Response:
        service: Service = request.app.state.service
        try:
            result = await handler(request, service)
        except SscardError as exc:
            # One line per failed request (-v), its stable code in the JSON log's "code"; never a body.
            log.info("%s %s: %s", request.method, clean(request.url.path), exc.code, extra={"code": exc.code})
            return error_response(exc)
        except ClientGone:
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
    body = await body_of(request)
    allow_partial = body.get("allow_partial") is True
    app = body.get("app")  # one of the registry's names (bodies.FIELDS); None: whichever the card carries
    card = await service.run(lambda: service.terminal.read(app=app, require_cardholder=not allow_partial))
    return card.to_json()


@endpoint
async def photo(request: Request, service: Service) -> Any:
    data = await service.run(service.terminal.read_photo)
    if request.query_params.get("format") == "json":
        return {"photo_base64": base64.b64encode(data).decode("ascii"), "bytes": len(data)}
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@endpoint
async def verify(request: Request, service: Service) -> Any:
    body = await body_of(request)
    pin = Pin.from_text(text_field(body, "pin") or "")  # one buffer, wiped by the terminal (issue 11)
    # Not wiped here: a cancelled request must not zero a PIN the worker thread may be packing.
    outcome = await service.run(lambda: service.terminal.verify(pin))
    return outcome.to_dict()


@endpoint
async def pin_status(request: Request, service: Service) -> Any:
    return (await service.run(service.terminal.pin_status)).to_dict()


#: How long a sign-in waits for a credential by default, and at most (seconds).
SIGN_IN_WAIT, SIGN_IN_WAIT_MAX = 30.0, 300.0
#: Sign-in waits at once (each holds a worker thread): beyond these they queue, card calls do not.
_WAITS = anyio.CapacityLimiter(8)


@endpoint
async def sign_in(request: Request, service: Service) -> Any:
    """``method``: ``card`` (default: the card in the reader now, with ``pin``), ``qr`` (the
    electronic SSC), ``evoucher`` (the medical e-voucher), ``idcard`` or ``any`` — the credential
    the service's own devices saw (sscard.offers), waiting up to ``timeout`` s for one."""
    body = await body_of(request)
    method = body.get("method") or "card"
    timeout = seconds_field(body, "timeout", SIGN_IN_WAIT, SIGN_IN_WAIT_MAX)
    text = text_field(body, "pin", required=False)
    pin = None if text is None else Pin.from_text(text)  # one buffer, wiped by the terminal (issue 11)
    terminal = service.terminal
    if method == "card":
        session = await service.run(lambda: terminal.sign_in(pin))
        service.inbox.withdraw("card")
        return {"session": session.to_json()}
    available = service.sources()
    methods = available if method == "any" else (method,)
    try:
        if method not in (*available, "any"):
            raise UsageError(
                f"this service has no device for sign-in method {method!r} ([qr] / [idcard] port)",
                "本服务未配置该登录方式所需的设备",
            )
        if terminal.session is not None:
            raise SessionActive(f"session {terminal.session.id} is active")
        offer = await anyio.to_thread.run_sync(
            lambda: service.inbox.take(methods, timeout), abandon_on_cancel=True, limiter=_WAITS
        )
    except BaseException:
        if pin is not None:
            pin.wipe()  # never handed to the terminal
        raise
    credential = offer.credential
    if credential is None:  # the card: read, authenticate and verify now
        session = await service.run(lambda: terminal.sign_in(pin))
    else:
        session = await service.run(lambda: terminal.sign_in_with(credential, pin))
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

    body = await body_of(request)
    token = text_field(body, "token") or ""
    path = service.config.token_public_key
    if not path:
        raise UsageError("this service has no [session] public_key to verify with", "服务未配置验证公钥")
    key = load_public_key(path)
    claims = verify_token(token, key_ring([key]), terminal_id=text_field(body, "terminal_id", required=False))
    return {"session": claims.to_payload()}


#: ``POST /v1/medical/credential``: how long it waits for a credential by default, and at most.
MEDICAL_TIMEOUT_S, MEDICAL_TIMEOUT_MAX_S = 30.0, 300.0


@endpoint
async def medical_credential(request: Request, service: Service) -> Any:
    """Wait for an SSC, ID card or e-voucher QR code (first wins) and answer the medical insurance
    platform's person-query fields (docs/medical.md).

    One card operation: it holds the reader for the whole wait, so other requests queue (and may
    get SERVICE_BUSY after ``queue_timeout``).  The service's scanner follower yields the port to
    the wait (:mod:`sscard.credentials`); the wait's scans reach ``/v1/events`` as its would.  ``pin``
    is used only when ``[medical] card_passtype`` is ``"1"`` and an SSC is presented, verified once,
    and wiped on the worker thread once the wait is over, whatever was presented.
    """
    from sscard.medical import medical_credential as wait_for_medical
    from sscard.medical import pin_verifier, resolver_from_config

    body = await body_of(request)
    timeout = seconds_field(body, "timeout", MEDICAL_TIMEOUT_S, MEDICAL_TIMEOUT_MAX_S)
    text = text_field(body, "pin", required=False)
    pin = None if text is None else Pin.from_text(text)  # one buffer, wiped on the worker thread
    config = service.config
    resolver = resolver_from_config(config)  # a bad ec_url is CONFIG_ERROR before the wait
    verify: Callable[[Terminal], None] | None = None
    if config.medical_card_passtype == "1":
        verify = pin_verifier(pin) if pin is not None else _pin_required

    def operation() -> Any:
        try:
            return wait_for_medical(
                service.terminal, timeout, resolver=resolver, verify_pin=verify, on_event=service.publish_event
            )
        finally:
            if pin is not None:
                pin.wipe()  # an ID card or a QR code came, or the wait failed: the PIN is not needed

    found = await service.run(operation)
    return found.to_json()


def _pin_required(terminal: Terminal) -> None:
    raise UsageError(
        "[medical] card_passtype is 1: give the SSC's PIN as 'pin' in the body",
        "本窗口需要校验社会保障卡密码，请在请求中提供密码",
    )


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
            {
                "event": "hello",
                "version": __version__,
                "session": session.to_json() if session else None,
                # The kiosk page's settings ([kiosk]) and the sign-in methods it may offer.
                "kiosk": {"idle_timeout": service.config.kiosk_idle, "methods": list(service.sources())},
            }
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


@endpoint
async def pin_entry(request: Request, service: Service) -> Any:
    """The answer to a ``pin_requested`` event (a national-interface iVerifyPIN/iChangePIN waiting).

    ``{"request", "pin"}`` (verify), ``{"request", "old", "new"}`` (change) or ``{"request",
    "cancel": true}``: 204 once delivered, 404 for a request that is not waiting.  The PIN goes to
    the waiting call as a :class:`~sscard.ssc.pin.Pin` (one buffer, wiped after the card answered);
    it is never logged or echoed.  A PIN of the wrong form is delivered too: the caller gets −33.
    """
    body = await body_of(request)
    ident = text_field(body, "request") or ""
    source = service.pin_page
    pins = {name: _entered(body, name) for name in ("pin", "old", "new")}
    if source is None or not source.answer(ident, cancel=body.get("cancel") is True, **pins):
        for pin in pins.values():
            if pin is not None:
                pin.wipe()
        raise PinRequestNotFound()
    return Response(status_code=204, headers=NO_STORE)


def _entered(body: dict[str, Any], name: str) -> Pin | None:
    text = body.get(name)
    if not isinstance(text, str):
        return None
    try:
        return Pin.from_text(text)
    except SscardError:  # not ASCII: an empty PIN, which the waiting call refuses as PIN_FORMAT (−33)
        return Pin(bytearray())
