"""Scenario 7: the order saga. The four services run in this process on the demo's backend,
each with its own temporary SQLite database and the run's own names; orders of the scarce
product run out of stock, and the table per order shows how each ended and what was undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from bus import BACKENDS, backend_info
from contracts.catalogue import CATALOGUE
from orderbus.demo.flow import WAIT_S
from orderbus.demo.stage import Cell, Outcome, Stage, Table, poll, short
from orderbus.specs import create_app, own_settings
from services.console.controls import PlaceOrders, order_body
from services.runtime.settings import SERVICES, OwnSettings, ServiceName, ServiceSettings

Clients = dict[ServiceName, httpx.AsyncClient]
ORDERS = [PlaceOrders(customer_id="demo"), *[PlaceOrders(customer_id="demo", scarce=True)] * 3]
"""One order of a plentiful product, then three of the scarce one: two take its stock."""
DURABLE = ", ".join(b for b in BACKENDS if backend_info(b).capabilities.offline_catch_up)
"""Where the saga is proven through every fault (tests/e2e/test_saga.py)."""


@contextlib.asynccontextmanager
async def running_services(stage: Stage, data_dir: Path) -> AsyncIterator[Clients]:
    # activity off: the live dashboard's heartbeat, nobody watches it here.
    base = ServiceSettings(data_dir=data_dir, bus=stage.settings, activity=False)
    apps = {
        s: create_app(
            s,
            base.model_copy(update={"instance_id": f"{s}-1"}),
            stage.system_bus,
            own=_own(s),
        )
        for s in SERVICES
    }
    async with contextlib.AsyncExitStack() as stack:
        # All at once: on Kafka each group's first join takes seconds (the rebalance delay).
        started = await asyncio.gather(
            *(stack.enter_async_context(a.router.lifespan_context(a)) for a in apps.values()),
            return_exceptions=True,
        )
        for failure in started:
            if isinstance(failure, BaseException):
                raise failure
        clients: Clients = {}
        for service, app in apps.items():
            transport = httpx.ASGITransport(app=app)
            clients[service] = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url=f"http://{service}")
            )
        yield clients


def _own(service: ServiceName) -> OwnSettings:
    """The service's own settings, on the temporary SQLite file, and without a rate limit."""
    update: dict[str, Any] = {"database_url": None}
    if service == "order":
        update |= {"rate_limit_per_minute": 0, "rate_limit_per_client_per_minute": 0}
    return own_settings(service).model_copy(update=update)


async def saga(stage: Stage) -> Outcome:
    outcome = Outcome(7, f"The saga: {len(ORDERS)} orders confirmed, or rejected and compensated")
    with tempfile.TemporaryDirectory(prefix="orderbus-demo-") as data_dir:
        async with running_services(stage, Path(data_dir)) as clients:
            order_ids = []
            for order in ORDERS:
                placed = await clients["order"].post("/orders", json=order_body(order))
                placed.raise_for_status()
                order_ids.append(placed.json()["order_id"])

            async def settled() -> bool:
                return all([await ended(clients, order_id) for order_id in order_ids])

            await poll(settled, WAIT_S)
            reports = [await report(clients, order_id) for order_id in order_ids]
            stock = (await clients["inventory"].get("/stock")).json()
    outcome.tables = [table for table, _ in reports]
    facts = [fact for _, fact in reports]
    ordered = {line["sku"] for _, fact in reports for line in fact["items"]}
    initial = {p.sku: p.initial_stock for p in CATALOGUE}
    outcome.tables.append(
        Table(
            "stock after the saga",
            ("sku", "initial", "reserved", "available"),
            [
                (s["sku"], initial[s["sku"]], s["reserved"], s["available"])
                for s in stock
                if s["sku"] in ordered
            ],
        )
    )
    count = {s: sum(1 for f in facts if f["status"] == s) for s in ("confirmed", "rejected")}
    outcome.facts = {
        **count,
        "pending": len(facts) - sum(count.values()),
        "voided": sum(1 for f in facts if f["invoice"] == "voided"),
        "held_for_rejected": sum(f["held"] for f in facts if f["status"] == "rejected"),
        "told": sum(1 for f in facts if f["told"]),
    }
    outcome.lesson = lesson(stage, outcome.facts)
    return outcome


