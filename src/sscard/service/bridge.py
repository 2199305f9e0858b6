"""The vendor-bridge listener: a profile's messages answered on the port the pages expect.

``sscard serve --bridge ssc-ws`` (``[bridge] profile``) listens on a second port of the same
server, 12342 for that profile, and answers ``{"function":"iReadCardBas","iType":3}`` with
``{"success": 0, "pOutInfo": "…|"}`` — whatever the profile (:mod:`.bridge_profiles`) says.  The
operations are the ones ``/v1/compat`` and the native socket run, each through
:meth:`Service.run <sscard.service.state.Service.run>` (one card operation at a time, for every
client); the second port has the same Origin allow-list, token rules, connection limits and JSON
errors as the first, and its own Host names (:class:`BridgePolicy`), so a page on another site
cannot read the card through it any more than through ``/v1/read`` (docs/service.md, "Vendor
bridge profiles").

PINs (the ``pin``, ``old`` and ``new`` arguments) are read from the message, handed to the
terminal as a :class:`~sscard.ssc.pin.Pin`, and never logged or echoed.  A PIN call whose
message carries none (``{"function": "iVerifyPIN", "iType": 3}``, the DLL's call) asks the
configured PIN source (``[service] pin_source``: the page's PIN pad through ``pin_requested`` and
``POST /v1/pin-entry``, or the reader's), as the native socket does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from sscard.errors import SscardError
from sscard.native_socket.protocol import national_code
from sscard.service.bodies import MAX_BODY
from sscard.service.bridge_profiles import Profile, render
from sscard.service.logs import RefusalLog
from sscard.service.problems import NO_STORE

if TYPE_CHECKING:
    from sscard.idcard import IdCardRecord
    from sscard.service.state import Service

log = logging.getLogger("sscard.service")

#: The national "not supported" code, for a message that names no call of the profile.
NOT_SUPPORTED = -13


@dataclass(frozen=True)
class BridgePolicy:
    """The guard's policy on the bridge port: the service's origins, token and refusal log, the
    bridge port's own Host names (a page must say it called *that* port)."""

    service: Service
    allowed_hosts: frozenset[str]

    @property
    def token(self) -> str | None:
        return self.service.token

    @property
    def allowed_origins(self) -> frozenset[str]:
        return self.service.allowed_origins

    @property
    def refusals(self) -> RefusalLog:
        return self.service.refusals


