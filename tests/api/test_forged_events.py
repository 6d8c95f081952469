"""Events are checked against the contract before they are believed: an event whose type is
not its topic's, or that does not come from the one service publishing that topic, goes to the
dead letters at once with the reason, has no effect, and does not hold up the others."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from bus import Bus, BusSettings
from contracts import INVENTORY_RESERVED, ORDER_CREATED, CloudEvent
from services.runtime.settings import ServiceSettings
from tests.api.conftest import Running, order_event
from tests.api.test_subscribers import processed_once
from tests.polling import eventually

TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings(settings: ServiceSettings) -> ServiceSettings:
    """Attempts to spare, so a dead letter after one attempt shows that it was not retried."""
    bus = BusSettings(backend="memory", url=settings.bus.url, max_attempts=5)
    return settings.model_copy(update={"bus": bus, "admin_token": SecretStr(TOKEN)})


def forged(event: CloudEvent, **changes: Any) -> CloudEvent:
    if changes.get("data") == "items-not-a-list":  # the envelope right, the data not
        changes["data"] = {**event.data, "items": "not a list"}
    return event.model_copy(update=changes)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"source": "/services/billing"},
            "source: '/services/billing' does not publish 'order_created' "
            "(only '/services/order' does)",
        ),
        ({"source": "/attacker"}, "source: '/attacker' does not publish 'order_created'"),
        (
            {"type": INVENTORY_RESERVED},
            "type: 'inventory_reserved' arrived on topic 'order_created'",
        ),
        ({"subject": "o" * 200}, "subject: 'oooo"),
        ({"data": "items-not-a-list"}, "data: items: "),
    ],
    ids=[
        "another service",
        "a stranger",
        "another topic's type",
        "a subject of no order",
        "bad data",
    ],
)
async def test_a_forged_event_is_dead_lettered_at_once_and_reserves_nothing(
    publisher: Bus, running: Running, changes: dict[str, Any], reason: str
) -> None:
    async with running("inventory") as inventory:
        fake = forged(order_event(("LIMITED-EDITION", 5)), **changes)
        genuine = order_event(("KB-001", 1))
        await publisher.publish(ORDER_CREATED, fake)
        await publisher.publish(ORDER_CREATED, genuine)

        await processed_once(inventory, genuine)  # the flow goes on behind the forgery

        async def parked() -> list[dict[str, Any]] | None:
            rows = (await inventory.get("/dead-letters", headers=ADMIN)).json()["dead_letters"]
            return rows or None

        [letter] = await eventually(parked, within_s=10)
        assert letter["event_id"] == str(fake.id)
        assert letter["attempts"] == 1, "not retried: retrying cannot mend it"
        assert reason in letter["error"]
        order_id = fake.data["order_id"]
        assert (await inventory.get(f"/reservations/{order_id}")).status_code == 404
        stock = (await inventory.get("/stock/LIMITED-EDITION")).json()
        assert stock["reserved"] == 0, "the forged order took no stock"
        rows = (await inventory.get("/processed", params={"order_id": order_id})).json()
        assert rows["processed"] == [], "not in the inbox: a genuine copy would still count"
