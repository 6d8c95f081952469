"""`POST /orders` per-customer rate limit: 429 with Retry-After, and a refusal leaves no trace."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orderbus.specs import create_app
from services.order.settings import OrderSettings
from services.runtime.settings import ServiceSettings
from tests.api.conftest import pin_rate_limit_clock
from tests.api.test_order_api import GOOD, place
from tests.brokers import free_port
from tests.integration.conftest import Recorder
from tests.unit.test_ratelimit import WINDOW_START, Clock

LIMIT = 3
TOO_MANY = {
    "detail": "too many orders",
    "errors": [{"field": "customer_id", "reason": "at most 3 orders per 60 s; retry after 45 s"}],
}


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    pin_rate_limit_clock(monkeypatch, Clock(WINDOW_START + 15.2))  # 45 s before the window ends


@pytest.fixture
def order_settings() -> OrderSettings:
    return OrderSettings(rate_limit_per_minute=LIMIT)


def order_of(customer: str) -> dict[str, Any]:
    return {**GOOD, "customer_id": customer}


async def statuses(client: httpx.AsyncClient, body: Any, n: int) -> list[int]:
    return [(await place(client, body)).status_code for _ in range(n)]


async def test_orders_past_the_limit_get_429_and_retry_after(
    order_client: httpx.AsyncClient,
) -> None:
    assert await statuses(order_client, GOOD, LIMIT) == [202] * LIMIT

    refused = await place(order_client)

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "45"
    assert refused.json() == TOO_MANY


async def test_a_refused_order_writes_and_publishes_nothing(
    order_client: httpx.AsyncClient, published: Recorder
) -> None:
    accepted = [(await place(order_client)).json()["order_id"] for _ in range(LIMIT)]
    assert await statuses(order_client, GOOD, 2) == [429, 429]

    # Another customer's order after the refusals: once its event is out, nothing else came.
    marker = (await place(order_client, order_of("bob"))).json()["order_id"]
    await published.wait_until(lambda: marker in subjects(published))
    assert subjects(published) == [*accepted, marker]
    alice = (await order_client.get("/orders", params={"customer_id": "alice"})).json()
    assert sorted(o["order_id"] for o in alice["orders"]) == sorted(accepted)
    assert (await order_client.get("/orders")).json()["total"] == LIMIT + 1


def subjects(published: Recorder) -> list[str | None]:
    return [event.subject for event, _ in published.received]


async def test_another_customer_is_not_affected(order_client: httpx.AsyncClient) -> None:
    assert await statuses(order_client, GOOD, LIMIT + 1) == [202] * LIMIT + [429]

    assert await statuses(order_client, order_of("bob"), LIMIT) == [202] * LIMIT


async def test_an_idempotent_replay_is_answered_even_at_the_limit(
    order_client: httpx.AsyncClient,
) -> None:
    first = await place(order_client, **{"Idempotency-Key": "retry-me"})
    assert await statuses(order_client, GOOD, LIMIT) == [202] * (LIMIT - 1) + [429]

    again = await place(order_client, **{"Idempotency-Key": "retry-me"})

    assert again.status_code == 202
    assert again.json() == first.json()
    assert (await place(order_client, **{"Idempotency-Key": "a-new-one"})).status_code == 429


async def test_refused_input_does_not_count(order_client: httpx.AsyncClient) -> None:
    malformed = {"customer_id": "alice", "items": []}
    unknown_sku = order_of("alice") | {"items": [{"sku": "ZZ-999", "quantity": 1}]}
    assert await statuses(order_client, malformed, LIMIT) == [422] * LIMIT
    assert await statuses(order_client, unknown_sku, LIMIT) == [422] * LIMIT

    assert await statuses(order_client, GOOD, LIMIT + 1) == [202] * LIMIT + [429]


@pytest.fixture
async def unreachable_redis_client(
    settings: ServiceSettings, order_settings: OrderSettings, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """An order app whose rate-limit Redis is a closed port; yields it and the password."""
    password = f"pw-{uuid.uuid4().hex}"
    url = f"redis://:{password}@127.0.0.1:{free_port()}/0"
    own = order_settings.model_copy(
        update={"rate_limit_per_minute": 1, "rate_limit_redis_url": SecretStr(url)}
    )
    app = create_app("order", settings, own=own)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://order") as client:
            yield client, password


async def test_an_unreachable_redis_lets_orders_through_and_warns_once_without_the_url(
    unreachable_redis_client: tuple[httpx.AsyncClient, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, password = unreachable_redis_client
    caplog.set_level(logging.INFO)

    assert await statuses(client, GOOD, 3) == [202, 202, 202]

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == ["services.order.ratelimit"]
    assert "rate limit store unavailable" in warnings[0].getMessage()
    assert password not in caplog.text
    assert "redis://" not in caplog.text


@asynccontextmanager
async def clients(
    settings: ServiceSettings, own: OrderSettings, *addresses: str
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One order app, and a client of it from each address."""
    app = create_app("order", settings, own=own)
    async with app.router.lifespan_context(app), contextlib.AsyncExitStack() as stack:
        made = []
        for address in addresses:
            transport = httpx.ASGITransport(app=app, client=(address, 40_000))
            made.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://order")
                )
            )
        yield made


async def test_orders_in_a_victims_name_from_elsewhere_do_not_lock_the_victim_out(
    settings: ServiceSettings, order_settings: OrderSettings
) -> None:
    addresses = ("203.0.113.7", "198.51.100.20")
    async with clients(settings, order_settings, *addresses) as (mallory, alice):
        assert await statuses(mallory, order_of("alice"), LIMIT + 1) == [202] * LIMIT + [429]
        assert await statuses(alice, order_of("alice"), 1) == [202]


async def test_rotating_customer_ids_runs_into_the_client_limit(
    settings: ServiceSettings, order_settings: OrderSettings
) -> None:
    per_client = order_settings.model_copy(update={"rate_limit_per_client_per_minute": 5})
    async with clients(settings, per_client, "203.0.113.7", "198.51.100.20") as (mallory, other):
        placed = [
            (await place(mallory, order_of(f"c-{uuid.uuid4().hex[:8]}"))).status_code
            for _ in range(6)
        ]
        assert placed == [202] * 5 + [429]
        refused = await place(mallory, order_of("someone-else"))
        assert refused.json()["errors"] == [
            {
                "field": "client",
                "reason": "at most 5 orders from this client per 60 s; retry after 45 s",
            }
        ]
        assert await statuses(other, order_of("bob"), 1) == [202]
