"""API tests: a service app in-process, its real lifespan, a memory bus and a SQLite file."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from bus import Bus, BusSettings, create_bus
from contracts import ORDER_CREATED, CloudEvent, OrderCreated, OrderItem, wrap
from contracts.catalogue import CATALOGUE
from orderbus.specs import create_app
from services.order import ratelimit
from services.order.ratelimit import rate_limiter
from services.order.settings import OrderSettings
from services.runtime.settings import ServiceName, ServiceSettings
from tests.integration.conftest import Recorder


@pytest.fixture
def settings(tmp_path: Path) -> ServiceSettings:
    return ServiceSettings(
        data_dir=tmp_path,
        bus=BusSettings(backend="memory", url=f"memory://{uuid.uuid4().hex[:8]}"),
        outbox_poll_s=0.1,
    )


@pytest.fixture
async def publisher(settings: ServiceSettings) -> AsyncIterator[Bus]:
    """A bus on the services' memory hub, for publishing to them as another service would."""
    bus = create_bus(settings.bus)
    await bus.start()
    yield bus
    await bus.close()


@asynccontextmanager
async def recording(settings: ServiceSettings, *topics: str) -> AsyncIterator[Recorder]:
    """What is published on `topics`, as a downstream service (group `probe`) would see it."""
    probe = create_bus(settings.bus)
    recorder = Recorder()
    for topic in topics:
        probe.subscribe(topic, recorder, group="probe", consumer="probe-1")
    await probe.start()
    try:
        yield recorder
    finally:
        await probe.close()


@pytest.fixture
async def published(settings: ServiceSettings) -> AsyncIterator[Recorder]:
    """Everything the order service publishes, as a downstream service would see it."""
    async with recording(settings, ORDER_CREATED) as recorder:
        yield recorder


@pytest.fixture
def order_settings() -> OrderSettings:
    """The order service's own settings for `order_client`: a test module overrides this
    fixture to change them (its rate limit)."""
    return OrderSettings()


@pytest.fixture
async def order_client(
    settings: ServiceSettings, order_settings: OrderSettings, published: Recorder
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app("order", settings, own=order_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://order") as client:
            yield client


def pin_rate_limit_clock(monkeypatch: pytest.MonkeyPatch, clock: Callable[[], float]) -> None:
    """Make the order apps built after this call count rate-limit windows on `clock`, so a test
    never straddles a window boundary and knows its Retry-After."""
    monkeypatch.setattr(ratelimit, "rate_limiter", functools.partial(rate_limiter, clock=clock))


PRICES = {p.sku: p.unit_price for p in CATALOGUE}

Running = Callable[[ServiceName], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def running(settings: ServiceSettings) -> Running:
    @asynccontextmanager
    async def run(service: ServiceName) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(service, settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                yield client

    return run


def order_event(*lines: tuple[str, int]) -> CloudEvent:
    items = [OrderItem(sku=sku, quantity=q, unit_price=PRICES[sku]) for sku, q in lines]
    order = OrderCreated(
        order_id=uuid.uuid4(),
        customer_id="alice",
        items=items,
        total=sum((i.unit_price * i.quantity for i in items), Decimal("0.00")),
        currency="EUR",
        created_at=datetime.now(UTC),
    )
    return wrap(ORDER_CREATED, order, correlationid=f"c-{uuid.uuid4().hex}")
