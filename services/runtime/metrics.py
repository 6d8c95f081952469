"""Prometheus metrics of one service instance (its own registry: services may share a process).

Every name and label is listed in docs/metrics.md, and a test keeps that table and this
registry in agreement. Counters and the latency histogram move on the handler path; the
backlog gauges are asked of the broker and the database at scrape time (`refresh`), on
their own connections and within a timeout, so a scrape never holds up a handler and a slow
broker never holds up a scrape for long.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bus.probes import Backlog
from contracts import EVENTS, INSTANCE_ACTIVITY, NOTIFICATION_PUSHED
from services.runtime.database import READER

LABELS = ("service", "instance", "type")
TOPIC_LABELS = ("service", "instance", "topic")
INSTANCE_LABELS = ("service", "instance")
KNOWN_TYPES = frozenset(
    {*(c.event_type for c in EVENTS.values()), INSTANCE_ACTIVITY, NOTIFICATION_PUSHED}
)
"""The `type` label takes these values, and `other`: an event's type is whatever its sender
wrote, and each new value would be a new series in every scrape for good."""
DATABASE_LABELS = ("service", "instance", "kind")
"""`kind`: `read` (a `database.reading` connection's transaction) or `write`."""
HTTP_LABELS = ("service", "instance", "method", "route", "status")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""The `method` label takes these values, and `other` (a client chooses the method)."""
HTTP_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
HANDLER_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, service: str, instance: str) -> None:
        self.registry = CollectorRegistry()
        self._labels = {"service": service, "instance": instance}
        # The labelled series of counters and histograms, by their bounded label values:
        # `labels()` finds a series at more cost than counting in it. As many as the series.
        self._of_types: dict[tuple[Counter | Histogram, str], Any] = {}
        self._of_requests: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._refreshing = asyncio.Lock()
        r = self.registry
        self.published = Counter(
            "orderbus_events_published",
            "Events the broker accepted from this instance",
            LABELS,
            registry=r,
        )
        self.consumed = Counter(
            "orderbus_events_consumed",
            "Events handled with effect (first delivery of an id)",
            LABELS,
            registry=r,
        )
        self.duplicates = Counter(
            "orderbus_events_duplicate",
            "Deliveries of an already processed event id, suppressed by the inbox (no effect)",
            LABELS,
            registry=r,
        )
        self.failures = Counter(
            "orderbus_handler_failures",
            "Handler runs that raised (the event is retried or dead-lettered)",
            LABELS,
            registry=r,
        )
        self.redelivered = Counter(
            "orderbus_events_redelivered",
            "Deliveries after the first of one event: retries and redeliveries after a crash",
            LABELS,
            registry=r,
        )
        self.handler_seconds = Histogram(
            "orderbus_handler_duration_seconds",
            "Time one handling took, its database transaction included (failures too)",
            LABELS,
            buckets=HANDLER_SECONDS,
            registry=r,
        )
        self.lag = Gauge(
            "orderbus_group_lag",
            "Events published to the topic, not yet delivered to this service's group",
            TOPIC_LABELS,
            registry=r,
        )
        self.pending = Gauge(
            "orderbus_group_pending",
            "Events delivered to this service's group, not yet acknowledged",
            TOPIC_LABELS,
            registry=r,
        )
        self.stream_length = Gauge(
            "orderbus_stream_length",
            "Entries in the topic's stream (Redis Streams)",
            TOPIC_LABELS,
            registry=r,
        )
        self.dead_letters = Gauge(
            "orderbus_dead_letters",
            "Entries in this service's dlq.<group>",
            INSTANCE_LABELS,
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "orderbus_outbox_backlog",
            "Outbox rows not yet published",
            INSTANCE_LABELS,
            registry=r,
        )
        self.outbox_parked = Gauge(
            "orderbus_outbox_parked",
            "Outbox rows parked as never publishable (GET /outbox/parked)",
            INSTANCE_LABELS,
            registry=r,
        )
        self.dead_letter_failures = Counter(
            "orderbus_dead_letter_failures",
            "Events that could not be moved to dlq.<group>: delivered again after a backoff",
            LABELS,
            registry=r,
        )
        self.probe_failures = Counter(
            "orderbus_probe_failures",
            "Scrapes whose broker or database backlog query failed or timed out",
            INSTANCE_LABELS,
            registry=r,
        )
        self.database_transactions = Counter(
            "orderbus_database_transactions",
            "Database transactions begun by this instance, reads and writes",
            DATABASE_LABELS,
            registry=r,
        )
        self.database_statements = Counter(
            "orderbus_database_statements",
            "SQL statements sent to the database (a multi-row insert is one; on SQLite BEGIN too)",
            INSTANCE_LABELS,
            registry=r,
        )
        self.http_requests = Counter(
            "orderbus_http_requests",
            "HTTP requests answered, by route template (unmatched: no route took it) and status",
            HTTP_LABELS,
            registry=r,
        )
        self.http_seconds = Histogram(
            "orderbus_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer",
            HTTP_LABELS,
            buckets=HTTP_SECONDS,
            registry=r,
        )

    def count(self, counter: Counter, event_type: str) -> None:
        self._of_type(counter, event_type).inc()

    def observe_handling(self, event_type: str, seconds: float) -> None:
        self._of_type(self.handler_seconds, event_type).observe(seconds)

    def _of_type(self, metric: Counter | Histogram, event_type: str) -> Any:
        """`metric`'s series for `event_type` (a `Counter` or `Histogram` child)."""
        key = (metric, _bounded(event_type))
        series = self._of_types.get(key)
        if series is None:
            series = self._of_types[key] = metric.labels(type=key[1], **self._labels)
        return series

    def set_backlog(self, topic: str, backlog: Backlog) -> None:
        """Set the topic's gauges; a figure the backend cannot give is left out."""
        labelled = {"topic": topic, **self._labels}
        for gauge, value in (
            (self.lag, backlog.lag),
            (self.pending, backlog.pending),
            (self.stream_length, backlog.stream_length),
        ):
            if value is not None:
                gauge.labels(**labelled).set(value)
            else:
                with contextlib.suppress(KeyError):  # never set: nothing to leave out
                    gauge.remove(*(labelled[name] for name in TOPIC_LABELS))
        if backlog.dead_letters is not None:
            self.dead_letters.labels(**self._labels).set(backlog.dead_letters)

    def set_outbox_backlog(self, rows: int, parked: int) -> None:
        self.outbox_backlog.labels(**self._labels).set(rows)
        self.outbox_parked.labels(**self._labels).set(parked)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method if method in HTTP_METHODS else "other", route, status)
        found = self._of_requests.get(key)
        if found is None:
            labels = {"method": key[0], "route": route, "status": str(status), **self._labels}
            found = self._of_requests[key] = (
                self.http_requests.labels(**labels),
                self.http_seconds.labels(**labels),
            )
        requests, seconds_of = found
        requests.inc()
        seconds_of.observe(seconds)

    def count_database_work(self, engine: AsyncEngine) -> None:
        """Count `engine`'s transactions and statements: what an order costs the database is
        read from these (`orderbus bench`), and a rate that jumps says a handler lost its
        batching."""
        reads = self.database_transactions.labels(kind="read", **self._labels)
        writes = self.database_transactions.labels(kind="write", **self._labels)
        statements = self.database_statements.labels(**self._labels)

        def began(connection: Any) -> None:
            reader = connection.get_execution_options().get(READER, False)
            (reads if reader else writes).inc()

        def executing(*_: Any) -> None:
            statements.inc()

        event.listen(engine.sync_engine, "begin", began)
        event.listen(engine.sync_engine, "before_cursor_execute", executing)

    def probe_failed(self) -> None:
        self.probe_failures.labels(**self._labels).inc()

    @property
    def refreshing(self) -> asyncio.Lock:
        """Held by the scrape that is asking the broker: one at a time."""
        return self._refreshing

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _bounded(event_type: str) -> str:
    return event_type if event_type in KNOWN_TYPES else "other"
