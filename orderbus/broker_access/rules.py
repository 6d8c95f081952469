"""What each service does on the broker, so that its broker user may do that and no more.

A service publishes its own business topics (`contracts.events.published_by`), the live
topics it reports on (`contracts.live.LIVE_PUBLISHERS`) and its dead letters (`dlq.<name>`);
it consumes the topics of its subscriptions under its own group, and its broadcasts under a
group per instance (`bus.names.instance_group`, so only a pattern is known here). Reading is
wider than writing in one place: the dashboard, which notification serves, shows every
subscriber's backlog and dead letters. The operator (`orderbus dlq`, native tools) may do
everything: a replay republishes to a topic its group only consumes, which the service's own
user may not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bus import names
from contracts import ORDER_CREATED, published_by
from contracts.live import LIVE_PUBLISHERS
from orderbus.specs import check_service, service_spec
from services.order.ratelimit import KEY_PREFIX
from services.runtime.settings import SERVICES, SUBSCRIBERS

OPERATOR = "operator"
LAPTOP_PASSWORD = "orderbus"  # noqa: S105 - the documented laptop default
"""Every user's password in the committed files: for a laptop only (see the README)."""


@dataclass(frozen=True)
class ServiceRights:
    user: str
    publishes: tuple[str, ...]
    """Topics it may write: its business topics and the live topics it reports on."""
    consumes: tuple[str, ...]
    """Topics it reads under its own group (`group`)."""
    broadcasts: tuple[str, ...]
    """Topics it reads under a group per instance, which it creates and destroys."""
    watches: tuple[str, ...] = ()
    """Groups whose backlog on `order_created` and dead letters it may read (the dashboard)."""
    key_prefixes: tuple[str, ...] = ()
    """Redis keys of its own besides the bus's (the order rate limiter's counters)."""
    dead_letters: str | None = field(init=False)
    """Its `dlq.<group>`, when it consumes anything."""

    def __post_init__(self) -> None:
        dlq = names.dead_letters(self.user) if self.consumes else None
        object.__setattr__(self, "dead_letters", dlq)

    @property
    def group(self) -> str:
        return self.user

    @property
    def watched_topic(self) -> str:
        return ORDER_CREATED


def live_topics_of(service: str) -> tuple[str, ...]:
    return tuple(t for t, by in LIVE_PUBLISHERS.items() if by is None or by == service)


def service_rights(service: str) -> ServiceRights:
    spec = service_spec(check_service(service))
    return ServiceRights(
        user=service,
        publishes=(*published_by(service), *live_topics_of(service)),
        consumes=tuple(s.topic for s in spec.subscriptions),
        broadcasts=tuple(b.topic for b in spec.broadcasts),
        # The dashboard (services.console, served by notification) draws every subscriber's backlog.
        watches=SUBSCRIBERS if service == "notification" else (),
        key_prefixes=(KEY_PREFIX,) if service == "order" else (),
    )


def all_rights() -> list[ServiceRights]:
    return [service_rights(service) for service in SERVICES]
