"""The dead-letter admin endpoints: behind the admin token, and a replay is harmless twice."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncConnection

from bus import Bus, BusSettings, Received
from bus.backends.memory import bus as memory
from bus.dead_letters import DeadLetter
from contracts import ORDER_CONFIRMED, ORDER_CREATED, OrderConfirmed, OrderCreated, wrap
from orderbus.specs import create_app
from services.billing import bootstrap as billing_bootstrap
from services.runtime.settings import ServiceSettings
from tests.api.conftest import order_event
from tests.api.test_subscribers import processed_once
from tests.polling import eventually

TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings(settings: ServiceSettings) -> ServiceSettings:
    """Two attempts 1 ms apart, so a failing event is dead-lettered at once."""
    bus = BusSettings(backend="memory", url=settings.bus.url, max_attempts=2, retry_backoff_ms=1)
    return settings.model_copy(update={"bus": bus, "admin_token": SecretStr(TOKEN)})


@asynccontextmanager
async def billing(settings: ServiceSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app("billing", settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://billing") as client:
            yield client


async def test_without_a_configured_token_the_admin_endpoints_are_off(
    settings: ServiceSettings,
) -> None:
    async with billing(settings.model_copy(update={"admin_token": None})) as client:
        answer = await client.get("/dead-letters", headers=ADMIN)
    assert answer.status_code == 403
    assert "ORDERBUS_ADMIN_TOKEN" in answer.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["no token", "wrong token", "wrong scheme"],
)
async def test_admin_endpoints_refuse_a_missing_or_wrong_token(
    settings: ServiceSettings, headers: dict[str, str]
) -> None:
    async with billing(settings) as client:
        for method, path in [
            ("GET", "/dead-letters"),
            ("POST", "/dead-letters/replay"),
            ("POST", "/dead-letters/purge"),
        ]:
            answer = await client.request(method, path, headers=headers, json={"all": True})
            assert answer.status_code == 401, (method, path)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert "wrong-token" not in answer.text  # what was presented is never echoed


def test_a_short_admin_token_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="at least 16 characters") as refused:
        ServiceSettings(admin_token="hunter2")
    assert "hunter2" not in str(refused.value)


async def test_replaying_the_same_dead_letter_twice_bills_once(
    settings: ServiceSettings, publisher: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Billing's database is 'down': the event is delivered twice and dead-lettered twice.
    Once it is back, replaying both copies issues one invoice and counts two deliveries."""
    down = True
    from services.billing.handlers import issue_invoices as real

    async def flaky(conn: AsyncConnection, batch: Sequence[tuple[OrderCreated, Received]]) -> None:
        if down:
            raise ConnectionError("billing database unreachable")
        await real(conn, batch)

    monkeypatch.setattr(billing_bootstrap, "issue_invoices", flaky)
    async with billing(settings) as client:
        event = order_event(("MN-003", 1))
        await publisher.publish(ORDER_CREATED, event)
        await publisher.publish(ORDER_CREATED, event)

        async def two_letters() -> list[dict[str, Any]] | None:
            listing = (await client.get("/dead-letters", headers=ADMIN)).json()
            return listing["dead_letters"] if listing["count"] == 2 else None

        letters = await eventually(two_letters, within_s=10)
        assert {letter["event_id"] for letter in letters} == {str(event.id)}
        assert all(letter["attempts"] == 2 for letter in letters)
        assert all("billing database unreachable" in letter["error"] for letter in letters)
        assert (await client.get(f"/invoices/{event.subject}")).status_code == 404

        down = False
        refs = [letter["ref"] for letter in letters]
        replayed = await client.post("/dead-letters/replay", headers=ADMIN, json={"refs": refs})
        assert replayed.json() == {"replayed": 2, "removed": 2, "refused": []}

        async def delivered_twice() -> dict[str, Any] | None:
            row = await processed_once(client, event)
            return row if row["deliveries"] == 2 else None

        await eventually(delivered_twice, within_s=10)
        invoice = (await client.get(f"/invoices/{event.subject}")).json()
        assert invoice["total"] == "219.99"
        assert (await client.get("/dead-letters", headers=ADMIN)).json()["count"] == 0
        again = await client.post("/dead-letters/replay", headers=ADMIN, json={"refs": refs[:1]})
        assert again.status_code == 404  # replayed letters are gone, not replayable again


async def test_poison_is_refused_on_replay_and_purged_by_ref(
    settings: ServiceSettings, publisher: Bus
) -> None:
    async with billing(settings) as client:
        poison = order_event(("MN-003", 1)).model_copy(update={"data": {"order_id": "nope"}})
        await publisher.publish(ORDER_CREATED, poison)

        async def one_letter() -> dict[str, Any] | None:
            listing = (await client.get("/dead-letters?full=true", headers=ADMIN)).json()
            return listing["dead_letters"][0] if listing["count"] else None

        letter = await eventually(one_letter, within_s=10)
        assert "is not the order the data is about" in letter["error"]
        empty = await client.post("/dead-letters/replay", headers=ADMIN, json={})
        assert empty.status_code == 422
        assert "name dead letters in refs" in empty.json()["errors"][0]["reason"]
        unknown = await client.post("/dead-letters/purge", headers=ADMIN, json={"refs": ["x"]})
        assert unknown.status_code == 404
        assert "no dead letter x" in unknown.json()["detail"]
        purged = await client.post(
            "/dead-letters/purge", headers=ADMIN, json={"refs": [letter["ref"]]}
        )
        assert purged.json() == {"purged": 1, "kept": 0}


async def test_a_replay_goes_only_to_a_topic_the_group_subscribes_to(
    settings: ServiceSettings,
) -> None:
    """Anything that can write to the broker can write a dead letter naming any topic: a
    replay must not become a way to publish `order_confirmed` in billing's name."""
    confirmed = OrderConfirmed(
        order_id=uuid.uuid4(),
        customer_id="mallory",
        total=Decimal("1.00"),
        currency="EUR",
        confirmed_at=datetime.now(UTC),
    )
    forged = DeadLetter.of(
        wrap(ORDER_CONFIRMED, confirmed, correlationid=None).to_json(),
        topic=ORDER_CONFIRMED,
        group="billing",
        consumer="billing-1",
        attempts=1,
        error="forged",
    )
    hub = memory._hub(settings.bus.resolved_url)
    async with billing(settings) as client:
        hub.dead_letters.setdefault("billing", deque()).append(forged)
        answer = await client.post("/dead-letters/replay", json={"all": True}, headers=ADMIN)
        assert answer.status_code == 200
        assert answer.json()["replayed"] == 0
        assert answer.json()["refused"] == [
            {
                "ref": str(forged.id),
                "reason": "billing does not subscribe to 'order_confirmed'; purge it",
            }
        ]
        assert ORDER_CONFIRMED not in hub.topics or all(
            group.queue.empty() for group in hub.topics[ORDER_CONFIRMED].values()
        )
        listing = (await client.get("/dead-letters", headers=ADMIN)).json()
        assert [row["ref"] for row in listing["dead_letters"]] == [str(forged.id)]
