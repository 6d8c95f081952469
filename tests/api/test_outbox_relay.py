"""The outbox relay stops when the app stops, even if an order woke it at that very moment."""

from __future__ import annotations

import asyncio

from services.order.outbox import OutboxRelay
from services.runtime.app import Runtime
from services.runtime.metrics import Metrics
from services.runtime.settings import ServiceSettings


class IdleRelay(OutboxRelay):
    """Finds nothing to publish, and says each time it has looked."""

    def __init__(self) -> None:
        super().__init__()
        self.looked = asyncio.Event()

    async def publish_pending(self, runtime: Runtime) -> int:
        self.looked.set()
        return 0


async def test_a_wake_up_and_a_shutdown_at_once_still_stop_the_relay(
    settings: ServiceSettings,
) -> None:
    relay = IdleRelay()
    runtime = Runtime("order", "order-1", settings, Metrics("order", "order-1"))
    task = asyncio.create_task(relay.run(runtime))
    await relay.looked.wait()  # the relay goes straight on to wait for a wake-up

    relay.wake.set()  # an order committed...
    task.cancel()  # ...as the app stops

    done, _ = await asyncio.wait({task}, timeout=10)
    assert task in done, "the relay ignored its cancellation: shutdown would hang"
    assert task.cancelled()