async def ended(clients: Clients, order_id: str) -> bool:
    """Whether the order is decided and every service has done its part, undoing included."""
    status = (await clients["order"].get(f"/orders/{order_id}")).json()["status"]
    if status == "pending":
        return False
    invoice = (await clients["billing"].get(f"/invoices/{order_id}")).json()
    notes = await clients["notification"].get("/notifications", params={"order_id": order_id})
    told = {n["kind"] for n in notes.json()} == {"received", status}
    if status == "confirmed":
        return told and invoice.get("status") == "issued"
    handled = await clients["inventory"].get("/processed", params={"order_id": order_id})
    released = any(r["type"] == "order_rejected" for r in handled.json()["processed"])
    return told and released and invoice.get("status") == "voided"


async def report(clients: Clients, order_id: str) -> tuple[Table, dict[str, Any]]:
    """The order's table, each row as that service answers now: the order's history, with
    the steps of inventory and billing it was decided on, what they undid, and what the
    customer was told."""
    order = (await clients["order"].get(f"/orders/{order_id}")).json()
    invoice = (await clients["billing"].get(f"/invoices/{order_id}")).json()
    reservation = (await clients["inventory"].get(f"/reservations/{order_id}")).json()
    notes = await clients["notification"].get("/notifications", params={"order_id": order_id})
    kinds = [n["kind"] for n in reversed(notes.json())]  # oldest first
    status, reserved = order["status"], reservation.get("status")
    items = ", ".join(f"{i['quantity']} x {i['sku']}" for i in order["items"])
    first, *decided = [
        ("order", step["event_type"], ": ".join(filter(None, (step["status"], step["reason"]))))
        for step in order["history"]
    ]
    rows: list[tuple[Cell, ...]] = [first]
    rows.append(("inventory", "order_created", RESERVE.get(reserved, "nothing yet")))
    if "invoice_id" in invoice:
        issued = f"invoice issued: {invoice['total']} {invoice['currency']}"
        rows.append(("billing", "order_created", issued))
    rows += decided
    if status == "rejected":
        voided = invoice.get("status") == "voided"
        undone = "compensation: invoice voided" if voided else "invoice NOT voided"
        rows.append(("billing", "order_rejected", undone))
        rows.append(("inventory", "order_rejected", RELEASE.get(reserved, "nothing yet")))
    if kinds:
        rows.append(("notification", f"order_{status}", f"told the customer: {', '.join(kinds)}"))
    held = sum(int(i["quantity"]) for i in order["items"]) if reserved == "reserved" else 0
    fact = {
        "status": status,
        "items": order["items"],
        "invoice": invoice.get("status"),
        "held": held,
        "told": kinds[-1:] == [status],
    }
    return Table(f"order {short(order_id)} ({items}): {status}", HEADERS, rows), fact


HEADERS = ("service", "on", "did")
RESERVE = {
    "reserved": "stock reserved",
    "released": "stock reserved",  # then given back: see its row on order_rejected
    "rejected": "short of stock: reserved nothing",
    "cancelled": "came after the rejection: reserved nothing",
}
RELEASE = {
    "released": "compensation: reserved stock released",
    "rejected": "compensation: none needed, it reserved nothing (all lines or none)",
    "cancelled": "compensation: recorded first, so nothing will be reserved",
    "reserved": "stock still HELD for a rejected order",
}
"""What inventory did, by its reservation's status: on `order_created`, on `order_rejected`."""


def lesson(stage: Stage, facts: dict[str, int]) -> str:
    backend = stage.settings.backend
    unfinished = (
        facts["pending"] or facts["voided"] < facts["rejected"] or facts["held_for_rejected"]
    )
    if unfinished or facts["told"] < len(ORDERS):
        return (
            f"not finished within {WAIT_S:.0f}s on {backend} (see the tables): the saga needs "
            f"every event delivered, so an answer lost leaves its order or its compensation "
            f"undone for good. It is proven on {DURABLE} (tests/e2e/test_saga.py)."
        )
    said = (
        f"choreography: each service did its step and answered; the order service decided "
        f"from the facts ({facts['confirmed']} confirmed, {facts['rejected']} rejected) and, "
        f"for each rejection, billing voided the invoice and inventory holds nothing, so "
        f"nothing is charged or held. How and why: docs/saga.md"
    )
    if backend == "redis-pubsub":
        said += (
            f". It finished because every service was online throughout: on {backend} an "
            "answer published while a service is away or restarting is lost, and its order "
            f"stays pending for good; the saga is proven on {DURABLE} (tests/e2e/test_saga.py)"
        )
    return said + "."
