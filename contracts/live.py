"""Events that fan out to every instance of a service rather than to one of them.

They carry no business fact: they are how instances tell each other what to show live.
Each instance subscribes under a group of its own (`bus.names.instance_group`), so every
instance receives every one of these events, whatever the backend's group semantics; the
subscription is ephemeral, so the group goes from the broker after its instance.

- `notification_pushed` v1: a notification for browsers. The instance that handled the
  order publishes it; every notification instance forwards it to its own WebSocket clients
  subscribed to that order or customer (the notes' "scaling WebSocket servers" pattern).
- `instance_activity` v1: what one service instance handled lately, plus its counters (a
  heartbeat when idle). The dashboard draws its lanes from these.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

NOTIFICATION_PUSHED = "notification_pushed"
NOTIFICATION_PUSHED_SCHEMA = "urn:orderbus:schema:notification_pushed:1"
INSTANCE_ACTIVITY = "instance_activity"
INSTANCE_ACTIVITY_SCHEMA = "urn:orderbus:schema:instance_activity:1"

LIVE_PUBLISHERS: dict[str, str | None] = {
    NOTIFICATION_PUSHED: "notification",  # services.notification.relay
    INSTANCE_ACTIVITY: None,  # every service instance: services.runtime.activity
}
"""Who publishes each live topic (None: every service), for the brokers' per-service users."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
ACTIVITY_EVENTS_MAX = 200
"""Records one activity event carries at most; an instance busier than that reports how
many it left out (`dropped`) instead of growing the event."""


class NotificationPushed(BaseModel):
    """Version 1: `message` is what browsers receive, as is (a JSON object)."""

    model_config = ConfigDict(frozen=True)

    order_id: Name | None = None
    customer_id: Name | None = None
    handled_by: Name
    """The instance that handled the order and published this push."""
    message: dict[str, Any]


Outcome = Literal["handled", "duplicate", "failed", "dead_lettered", "published"]


class HandledEvent(BaseModel):
    """One delivery as an instance saw it."""

    model_config = ConfigDict(frozen=True)

    event_id: Name
    type: Name
    order_id: Name | None = None
    attempt: int | None = None
    outcome: Outcome
    latency_ms: float = Field(ge=0)
    """From the event's `time` (when it was created) to the end of this handling."""
    at: AwareDatetime
    error: Annotated[str, StringConstraints(max_length=200)] | None = None


class InstanceActivity(BaseModel):
    """Version 1: sent every few hundred milliseconds while busy, every two seconds idle."""

    model_config = ConfigDict(frozen=True)

    service: Name
    instance: Name
    url: Annotated[str, StringConstraints(max_length=256)]
    """Where the instance listens (its admin endpoints are there)."""
    backend: Name
    started_at: AwareDatetime
    counters: dict[Outcome, int]
    """Since the instance started."""
    totals: dict[str, int] = Field(default_factory=dict)
    """Durable counts read from the instance's database: `processed` (its inbox, for
    `order_created`) or `published` (the order service's outbox)."""
    paused: bool = False
    fail_next: int = 0
    clients: int = 0
    """WebSocket clients connected to this instance (notification only)."""
    events: Annotated[list[HandledEvent], Field(max_length=ACTIVITY_EVENTS_MAX)]
    dropped: int = 0
    reported_at: AwareDatetime | None = None
    signature: Annotated[str, StringConstraints(max_length=64)] | None = None
    """HMAC-SHA256 under the admin token of `reported_at`, `service`, `instance`, `url` and
    `clients`: a dashboard calls `url` with the token only if it verifies (and is recent), and
    the peers of a notification instance believe its `clients` only then."""
