"""Build a service's FastAPI app: database, bus and background work wired in one lifespan.

Connections are made when the app starts, never at import; tests build apps the same way
with their own settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Table, func, select

from bus import Bus, BusSettings, Delivery, create_bus, names
from bus.broker_wait import wait_for_broker
from bus.probes import open_probe
from bus.prometheus import instrument
from contracts import ORDER_CREATED, CloudEvent
from services import __version__
from services.runtime import backlog, handling, retention, schema
from services.runtime.access import RequestMetrics
from services.runtime.activity import Activity
from services.runtime.api_docs import serve_api_docs
from services.runtime.control_routes import control_routes
from services.runtime.database import create_engine, reachable, reading
from services.runtime.dead_letter_routes import dead_letter_routes
from services.runtime.faults import Faults
from services.runtime.http import AnsweredRoute, BodyLimit, FrontRoutes, install_error_handlers
from services.runtime.inbox import Inbox, processed_events_table
from services.runtime.metrics import Metrics
from services.runtime.outbox import OutboxRelay
from services.runtime.outbox_routes import outbox_routes
from services.runtime.service import Broadcast, Runtime, ServiceSpec
from services.runtime.settings import (
    OwnSettings,
    ServiceName,
    ServiceSettings,
    advertised_url,
    database_url,
)
from services.runtime.shutdown import settle

log = logging.getLogger("services")

ACTIVITY_STOP_S = 5.0
"""How long shutdown waits for the activity publisher to finish its batch."""
BACKGROUND_STOP_S = 5.0
"""How long shutdown waits for background tasks, told to stop and cancelled, to return."""
BUS_CLOSE_S = 10.0
"""How long shutdown waits for the bus to finish the events in hand and close."""
HOOK_STOP_S = 2.0
"""How long shutdown waits for each of a service's shutdown hooks (`ServiceSpec.on_stop`)."""


