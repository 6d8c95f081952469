"""The chassis's central types: what a service declares (`ServiceSpec`, its `Subscription`s and
`Broadcast`s) and what a running instance has (`Runtime`). Apart from the app builder
(`services.runtime.app`), so the modules the builder uses (handling, routes, relay, retention)
import them without importing the builder: no circle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.runtime.activity import Activity
from services.runtime.faults import Faults

if TYPE_CHECKING:
    from fastapi import APIRouter
    from sqlalchemy import MetaData, Table
    from sqlalchemy.ext.asyncio import AsyncEngine

    from bus import Bus
    from bus.probes import Probe
    from contracts import CloudEvent
    from services.runtime.inbox import Effect, Inbox
    from services.runtime.metrics import Metrics
    from services.runtime.outbox import OutboxRelay
    from services.runtime.settings import ServiceName, ServiceSettings


@dataclass(frozen=True)
class Subscription:
    topic: str
    effect: Effect
    after_commit: Callable[[Sequence[CloudEvent]], Awaitable[None]] | None = None
    """Runs once a batch's effects are committed, with its new events in delivery order
    (never a duplicate): side effects outside the database, such as sending an email or
    pushing to WebSocket clients. One call per batch, so such work can be batched too."""


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
    metrics: Metrics
    engine: AsyncEngine = field(init=False)
    bus: Bus = field(init=False)
    inbox: Inbox | None = field(init=False, default=None)
    probe: Probe | None = field(init=False, default=None)
    """Asks the broker how much waits for this service (scrape-time gauges)."""
    relay: OutboxRelay | None = None
    """Publishes the service's outbox; `relay.wake.set()` after a commit that enqueued."""
    faults: Faults = field(default_factory=Faults)
    activity: Activity = field(init=False)
    """What this instance handled lately, published for the dashboard."""
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when shutdown begins: background loops end their round and return."""

    def __post_init__(self) -> None:
        self.activity = Activity(
            self.service,
            self.instance,
            self.settings.advertised_url(self.service),
            self.settings.bus.backend,
            self.settings.admin_token,
        )


@dataclass(frozen=True)
class ServiceSpec:
    name: ServiceName
    metadata: MetaData
    routes: Callable[[Runtime], APIRouter]
    subscriptions: Sequence[Subscription] = ()
    broadcasts: Sequence[Broadcast] = ()
    seed: Callable[[AsyncEngine], Awaitable[None]] | None = None
    outbox: Table | None = None
    """The service's outbox table (`services.runtime.outbox.outbox_table`), if it publishes:
    a relay then runs with the app and is woken after every handled event."""
    background: Sequence[Callable[[Runtime], Coroutine[Any, Any, None]]] = ()
    """Long-running tasks. At shutdown `runtime.stopping` is set and they are cancelled: a
    loop checks `stopping` on every round, so it ends even where a client library swallowed
    the cancellation."""
    publishes: Sequence[str] = ()
    """Topics this service publishes (for the AsyncAPI document)."""
