"""Prometheus metrics of one service instance (its own registry: services may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

LABELS = ("service", "instance", "type")


class Metrics:
    def __init__(self, service: str, instance: str) -> None:
        self.registry = CollectorRegistry()
        self._labels = {"service": service, "instance": instance}
        self.published = Counter(
            "orderbus_events_published",
            "Events the broker accepted from this instance",
            LABELS,
            registry=self.registry,
        )
        self.consumed = Counter(
            "orderbus_events_consumed",
            "Events handled with effect (first delivery of an id)",
            LABELS,
            registry=self.registry,
        )
        self.duplicates = Counter(
            "orderbus_events_duplicate",
            "Deliveries of an already processed event id (no effect)",
            LABELS,
            registry=self.registry,
        )
        self.failures = Counter(
            "orderbus_handler_failures",
            "Handler runs that raised (the event is redelivered)",
            LABELS,
            registry=self.registry,
        )

    def count(self, counter: Counter, event_type: str) -> None:
        counter.labels(type=event_type, **self._labels).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