def build_app(
    spec: ServiceSpec,
    settings: ServiceSettings,
    make_bus: Callable[[BusSettings], Bus] = create_bus,
) -> FastAPI:
    """`make_bus` is the door for a bus of another kind (`orderbus demo` renames its topics)."""
    relay = OutboxRelay(spec.outbox) if spec.outbox is not None else None
    runtime = new_runtime(spec.name, settings, spec.own, relay)
    instance = runtime.instance
    background = [*spec.background, *([relay.run] if relay is not None else [])]
    inbox_table = processed_events_table(spec.metadata) if spec.subscriptions else None
    if spec.outbox is not None or inbox_table is not None:
        background.append(functools.partial(retention.run, outbox=spec.outbox, inbox=inbox_table))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.stopping.clear()
        runtime.engine = create_engine(database_url(settings, spec.own, spec.name))
        runtime.metrics.count_database_work(runtime.engine)
        if settings.migrate_on_start:
            await schema.migrate(runtime.engine, spec.name, spec.metadata)
        else:
            await schema.require_head(runtime.engine, spec.name)
        if spec.seed is not None:
            await spec.seed(runtime.engine)
        runtime.bus = make_bus(settings.bus)
        instrument(runtime.bus, runtime.metrics.registry, service=spec.name, instance=instance)
        runtime.probe = open_probe(settings.bus) if spec.subscriptions else None
        if inbox_table is not None:
            runtime.inbox = Inbox(runtime.engine, inbox_table, instance, settings.bus.backend)
        runtime.bus.use(handling.faults(runtime))
        runtime.bus.observe(handling.observer(runtime, {b.topic for b in spec.broadcasts}))
        for subscription in spec.subscriptions:
            runtime.bus.subscribe_batch(
                subscription.topic,
                handling.inbox_handler(runtime, subscription),
                group=spec.name,
                consumer=instance,
            )
        for broadcast in spec.broadcasts:
            runtime.bus.subscribe(
                broadcast.topic,
                _broadcast_handler(broadcast),
                group=names.instance_group(instance, broadcast.topic),
                consumer=instance,
                ephemeral=True,
            )
        await wait_for_broker(settings.bus)
        await runtime.bus.start()
        runtime.activity.totals = lambda: totals(runtime, spec.outbox)
        runtime.activity.extra["paused"] = lambda: runtime.faults.paused
        runtime.activity.extra["fail_next"] = lambda: runtime.faults.fail_next
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(task(runtime)) for task in background
        ]
        reporting = asyncio.create_task(
            runtime.activity.run(settings.bus) if settings.activity else asyncio.sleep(0)
        )
        log.info("%s started as %s on bus %s", spec.name, instance, settings.bus.backend)
        try:
            yield
        finally:
            await _stop(runtime, tasks, reporting, spec.on_stop)

    app = FastAPI(
        title=f"orderbus {spec.name}",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served from the installed files instead of a CDN (api_docs)
        redoc_url=None,
        # Spans only (services.runtime.tracing); metrics are Prometheus's. Otherwise FastAPI
        # asks OpenTelemetry for a meter and a logger provider on every request.
        telemetry={"metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    own_routes = spec.routes(runtime)
    # Innermost first: the answered routes, the body limit, then the metrics, outermost (so
    # 413s are counted too).
    answered = [r for r in own_routes.routes if isinstance(r, AnsweredRoute)]
    if answered:
        app.add_middleware(FrontRoutes, routes=answered)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=runtime.metrics)
    install_error_handlers(app)
    # The service's own routes first, the API's pages last: a request is matched against the
    # routes in order, and the service's (`POST /orders`) are the ones asked all the time.
    app.include_router(own_routes)
    app.include_router(_basics(runtime, [sub.topic for sub in spec.subscriptions]))
    if spec.subscriptions:
        app.include_router(dead_letter_routes(runtime, {sub.topic for sub in spec.subscriptions}))
        app.include_router(control_routes(runtime))
    if runtime.relay is not None:
        app.include_router(outbox_routes(runtime, runtime.relay))
    serve_api_docs(app)
    return app


def new_runtime(
    service: ServiceName,
    settings: ServiceSettings,
    own: OwnSettings,
    relay: OutboxRelay | None = None,
    instance: str | None = None,
) -> Runtime:
    """A service instance's `Runtime`, with its metrics, activity feed and fault switches;
    connections are made later, when the app starts."""
    instance = instance or settings.instance(service)
    activity = Activity(
        service,
        instance,
        advertised_url(settings, own),
        settings.bus.backend,
        settings.admin_token,
    )
    metrics = Metrics(service, instance)
    return Runtime(service, instance, settings, own, metrics, activity, Faults(), relay=relay)


async def _stop(
    runtime: Runtime,
    background: list[asyncio.Task[None]],
    reporting: asyncio.Task[None],
    hooks: Sequence[Callable[[Runtime], Awaitable[None]]],
) -> None:
    """Stop in order, each step bounded: what overruns is logged with where it is stuck and
    left behind (the process's shutdown deadline, `services.runtime.shutdown`, ends it)."""
    who = f"{runtime.service} {runtime.instance}"
    runtime.stopping.set()
    runtime.activity.stop()  # let a publish in flight finish rather than cut it short
    await settle([reporting], ACTIVITY_STOP_S, f"{who}: activity publisher", cancel=False)
    for task in background:
        task.cancel()
    await settle([*background, reporting], BACKGROUND_STOP_S, f"{who}: background tasks")
    runtime.faults.resume()  # a paused handler must finish for the bus to close
    # Finishes the events in hand, acknowledges them, closes the connections.
    await settle([asyncio.ensure_future(runtime.bus.close())], BUS_CLOSE_S, f"{who}: bus close")
    if runtime.probe is not None:
        await settle([asyncio.ensure_future(runtime.probe.close())], 2.0, f"{who}: probe close")
    for hook in hooks:
        name = getattr(hook, "__qualname__", repr(hook))
        await settle([asyncio.ensure_future(hook(runtime))], HOOK_STOP_S, f"{who}: {name}")
    await runtime.engine.dispose()
    log.info("%s stopped", who)


async def totals(runtime: Runtime, outbox: Table | None) -> dict[str, int]:
    """Durable counts for the dashboard's lag: `order_created` events this service processed
    (its inbox) or published (its outbox). Replicas share the database, so they agree. Both
    over the same window, the shorter retention: older rows may be gone from either table."""
    settings = runtime.settings
    since = datetime.now(UTC) - timedelta(
        seconds=min(settings.outbox_retention_s, settings.inbox_retention_s)
    )
    found: dict[str, int] = {}
    async with reading(runtime.engine) as conn:
        if runtime.inbox is not None:
            inbox = runtime.inbox.table
            query = select(func.count()).where(
                inbox.c.type == ORDER_CREATED, inbox.c.processed_at >= since
            )
            found["processed"] = int((await conn.execute(query)).scalar_one())
        if outbox is not None:
            query = select(func.count()).where(
                outbox.c.topic == ORDER_CREATED, outbox.c.published_at >= since
            )
            found["published"] = int((await conn.execute(query)).scalar_one())
    return found


def _broadcast_handler(broadcast: Broadcast) -> Callable[[CloudEvent, Delivery], Awaitable[None]]:
    async def handle(event: CloudEvent, delivery: Delivery) -> None:
        age_s = (datetime.now(UTC) - event.time).total_seconds()
        if age_s > broadcast.max_age_s:
            log.debug("dropped %s %s: %.0fs old", event.type, event.id, age_s)
            return
        await broadcast.handle(event)

    return handle


def _basics(runtime: Runtime, topics: Sequence[str]) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": runtime.service, "instance": runtime.instance}

    @router.get("/ready")
    async def ready() -> JSONResponse:
        # Both at once, each bounded by 2 s: the answer comes within a probe's 3 s.
        database, broker = await asyncio.gather(reachable(runtime.engine), runtime.bus.ping())
        checks = {"database": database, "broker": broker}
        ok = all(checks.values())
        body: dict[str, Any] = {
            "status": "ready" if ok else "not ready",
            "service": runtime.service,
            "instance": runtime.instance,
            "backend": runtime.settings.bus.backend,
            "checks": checks,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get("/metrics")
    async def metrics() -> Response:
        await backlog.refresh(runtime, topics)
        return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")

    if topics:

        @router.get("/processed")
        async def processed(
            order_id: str | None = Query(None, max_length=64),
            limit: int = Query(100, ge=1, le=1000),
            offset: int = Query(0, ge=0, le=10_000_000),
        ) -> dict[str, Any]:
            assert runtime.inbox is not None
            rows = await runtime.inbox.processed(order_id, limit, offset)
            return {"service": runtime.service, "processed": rows}

    return router