class ByPort:
    """Hands connections that arrived on the bridge port to the bridge's app (ASGI middleware)."""

    def __init__(self, app: ASGIApp, bridge: ASGIApp, port: int) -> None:
        self.app, self.bridge, self.port = app, bridge, port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") or (None, None)
        if scope["type"] in ("http", "websocket") and server[1] == self.port:
            await self.bridge(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class Bridge:
    """The interpreter: a message in, the profile's answer out."""

    def __init__(self, profile: Profile, service: Service) -> None:
        self.profile, self.service = profile, service

    async def answer_text(self, text: str | None) -> Any:
        if text is None:
            return self._fallback(None, "no message", "没有请求消息")
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, a number past int()'s digit limit, too deep
            return self._fallback(None, "not JSON", "请求不是JSON")
        return await self.answer(message)

    async def answer(self, message: Any) -> Any:
        if not isinstance(message, dict):
            return self._fallback(None, "not a JSON object", "请求不是JSON对象")
        selector = message.get(self.profile.select)
        name = str(selector)[:64] if isinstance(selector, str | int) and not isinstance(selector, bool) else None
        call = self.profile.calls.get(name) if name is not None else None
        if call is None:
            return self._fallback(message, f"not supported by this bridge: {name}", f"本接口不支持此功能：{name}")
        # The arguments the message carries (strings only); a PIN call without one asks the PIN device.
        args = {arg: message[field] for arg, field in call.args.items() if isinstance(message.get(field), str)}
        values = await self._run(call.operation, args)
        values["call"] = name
        log.info("bridge %s %s → %s", self.profile.name, call.operation, values["code"])
        return render(call.answer, values, message)

    def _fallback(self, message: dict[str, Any] | None, en: str, zh: str) -> Any:
        values = {"code": NOT_SUPPORTED, "output": zh, "message": zh, "error": "NOT_SUPPORTED", "call": None}
        log.info("bridge %s: %s", self.profile.name, en)
        return render(self.profile.fallback, values, message or {})

    async def _run(self, operation: str, args: dict[str, str]) -> dict[str, Any]:
        """One card operation through the service; the answer's values (bridge_profiles.OPERATIONS)."""
        values: dict[str, Any] = {}
        try:
            output = await self.service.run(self._operation(operation, args, values))
        except SscardError as exc:
            code = self.profile.codes.get(exc.code, national_code(exc))
            values.update(code=code, output=exc.message_zh, message=exc.message_zh, error=exc.code)
            if operation == "read_idcard":
                values.update(dict.fromkeys(_IDCARD_KEYS, ""))
            return values
        values.update(code=0, output=output, message="", error="")
        return values

    def _operation(self, operation: str, args: dict[str, str], values: dict[str, Any]) -> Callable[[], str]:
        """The blocking call for a worker thread; it may add values (tries left, the ID card's fields)."""
        from sscard.national import ireadcardbas

        terminal, config = self.service.terminal, self.service.config
        if operation == "iReadCardBas":  # the SSC's call, as the native socket and /v1/compat read it
            return lambda: ireadcardbas(terminal.read("ssc"), config.terminal_id, config.device_id)
        if operation == "iReadCardBas_HSM_Step1":
            return lambda: terminal.hsm_step1().line()
        if operation == "iReadCardBas_HSM_Step2":
            return lambda: ireadcardbas(
                terminal.hsm_step2(args.get("step1", ""), args.get("answer", "")), config.terminal_id, config.device_id
            )
        if operation in ("iVerifyPIN", "iChangePIN"):
            if any(name in args for name in ("pin", "old", "new")):
                return lambda: self._pin(operation, args, values)
            return lambda: self._pin_device(operation, values)
        return lambda: _idcard_line(self._read_idcard(), values)

    def _pin(self, operation: str, args: dict[str, str], values: dict[str, Any]) -> str:
        from sscard.ssc.pin import Pin

        values["tries_left"] = None
        if operation == "iVerifyPIN":
            outcome = self.service.terminal.verify(Pin.from_text(args.get("pin", "")))
        else:
            old, new = Pin.from_text(args.get("old", "")), Pin.from_text(args.get("new", ""))
            outcome = self.service.terminal.change_pin(old, new)
        values["tries_left"] = outcome.tries_left
        outcome.raise_for_error()
        return ""

    def _pin_device(self, operation: str, values: dict[str, Any]) -> str:
        """A PIN call whose message carries no PIN, as the DLL's iVerifyPIN(iType, pOutInfo): the
        configured PIN source asks once (the page's PIN pad, or the reader's), after the card is
        checked (no card −2, blocked −52 at once), as the native socket does (docs/native.md)."""
        from sscard.errors import PinBlocked
        from sscard.ssc.application import PinState

        terminal, source = self.service.terminal, self.service.pin_source()
        values["tries_left"] = None
        terminal.check_pin_allowed()
        status = terminal.pin_status()
        values["tries_left"] = status.tries_left
        if status.state is PinState.BLOCKED:
            raise PinBlocked()
        timeout = self.profile.pin_timeout
        outcome = source.verify(terminal, timeout) if operation == "iVerifyPIN" else source.change(terminal, timeout)
        values["tries_left"] = outcome.tries_left
        outcome.raise_for_error()
        return ""

    def _read_idcard(self) -> IdCardRecord:
        from sscard.credentials import claim_port
        from sscard.idcard import IdCardReader
        from sscard.transports.serial import SerialPort

        config = self.service.config
        path = config.idcard_port or ""
        with claim_port(path), SerialPort(path, config.idcard_baudrate) as port:  # the follower lets go
            return IdCardReader(port).read_card()


_IDCARD_KEYS = ("name", "gender", "nation", "birth_date", "address", "id_number", "issuer", "valid_from", "valid_to")


def _idcard_line(record: IdCardRecord, values: dict[str, Any]) -> str:
    """The card's fields into ``values``; the output string in the order integrators read
    ReadSFZ's (docs/card-reference.md §7, unconfirmed):
    姓名|性别|民族|出生日期|住址|公民身份号码|签发日期|有效期至|签发机关|."""
    valid_to = "长期" if isinstance(record.valid_to, str) else record.valid_to.strftime("%Y%m%d")
    values.update(
        name=record.name,
        gender=record.gender or record.gender_code,
        nation=record.nation or record.nation_code,
        birth_date=record.birth_date.strftime("%Y%m%d"),
        address=record.address,
        id_number=record.id_number,
        issuer=record.issuer,
        valid_from=record.valid_from.strftime("%Y%m%d"),
        valid_to=valid_to,
    )
    order = ("name", "gender", "nation", "birth_date", "address", "id_number", "valid_from", "valid_to", "issuer")
    return "".join(f"{values[key]}|" for key in order)


def routes(profile: Profile, service: Service) -> list[BaseRoute]:
    """The bridge's one route: a WebSocket or an HTTP endpoint at the profile's path."""
    bridge = Bridge(profile, service)
    if profile.transport == "http":

        async def entry(request: Request) -> Response:
            answer = await bridge.answer_text(request.query_params.get(profile.query))
            return JSONResponse(answer, headers=NO_STORE)

        return [Route(profile.path, entry, methods=["GET", "POST"])]

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None:  # as /v1/compat: the bridge protocol is JSON text
                    await websocket.close(code=1003, reason="binary frames are not accepted: send JSON text")
                    return
                if len(text) > MAX_BODY:
                    await websocket.send_json(bridge._fallback(None, "request too large", "请求过大"))
                    continue
                await websocket.send_json(await bridge.answer_text(text))
        except WebSocketDisconnect:
            return

    return [WebSocketRoute(profile.path, socket)]
