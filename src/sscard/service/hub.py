"""The event hub: card, reader, scan and session events fanned out to every WebSocket subscriber."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


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
