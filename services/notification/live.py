"""Browser clients connected to this instance over WebSocket, and what each listens to.

Each notification instance holds only its own connections. A push is published once to the
broker (`notification_pushed`) by the instance that handled the order, and every instance
receives it under a group of its own and forwards it to its local clients that listen to that
order or customer: the notes' recipe for scaling WebSocket servers behind a load balancer.

A push is published only while some browser is connected to some instance (`listened_to`):
one of this instance's that follows notifications, or a peer's, as the peers' activity
reports tell (`peer_reported`), and during an instance's first seconds, before it has heard
every peer. Nobody connected anywhere, nobody would receive it: two publishes and two
deliveries per order saved. A browser that connected to a peer in the last moment (before the
peer's next report, about a quarter of a second) may miss a push; `GET /notifications` has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket

log = logging.getLogger(__name__)

EVERYTHING = "*"
"""Every notification: for a client that showed the admin token (`all`), no one else."""
MAX_KEYS = 100
"""Orders and customers one client may listen to at once."""
FEEDS = frozenset({"notifications", "activity"})
PEER_TTL_S = 6.0
"""How long a peer's report that it has clients is believed: three of its idle heartbeats
(`services.runtime.activity.HEARTBEAT_S`); a peer that stops reporting stops counting."""
WARM_UP_S = PEER_TTL_S
"""After it starts, an instance has not heard every peer yet: it pushes as if someone
listened until each has had time to report."""
MAX_PEERS = 256


@dataclass(eq=False)
class Client:
    socket: WebSocket
    keys: set[str] = field(default_factory=set)
    """`order:<id>`, `customer:<id>`, or `*` for every notification: nothing until the
    client names what it follows."""
    feeds: set[str] = field(default_factory=lambda: {"notifications"})
    client_id: str | None = None
    admin: bool = False
    """Showed the admin token (`{"type": "auth"}`): may follow everything and the activity."""
    last_seen: float = field(default_factory=time.monotonic)
    """Refreshed by every message from the client (it pings): presence with a TTL."""

    def subscribe(self, kind: str, value: str) -> None:
        if kind == "all":
            if not self.admin:
                raise PermissionError("every customer's notifications need the admin token")
            self.keys.add(EVERYTHING)
            return
        if len(self.keys) >= MAX_KEYS:
            raise ValueError(f"at most {MAX_KEYS} subscriptions per client")
        self.keys.add(f"{kind}:{value}")

    def wants(self, feed: str, keys: set[str] | None) -> bool:
        """Whether this client listens to `feed` and to one of `keys` (None: to anything)."""
        if feed not in self.feeds:
            return False
        return keys is None or EVERYTHING in self.keys or not self.keys.isdisjoint(keys)


class LiveClients:
    """Bounded: at most `limit` clients, and a client too slow to take a message is dropped
    rather than allowed to hold up every other client."""

    def __init__(
        self, limit: int = 1_000, send_timeout_s: float = 2.0, presence_ttl_s: float = 30.0
    ) -> None:
        self._clients: set[Client] = set()
        self._peers: dict[str, float] = {}
        """Peers that reported clients of their own, and when (monotonic)."""
        self._warm_until = time.monotonic() + WARM_UP_S
        self._limit = limit
        self._send_timeout_s = send_timeout_s
        self.presence_ttl_s = presence_ttl_s

    def __len__(self) -> int:
        return len(self._clients)

    def admit(self, socket: WebSocket) -> Client | None:
        if len(self._clients) >= self._limit:
            return None
        client = Client(socket)
        self._clients.add(client)
        return client

    def leave(self, client: Client) -> None:
        self._clients.discard(client)

    def peer_reported(self, instance: str, clients: int) -> None:
        """A notification instance said how many clients it has (its activity report)."""
        if clients <= 0:
            self._peers.pop(instance, None)
            return
        now = time.monotonic()
        if instance not in self._peers and len(self._peers) >= MAX_PEERS:
            # Instances come and go (a new id per process): the silent ones make room.
            horizon = now - PEER_TTL_S
            self._peers = {peer: at for peer, at in self._peers.items() if at > horizon}
        if instance in self._peers or len(self._peers) < MAX_PEERS:
            self._peers[instance] = now

    def listened_to(self) -> bool:
        """Whether a browser here follows notifications, or a peer said lately that it holds
        browsers (or this instance started too recently to have heard every peer)."""
        if self.watching("notifications"):
            return True
        now = time.monotonic()
        if now < self._warm_until:
            return True
        horizon = now - PEER_TTL_S
        return any(at > horizon for at in self._peers.values())

    def watching(self, feed: str) -> bool:
        """Whether any client here listens to `feed`."""
        return any(feed in c.feeds for c in self._clients)

    def online(self) -> list[str]:
        """Ids of the clients that said who they are and were heard from within the TTL."""
        horizon = time.monotonic() - self.presence_ttl_s
        return sorted(c.client_id for c in self._clients if c.client_id and c.last_seen > horizon)

    async def deliver(self, feed: str, keys: set[str] | None, message: dict[str, Any]) -> int:
        """Send `message` to this instance's clients of `feed` listening to any of `keys`
        (every client of the feed when `keys` is None)."""
        clients = [c for c in self._clients if c.wants(feed, keys)]
        results = await asyncio.gather(
            *(asyncio.wait_for(c.socket.send_json(message), self._send_timeout_s) for c in clients),
            return_exceptions=True,
        )
        for client, result in zip(clients, results, strict=True):
            if isinstance(result, BaseException):
                self.leave(client)
                with contextlib.suppress(Exception):
                    await client.socket.close(code=1011)
        return len(clients)
