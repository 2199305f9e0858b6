"""A simulated medical insurance platform for the e-voucher tests (issue 14): a real HTTP server
on 127.0.0.1 (the standard library's, in a thread) whose ``behave`` answers each ``ec.query``."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

EVOUCHER = "4243754826492874240001130000"  # docs/card-reference.md §9.1
PERSON = {
    "idNo": "110101198503071235",
    "idType": "01",
    "userName": "张三",
    "gender": "1",
    "birthday": "1985-03-07",
    "insuOrg": "110100",
    "ecToken": "410100ec1234567890abcdef",
    "ecIndexNo": "idx-0001",
}


def answer(code: object = 0, message: str = "成功", data: object = None) -> bytes:
    """The platform's answer: ``data`` as JSON text inside the JSON (docs/card-reference.md §7)."""
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = json.dumps(data, ensure_ascii=False) if isinstance(data, dict) else data
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


@dataclass
class Platform:
    """A simulated platform: ``behave(handler, body)`` answers each request; requests are kept."""

    behave: Callable[[http.server.BaseHTTPRequestHandler, bytes], None]
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


def serve(platform: Platform, context: ssl.SSLContext | None = None) -> Iterator[Platform]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            platform.requests.append((dict(self.headers.items()), body))
            platform.behave(self, body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that timed out and closed: expected here, not worth a traceback

    server = Server(("127.0.0.1", 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "https" if context is not None else "http"
    platform.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/ec/query"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield platform
    finally:
        server.shutdown()
        server.server_close()


def send(handler: http.server.BaseHTTPRequestHandler, body: bytes, status: int = 200) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
