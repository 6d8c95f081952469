"""The order saga on every durable backend: real processes (`orderbus up`, two billing
replicas), real brokers, a mix of orders that can and cannot be fulfilled.

Six orders compete for the five LIMITED-EDITION desk mats: five are confirmed, one is
rejected, whichever it turns out to be. Two ask for more than there ever was, and ten for
plentiful keyboards and mice. At the end every order is confirmed or rejected with its
history; no stock is held for a rejected order and none is lost; every order has exactly one
invoice, voided exactly when the order was rejected; every customer was told the outcome.
Answers arriving out of order or twice are proven one service at a time in
`tests/api/test_saga.py`, where the test chooses the order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bus import BACKENDS, backend_info
from contracts.catalogue import CATALOGUE
from tests.e2e.system import System, orderbus_up, remove_system_topology
from tests.polling import eventually

pytestmark = pytest.mark.timeout(300)

DURABLE = [b for b in BACKENDS if backend_info(b).capabilities.offline_catch_up]
INITIAL = {p.sku: p.initial_stock for p in CATALOGUE}
LIMITED = "LIMITED-EDITION"
assert INITIAL[LIMITED] == 5, "the mix below is built for five in stock"


def the_mix() -> list[tuple[str, list[dict[str, Any]]]]:
    """(what the order should come to, its lines): `contended` is decided by arrival."""
    contended = [("contended", [{"sku": LIMITED, "quantity": 1}, {"sku": "KB-001", "quantity": 1}])]
    never = [("rejected", [{"sku": "MS-002", "quantity": 2}, {"sku": LIMITED, "quantity": 6}])]
    plenty = [("confirmed", [{"sku": "KB-001", "quantity": 1 + n % 3}]) for n in range(5)]
    plenty += [("confirmed", [{"sku": "MS-002", "quantity": 1}]) for _ in range(5)]
    return contended * 6 + never * 2 + plenty


@pytest.fixture
async def system(backend: str, backend_url: str, tmp_path: Path) -> AsyncIterator[System]:
    await remove_system_topology(backend, backend_url, [])
    with orderbus_up(backend, backend_url, tmp_path, "--replicas", "billing=2") as running:
        yield running
    assert running.process.returncode == 0, running.log.read_text()[-4000:]
    await remove_system_topology(backend, backend_url, [])


@pytest.mark.parametrize("backend", DURABLE)
async def test_every_order_ends_confirmed_or_rejected_and_compensated(system: System) -> None:
    customer = f"saga-{uuid.uuid4().hex[:8]}"
    order_url, inventory_url = system.url("order-1"), system.url("inventory-1")
    billing_url, notification_url = system.url("billing-1"), system.url("notification-1")
    async with httpx.AsyncClient(timeout=30) as client:

        async def place(expected: str, lines: list[dict[str, Any]]) -> tuple[str, str]:
            body = {"customer_id": customer, "items": lines}
            response = await client.post(f"{order_url}/orders", json=body)
            assert response.status_code == 202, response.text
            return str(response.json()["order_id"]), expected

        mix = the_mix()
        expected = dict(await asyncio.gather(*(place(e, lines) for e, lines in mix)))
        lines_of = {order_id: lines for order_id, (_, lines) in zip(expected, mix, strict=True)}

        async def settled() -> dict[str, dict[str, Any]] | None:
            page = await client.get(
                f"{order_url}/orders", params={"customer_id": customer, "limit": 200}
            )
            orders = {o["order_id"]: o for o in page.json()["orders"]}
            done = all(o["status"] != "pending" for o in orders.values())
            return orders if done and orders.keys() == expected.keys() else None

        orders = await eventually(settled, within_s=60)

        # Every order in its right final state, with the history that led there.
        statuses = Counter(o["status"] for o in orders.values())
        contended = [i for i, e in expected.items() if e == "contended"]
        assert Counter(orders[i]["status"] for i in contended) == {"confirmed": 5, "rejected": 1}
        for order_id, wanted in expected.items():
            order = orders[order_id]
            if wanted != "contended":
                assert order["status"] == wanted, order
            steps = [(s["status"], s["event_type"]) for s in order["history"]]
            assert steps[0] == ("pending", "order_created")
            if order["status"] == "rejected":
                assert steps[1:] == [("rejected", "inventory_rejected")]
                assert order["history"][1]["reason"].startswith(f"insufficient stock for {LIMITED}")
            else:
                assert len(steps) == 2, steps
                assert steps[1] in {
                    ("confirmed", "inventory_reserved"),
                    ("confirmed", "invoice_issued"),
                }
        assert statuses == {"confirmed": 15, "rejected": 3}

        # Stock: held for confirmed orders only, nothing lost or made up.
        confirmed = [i for i, o in orders.items() if o["status"] == "confirmed"]
        held: Counter[str] = Counter()
        for order_id in confirmed:
            for line in lines_of[order_id]:
                held[line["sku"]] += line["quantity"]
        for row in (await client.get(f"{inventory_url}/stock")).json():
            assert row["reserved"] == held[row["sku"]], row
            assert row["available"] + row["reserved"] == INITIAL[row["sku"]], row

        # Each order one invoice; voided exactly when the order was rejected; both billing
        # replicas took part.
        billed_by: set[str] = set()
        for order_id, order in orders.items():

            async def invoice_final(order_id: str = order_id) -> dict[str, Any] | None:
                found = await client.get(f"{billing_url}/invoices/{order_id}")
                invoice: dict[str, Any] = found.json()
                want = "voided" if orders[order_id]["status"] == "rejected" else "issued"
                return invoice if found.status_code == 200 and invoice["status"] == want else None

            invoice = await eventually(invoice_final, within_s=30)
            assert invoice["total"] == order["total"]
            billed_by.add(invoice["instance_id"])
            reservation = (await client.get(f"{inventory_url}/reservations/{order_id}")).json()
            want = {"confirmed": "reserved", "rejected": "rejected"}[order["status"]]
            assert reservation["status"] == want

            # The customer heard that the order was received, and how it ended.
            async def told(order_id: str = order_id) -> list[str] | None:
                notes = await client.get(
                    f"{notification_url}/notifications", params={"order_id": order_id}
                )
                kinds = sorted(n["kind"] for n in notes.json())
                return kinds if len(kinds) == 2 else None

            assert await eventually(told, within_s=30) == sorted(["received", order["status"]])
        assert billed_by == {"billing-1", "billing-2"}
