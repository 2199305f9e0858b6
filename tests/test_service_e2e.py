"""The service through real pcscd + vpcd (issue 6): the read contract over HTTP, events over the
WebSocket, and surviving a pcscd restart without restarting the service."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import pcsc_env
from support.serve import free_port, running_service


def _post(port: int, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def service(vpcd_reader: str, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    with running_service(["--reader", vpcd_reader], port, tmp_path) as process:
        yield port, process


@pytest.mark.pcscd
def test_read_over_http_and_survive_a_pcscd_restart(
    pcscd: pcsc_env.Pcscd, vpcd_card: pcsc_env.InsertCard, service: tuple[int, Any], tmp_path: Path
) -> None:
    import websockets

    port, process = service
    vpcd_card("typical", reconnect=True)
    status, first = _post(port, "/v1/read")
    assert status == 200 and set(first) == {"kind", "card", "cardholder", "warnings"}

    async def watch_restart() -> list[str]:
        seen: list[str] = []
        origin = f"http://127.0.0.1:{port}"
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/events", origin=origin) as ws:  # type: ignore[arg-type]
            assert json.loads(await ws.recv())["event"] == "hello"
            await asyncio.to_thread(pcscd.kill)
            await asyncio.to_thread(pcscd.restart, tmp_path / "pcscd-restarted.log")
            while "card_inserted" not in seen or "service_restored" not in seen:
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 20))["event"])
        return seen

    events = asyncio.run(watch_restart())
    assert "service_lost" in events and events.index("service_lost") < events.index("service_restored")
    status, again = _post(port, "/v1/read")
    assert status == 200 and again == first, "the same service reads again after pcscd came back"
    assert process.poll() is None
