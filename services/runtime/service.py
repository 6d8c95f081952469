"""The chassis's central types: what a service declares (`ServiceSpec`, its `Subscription`s and
`Broadcast`s) and what a running instance has (`Runtime`). It imports nothing of the chassis
at run time (the types it names are imported for the type checker only), so every module of
the chassis and of the services can import it without a circle; the app builder
(`services.runtime.app`) makes the objects a `Runtime` holds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from bus.port import Received
from contracts import EVENTS
from contracts.base import OrderEventData

if TYPE_CHECKING:
    from fastapi import APIRouter
    from sqlalchemy import MetaData, Table
    from sqlalchemy.ext.asyncio import AsyncEngine

    from bus import Bus
    from bus.probes import Probe
    from contracts import CloudEvent
    from services.runtime.activity import Activity
    from services.runtime.faults import Faults
    from services.runtime.inbox import Inbox
    from services.runtime.metrics import Metrics
    from services.runtime.outbox import OutboxRelay
    from services.runtime.settings import OwnSettings, ServiceName, ServiceSettings


D = TypeVar("D", bound=OrderEventData)

Handler = Callable[[AsyncConnection, D, Received], Awaitable[None]]
"""What a service does with an event's data, inside its inbox's transaction; `Received` says
which event it was (its id, its correlation id) and who handles it (`delivery.consumer`)."""
BatchedHandler = Callable[[AsyncConnection, Sequence[tuple[D, Received]]], Awaitable[None]]
"""What a service does with the new events of a batch at once (each event's data, and which
event it was), in delivery order, inside its inbox's transaction: one statement of many rows
instead of a statement per event. If it raises, the events are handled again one at a time
(each in a batch of one), so only the event that fails is retried or dead-lettered."""


@dataclass(frozen=True)
class Subscription(Generic[D]):
    """A business topic, the model of its data, and what the service does with it. The chassis
    checks each event against the contract (`contracts.admission_error`) and validates its data
    into `model` once; data that does not fit goes to the dead letters, naming the field."""

    topic: str
    model: type[D]
    handler: Handler[D] | None = None
    after_commit: Callable[[Sequence[D]], Awaitable[None]] | None = None
    """Runs once a batch's effects are committed, with the data of its new events in delivery
    order (never a duplicate): side effects outside the database, such as sending an email or
    pushing to WebSocket clients. One call per batch, so such work can be batched too."""
    batched: BatchedHandler[D] | None = None
    """Instead of `handler`: the new events of each batch in one call."""

    def __post_init__(self) -> None:
        if (self.handler is None) == (self.batched is None):
            raise TypeError(f"{self.topic}: give a handler or a batched handler, one of the two")
        declared = EVENTS[self.topic].model
        if self.model is not declared:
            raise TypeError(
                f"{self.topic} carries {declared.__name__} (contracts.EVENTS), "
                f"not {self.model.__name__}"
            )


@dataclass(frozen=True)
class Broadcast:
    """A topic every instance of the service receives in full: subscribed under a group of
    the instance's own (`bus.names.instance_group`), so the broker fans it out to each
    instance instead of sharing it among them. Handled without an inbox: these events are
    live views (a push to browsers), not business effects. The subscription is ephemeral
    (`Bus.subscribe`): the group goes from the broker some time after its instance."""

    topic: str
    handle: Callable[[CloudEvent], Awaitable[None]]
    max_age_s: float = 30.0
    """Older events are dropped: a durable backend keeps an instance's group while it is
    down (up to `BUS_EPHEMERAL_EXPIRY_S`), and what it missed then is stale by the time it
    returns."""


@dataclass
class Runtime:
    """What a running service instance has: handed to its routes and background tasks."""

    service: ServiceName
    instance: str
    settings: ServiceSettings
    own: OwnSettings
    """The service's own settings (port, database URL); the service's code reads its typed
    model, which its bootstrap hands it, not this."""
    metrics: Metrics
    activity: Activity
    """What this instance handled lately, published for the dashboard."""
    faults: Faults
    """The operator's injected failures and pauses (the dashboard's controls)."""
    engine: AsyncEngine = field(init=False)
    bus: Bus = field(init=False)
    inbox: Inbox | None = field(init=False, default=None)
    probe: Probe | None = field(init=False, default=None)
    """Asks the broker how much waits for this service (scrape-time gauges)."""
    relay: OutboxRelay | None = None
    """Publishes the service's outbox; `relay.wake.set()` after a commit that enqueued."""
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when shutdown begins: background loops end their round and return."""


@dataclass(frozen=True)
class ServiceSpec:
    name: ServiceName
    own: OwnSettings
    """The service's own settings (`services/<name>/settings.py`): the chassis takes its port
    and database URL from them."""
    metadata: MetaData
    routes: Callable[[Runtime], APIRouter]
    subscriptions: Sequence[Subscription[Any]] = ()
    broadcasts: Sequence[Broadcast] = ()
    seed: Callable[[AsyncEngine], Awaitable[None]] | None = None
    """The start-up hook: run once the database is migrated, before the bus starts (the
    rows the first events need, such as the catalogue's stock)."""
    outbox: Table | None = None
    """The service's outbox table (`services.runtime.outbox.outbox_table`), if it publishes:
    a relay then runs with the app and is woken after every handled event."""
    background: Sequence[Callable[[Runtime], Coroutine[Any, Any, None]]] = ()
    """Long-running tasks. At shutdown `runtime.stopping` is set and they are cancelled: a
    loop checks `stopping` on every round, so it ends even where a client library swallowed
    the cancellation."""
    on_stop: Sequence[Callable[[Runtime], Awaitable[None]]] = ()
    """Shutdown hooks, run in order once the background tasks have ended and the bus has
    closed, before the database goes: closing what the service opened itself (the order
    service's rate-limit connection). Each is bounded, as every step of the shutdown."""
    publishes: Sequence[str] = ()
    """Topics this service publishes (for the AsyncAPI document)."""
