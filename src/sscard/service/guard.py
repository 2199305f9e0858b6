"""The Origin/Host/token guard and the body-size limit, for HTTP and WebSocket alike (docs/service.md).

The guard reads the policy it enforces through :class:`GuardPolicy` (the service's allowed
origins and hosts, its token, its refusal log), so it needs nothing of the routes or the wiring.
"""

from __future__ import annotations

import ipaddress
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from sscard.errors import UsageError
from sscard.service.bodies import MAX_BODY, limited
from sscard.service.logs import RefusalLog, clean
from sscard.service.problems import OriginRefused, RequestTooLarge, ServiceError, Unauthorized, error_response


class GuardPolicy(Protocol):
    """What the guard checks a request against (:class:`sscard.service.state.Service` is one)."""

    @property
    def token(self) -> str | None: ...
    @property
    def allowed_origins(self) -> frozenset[str]: ...
    @property
    def allowed_hosts(self) -> frozenset[str]: ...
    @property
    def refusals(self) -> RefusalLog: ...


#: Paths a loopback client without an Origin may call without the token (the page, the API description).
OPEN_PATHS = frozenset({"/", "/v1/openapi.json"})


class Guard:
    """Origin allow-list, bearer token and body size for HTTP and WebSocket alike.

    ``open_paths``: :data:`OPEN_PATHS` on the service's port; none on a vendor bridge's, whose
    ``/`` is the bridge itself (docs/service.md, "Vendor bridge profiles").
    """

    def __init__(self, app: ASGIApp, service: GuardPolicy, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.service = service
        self.open_paths = open_paths

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
            receive = limited(receive)
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
        open_path = scope.get("path") in self.open_paths
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
            "监听非本机地址时必须设置访问令牌（配置[service]中的'token'，或环境变量SSCARD_SERVICE_TOKEN）",
        )


def _is_loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
