"""Bus configuration, read once from the environment (`BUS_*`)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.registry import backend_info
from bus.retry import RetryPolicy
from bus.urls import check_url, redact

MAX_ATTEMPTS_LIMIT = 100
"""The most `BUS_MAX_ATTEMPTS` may be; RabbitMQ's dead-letter net sits above it."""


class BusSettings(BaseSettings):
    # hide_input_in_errors: a ValidationError would otherwise quote BUS_URL, password and all.
    model_config = SettingsConfigDict(
        env_prefix="BUS_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    backend: str = "memory"
    """One of `bus.registry.BACKENDS`."""
    url: SecretStr | None = None
    """Broker address; the backend's loopback default when unset. May hold a password."""
    prefetch: int = Field(64, ge=1, le=10_000)
    """Events in flight per consumer (RabbitMQ prefetch, Redis/NATS/Kafka fetch size, memory
    take). A batch holds no more than was fetched: below `batch_max`, batches stay smaller
    than they may be (the default is the same 64)."""
    batch_max: int = Field(64, ge=1, le=1_000)
    """Most events one handler call of a batch subscription takes (`Bus.subscribe_batch`)."""
    batch_linger_ms: float = Field(2.0, ge=0, le=1_000)
    """How long a batch that is not full may wait for more events before it is handled."""
    redelivery_after_ms: int = Field(5_000, ge=100, le=3_600_000)
    """How long a delivered but unacknowledged event waits before another consumer may take it
    (Redis Streams idle time before XAUTOCLAIM, NATS ack wait)."""
    kafka_partitions: int = Field(6, ge=1, le=10_000)
    """Partitions of each Kafka topic created by the bus: the ceiling on competing consumers."""
    retry_budget_s: float = Field(60.0, ge=0, le=86_400)
    """How long a failing event is retried (its waits added up) before it is dead-lettered to
    `dlq.<group>`: long enough to ride out a restart of the database or the broker. 0: never
    retried."""
    max_attempts: int = Field(MAX_ATTEMPTS_LIMIT, ge=1, le=MAX_ATTEMPTS_LIMIT)
    """The most deliveries of one event, whatever the budget (`retry.attempts` is the
    smaller of the two)."""
    retry_backoff_ms: int = Field(200, ge=1, le=600_000)
    """Delay after the first failed attempt; doubles per attempt, with jitter."""
    retry_backoff_max_ms: int = Field(30_000, ge=1, le=3_600_000)
    """Ceiling of the retry delay."""
    max_event_bytes: int = Field(1_048_576, ge=1_024, le=64 * 1_048_576)
    """Largest encoded event the bus publishes or accepts; larger ones are refused."""
    memory_queue_size: int = Field(10_000, ge=1, le=10_000_000)
    """Bound of each group queue on the memory backend; publishers wait when it is full."""
    dead_consumer_after_s: int = Field(3_600, ge=1, le=30 * 86_400)
    """Redis Streams: a consumer idle this long with nothing pending is removed from its group
    (`XGROUP DELCONSUMER`); one with pending entries stays until they are reclaimed."""
    stream_retention_s: int = Field(7 * 86_400, ge=1, le=365 * 86_400)
    """How long a topic keeps its events. Redis Streams: entries older than this that every
    group of their stream has acknowledged are trimmed (an entry a group still needs never
    is); NATS: the stream's `max_age` (JetStream drops older messages, read or not, as Kafka's
    own retention does). On NATS a group that does not exist yet (a service not started) finds
    this much when it starts; on Redis Streams a new group starts at the end of the stream."""
    dead_letter_retention_s: int = Field(30 * 86_400, ge=1, le=365 * 86_400)
    """How long a dead letter is kept (Redis Streams and NATS; Kafka's topics keep the
    broker's retention, RabbitMQ's queues a policy's `message-ttl`: see the README)."""
    ephemeral_expiry_s: int = Field(300, ge=1, le=30 * 86_400)
    """How long an ephemeral subscription's group outlives its last consumer on the broker
    (RabbitMQ queue `x-expires`, NATS consumer `inactive_threshold`); see `Bus.subscribe`."""
    start_wait_s: float = Field(60.0, ge=0, le=3_600)
    """How long a service waits at start-up for its broker to accept connections (one that
    starts before its broker: compose, a cluster); 0: fail at once if it does not."""
    start_timeout_s: float = Field(30.0, gt=0, le=600)
    """How long `start()` waits for subscriptions to be live (Kafka partition assignment)."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        info = backend_info(self.backend)  # raises with a did-you-mean on a typo
        if self.url is not None:
            check_url(info, self.url.get_secret_value())
        return self

    @property
    def dead_letter_max_bytes(self) -> int:
        """The most a dead-letter record may take: below `max_event_bytes` by room for the
        broker's own framing (a Kafka request, a NATS message's headers), so a record that
        quotes a large event still fits where the event did."""
        return self.max_event_bytes - min(16_384, self.max_event_bytes // 8)

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(
            self.max_attempts, self.retry_backoff_ms, self.retry_backoff_max_ms, self.retry_budget_s
        )

    @property
    def resolved_url(self) -> str:
        if self.url is not None:
            return self.url.get_secret_value()
        return backend_info(self.backend).default_url

    @property
    def safe_url(self) -> str:
        """The URL with any password replaced, fit for logs and errors."""
        return redact(self.resolved_url)
