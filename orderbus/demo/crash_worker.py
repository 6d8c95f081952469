"""The billing instance scenario 4 kills: it takes one event and dies inside its handler.

`os._exit` skips every `finally`, as `kill -9` or a power cut would: the event is never
acknowledged, and what happens to it next is the broker's business. Configured by the
environment (`BUS_*`, `DEMO_TOPIC`, `DEMO_GROUP`); prints `ready`, then `took <id> <attempt>`.
"""

from __future__ import annotations

import asyncio
import os

from bus import BusSettings, Delivery, create_bus
from contracts import CloudEvent

CRASHED = 137  # what a shell reports for a process killed by SIGKILL


async def main() -> None:
    bus = create_bus(BusSettings())

    async def take_and_die(event: CloudEvent, delivery: Delivery) -> None:
        print(f"took {event.id} {delivery.attempt or 1}", flush=True)
        os._exit(CRASHED)

    bus.subscribe(
        os.environ["DEMO_TOPIC"], take_and_die, group=os.environ["DEMO_GROUP"], consumer="billing-1"
    )
    await bus.start()
    print("ready", flush=True)
    await asyncio.Event().wait()  # until the event arrives and the process dies with it


if __name__ == "__main__":
    asyncio.run(main())
