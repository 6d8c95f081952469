"""One trace from the HTTP request to every service's handler, across a real broker.

The four services run in this process (each its own app, bus, database) on a real broker: the
request's span is the root; the outbox relay's publish is its child; each subscriber's
handling is a child of the publish, whatever broker carried the `traceparent` in between.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from bus import BusSettings
from contracts import ORDER_CONFIRMED, ORDER_CREATED, ORDER_REJECTED
from orderbus.specs import create_app
from services.runtime.settings import SERVICES, SUBSCRIBERS, ServiceName, ServiceSettings
from tests.brokers import own_tansu_if_shared
from tests.polling import eventually

pytestmark = pytest.mark.timeout(120)
DECISIONS = (ORDER_CONFIRMED, ORDER_REJECTED)


@pytest.fixture
async def backend_url(backend: str, backend_url: str) -> AsyncIterator[str]:
    """The services' real group names: on Tansu, a broker of this test's own (see
    `own_tansu_if_shared`)."""
    async with own_tansu_if_shared(backend, backend_url) as url:
        yield url


@contextlib.asynccontextmanager
async def system(settings: ServiceSettings) -> AsyncIterator[dict[ServiceName, httpx.AsyncClient]]:
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[ServiceName, httpx.AsyncClient] = {}
        for service in SERVICES:
            app = create_app(service, settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients[service] = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url=f"http://{service}"
                )
            )
        yield clients


def attribute(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {}).get(name)


def ancestors(span: ReadableSpan, finished: tuple[ReadableSpan, ...]) -> list[str]:
    """The names of `span`'s parent, its parent's parent, ... up to the root."""
    by_id = {s.context.span_id: s for s in finished}
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


@pytest.mark.parametrize("backend", ["redis-streams", "rabbitmq", "kafka"], indirect=True)
async def test_one_trace_links_the_request_to_every_handler(
    backend: str, backend_url: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    settings = ServiceSettings(
        data_dir=tmp_path, bus=BusSettings(backend=backend, url=backend_url), outbox_poll_s=0.1
    )
    async with system(settings) as clients:
        answer = await clients["order"].post(
            "/orders", json={"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}]}
        )
        assert answer.status_code == 202
        order_id = answer.json()["order_id"]

        async def handled_by(service: ServiceName) -> str | None:
            rows = (await clients[service].get("/processed", params={"order_id": order_id})).json()
            return next(
                (r["event_id"] for r in rows["processed"] if r["type"] == ORDER_CREATED), None
            )

        event_ids = {
            await eventually(functools.partial(handled_by, service), within_s=60)
            for service in SUBSCRIBERS
        }

        async def decision_handled() -> str | None:
            rows = await clients["notification"].get("/processed", params={"order_id": order_id})
            return next(
                (r["event_id"] for r in rows.json()["processed"] if r["type"] in DECISIONS), None
            )

        decision_id = await eventually(decision_handled, within_s=60)
    [event_id] = event_ids
    finished = spans.get_finished_spans()
    [request] = [s for s in finished if s.kind == SpanKind.SERVER and s.name == "POST /orders"]
    [publish] = [
        s
        for s in finished
        if s.kind == SpanKind.PRODUCER and attribute(s, "messaging.message.id") == event_id
    ]
    handlers = [
        s
        for s in finished
        if s.kind == SpanKind.CONSUMER and attribute(s, "messaging.message.id") == event_id
    ]
    assert request.parent is None  # the root
    # The relay published in the request's trace, under the route that wrote the outbox row.
    assert publish.context.trace_id == request.context.trace_id
    assert ancestors(publish, finished)[-1] == "POST /orders"
    assert {attribute(s, "messaging.consumer.group.name") for s in handlers} == set(SUBSCRIBERS)
    for handler in handlers:
        assert handler.context.trace_id == request.context.trace_id
        assert handler.parent is not None
        assert handler.parent.span_id == publish.context.span_id
        assert attribute(handler, "messaging.system") == backend

    # The decision, written by the order service's batched handler of an answer, is published
    # in the same trace, under the handling of the answer that decided it.
    [decided] = [
        s
        for s in finished
        if s.kind == SpanKind.PRODUCER and attribute(s, "messaging.message.id") == decision_id
    ]
    assert decided.context.trace_id == request.context.trace_id
    lineage = ancestors(decided, finished)
    assert lineage[0] in {"process inventory_reserved", "process invoice_issued"}, lineage
    assert lineage[-1] == "POST /orders"
