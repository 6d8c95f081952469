"""Wait for a broker that is not up yet, bounded: compose, a cluster or a laptop may start a
service before its broker listens, and a service that exits at once only turns that into a
restart loop (and a wrong health signal)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bus.registry import backend_info

if TYPE_CHECKING:
    from bus.settings import BusSettings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2.0
"""One connection attempt: a host that drops packets must not hold the wait past its bound."""


TLS_PORTS = {"amqps": 5671}
"""Schemes whose default port differs from their backend's default URL's (AMQP over TLS);
`rediss` and NATS over TLS keep the plain port."""


def addresses(settings: BusSettings) -> list[tuple[str, int]]:
    """Every `host:port` the bus URL names (Kafka may name several); none for the embedded
    backend and Unix sockets. A host without a port takes the backend's default one."""
    parts = urlsplit(settings.resolved_url)
    if parts.scheme in ("memory", "unix"):
        return []
    default_port = (
        TLS_PORTS.get(parts.scheme) or urlsplit(backend_info(settings.backend).default_url).port
    )
    found = []
    for host in parts.netloc.rpartition("@")[2].split(","):
        address = urlsplit(f"//{host}")
        port = address.port or default_port
        if address.hostname and port:
            found.append((address.hostname, port))
    return found


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_for_broker(settings: BusSettings) -> None:
    """Return once one of the broker's addresses accepts a connection; raise ConnectionError
    (naming the backend and the URL without its password) after `BUS_START_WAIT_S`."""
    targets = addresses(settings)
    if not targets:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.start_wait_s
    delay, next_note = 0.1, loop.time() + 5
    while True:
        for host, port in targets:
            if await _accepts(host, port):
                return
        now = loop.time()
        if now >= deadline:
            raise ConnectionError(
                f"{settings.backend}: no broker accepts connections at {settings.safe_url} "
                f"after {settings.start_wait_s:g}s (BUS_START_WAIT_S)"
            )
        if now >= next_note:
            log.warning("waiting for the %s broker at %s", settings.backend, settings.safe_url)
            next_note = now + 5
        await asyncio.sleep(min(delay, deadline - now))
        delay = min(delay * 2, 2.0)
