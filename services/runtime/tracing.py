"""OpenTelemetry for a service process: off unless the standard `OTEL_*` variables ask for it.

Tracing starts when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`) or an OTLP
endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), unless
`OTEL_SDK_DISABLED=true`. The OTLP exporter (HTTP/protobuf, the `otlp` extra) then reads its
own `OTEL_EXPORTER_OTLP_*` settings, the batch processor its `OTEL_BSP_*`, and the resource
`OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.

FastAPI's own OpenTelemetry support opens a SERVER span per HTTP request (continuing an
incoming `traceparent` header) once a provider is set; `bus.tracing` carries the context
through the outbox and the broker to the handlers.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import trace

log = logging.getLogger(__name__)


def exporters_asked() -> list[str]:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = os.environ.get("OTEL_TRACES_EXPORTER")
    if named is None:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        named = "otlp" if endpoint else "none"
    return [name.strip() for name in named.split(",") if name.strip() not in ("", "none")]


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning(
                "OTEL_TRACES_EXPORTER=otlp needs the exporter: pip install 'orderbus[otlp]'"
            )
            return None
        return OTLPSpanExporter()
    log.warning("unknown trace exporter %r (OTEL_TRACES_EXPORTER): ignored", name)
    return None


def configure_tracing(service: str, instance: str) -> bool:
    """Install the SDK's tracer provider if the environment asks for tracing; True if it did."""
    exporters = [e for e in map(_exporter, exporters_asked()) if e is not None]
    if not exporters:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"service.instance.id": instance, "service.namespace": "orderbus"}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = service
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing on: %d exporter(s)", len(exporters))
    return True
