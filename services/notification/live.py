"""Browser clients connected to this instance over WebSocket, and pushing to them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import WebSocket

log = logging.getLogger(__name__)


class LiveClients:
    """Bounded: at most `limit` clients, and a client too slow to take a message is dropped
    rather than allowed to hold up every other client."""

    def __init__(self, limit: int = 1_000, send_timeout_s: float = 2.0) -> None:
        self._clients: set[WebSocket] = set()
        self._limit = limit
        self._send_timeout_s = send_timeout_s

    def __len__(self) -> int:
        return len(self._clients)

    def admit(self, client: WebSocket) -> bool:
        if len(self._clients) >= self._limit:
            return False
        self._clients.add(client)
        return True

    def leave(self, client: WebSocket) -> None:
        self._clients.discard(client)

    async def push(self, message: dict[str, Any]) -> None:
        clients = list(self._clients)
        results = await asyncio.gather(
            *(asyncio.wait_for(c.send_json(message), self._send_timeout_s) for c in clients),
            return_exceptions=True,
        )
        for client, result in zip(clients, results, strict=True):
            if isinstance(result, BaseException):
                self.leave(client)
                with contextlib.suppress(Exception):
                    await client.close(code=1011)
