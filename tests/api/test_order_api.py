"""`POST /orders`: good orders publish once; bad input is refused and leaves no trace."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import httpx
import pytest

from contracts import OrderCreated
from orderbus.asyncapi import document
from tests.integration.conftest import Recorder
from tests.polling import eventually

GOOD: dict[str, Any] = {"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 2}]}


async def place(client: httpx.AsyncClient, body: Any = GOOD, **headers: str) -> httpx.Response:
    return await client.post("/orders", json=body, headers=headers)


async def assert_nothing_written_or_published(
    client: httpx.AsyncClient, published: Recorder
) -> None:
    """A good order after the bad ones: once its event arrives, nothing else came before it."""
    marker = (await place(client)).json()["order_id"]
    await published.wait_until(lambda: any(e.subject == marker for e in _events(published)))
    assert [e.subject for e in _events(published)] == [marker]
    page = (await client.get("/orders")).json()
    assert page["total"] == 1
    assert [o["order_id"] for o in page["orders"]] == [marker]


def _events(published: Recorder) -> list[Any]:
    return [event for event, _ in published.received]


async def test_an_order_is_accepted_stored_and_published_once(
    order_client: httpx.AsyncClient, published: Recorder
) -> None:
    response = await place(
        order_client,
        {
            "customer_id": "alice",
            "items": [{"sku": "KB-001", "quantity": 2}, {"sku": "CB-005", "quantity": 3}],
        },
    )

    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "pending"
    order_id = accepted["order_id"]
    await published.wait_for_count(1)
    event = _events(published)[0]
    assert event.type == "order_created"
    assert event.subject == order_id
    assert event.source == "/services/order"
    assert event.dataschema == "urn:orderbus:schema:order_created:1"
    order = OrderCreated.model_validate(event.data)
    assert order.total == Decimal("207.70")  # 2 x 89.00 + 3 x 9.90, priced by the catalogue
    assert [i.unit_price for i in order.items] == [Decimal("89.00"), Decimal("9.90")]

    stored = (await order_client.get(f"/orders/{order_id}")).json()
    assert stored["total"] == "207.70"
    assert stored["status"] == "pending"
    assert [(i["sku"], i["quantity"]) for i in stored["items"]] == [("KB-001", 2), ("CB-005", 3)]


async def test_correlation_id_header_travels_in_the_event(
    order_client: httpx.AsyncClient, published: Recorder
) -> None:
    await place(order_client, **{"X-Correlation-ID": "req-42"})
    await published.wait_for_count(1)
    assert _events(published)[0].correlationid == "req-42"


def many_items(n: int) -> list[dict[str, Any]]:
    return [{"sku": "KB-001", "quantity": 1}] * n


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"items": [{"sku": "KB-001", "quantity": 1}]}, "customer_id", "Field required"),
        ({"customer_id": "alice"}, "items", "Field required"),
        ({"customer_id": 7, "items": [{"sku": "KB-001", "quantity": 1}]}, "customer_id", "string"),
        (
            {"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": "two"}]},
            "items.0.quantity",
            "integer",
        ),
        (
            {"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 0}]},
            "items.0.quantity",
            "greater than or equal to 1",
        ),
        (
            {"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": -3}]},
            "items.0.quantity",
            "greater than or equal to 1",
        ),
        (
            {"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1001}]},
            "items.0.quantity",
            "less than or equal to 1000",
        ),
        (
            {"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 10**30}]},
            "items.0.quantity",
            "less than or equal to 1000",
        ),
        ({"customer_id": "alice", "items": []}, "items", "at least 1 item"),
        ({"customer_id": "alice", "items": many_items(101)}, "items", "at most 100 items"),
        (
            {"customer_id": "alice", "items": [{"sku": "no such", "quantity": 1}]},
            "items.0.sku",
            "pattern",
        ),
        (
            {"customer_id": "alice", "items": [{"sku": "ZZ-999", "quantity": 1}]},
            "items.0.sku",
            "unknown sku 'ZZ-999'",
        ),
        (
            {"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}], "coupon": "X"},
            "coupon",
            "Extra inputs are not permitted",
        ),
        (
            {"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1, "price": 0}]},
            "items.0.price",
            "Extra inputs are not permitted",
        ),
        (
            {"customer_id": "alice bob", "items": [{"sku": "KB-001", "quantity": 1}]},
            "customer_id",
            "pattern",
        ),
        (["not", "an", "object"], "body", "valid dictionary"),
    ],
)
async def test_bad_input_is_refused_naming_the_field(
    order_client: httpx.AsyncClient,
    published: Recorder,
    body: Any,
    field: str,
    reason: str,
) -> None:
    response = await place(order_client, body)

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert any(e["field"] == field and reason in e["reason"] for e in errors), errors
    await assert_nothing_written_or_published(order_client, published)


async def test_malformed_json_is_refused(
    order_client: httpx.AsyncClient, published: Recorder
) -> None:
    response = await order_client.post(
        "/orders",
        content=b'{"customer_id": "alice", "items": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"
    assert "JSON" in response.json()["errors"][0]["reason"]
    await assert_nothing_written_or_published(order_client, published)


@pytest.mark.parametrize(
    ("content", "content_type", "reason"),
    [
        (
            b'{"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}]}',
            "text/plain",
            "valid dictionary",
        ),
        (
            b'{"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}]}',
            None,
            "valid dictionary",
        ),
        (b'{"customer_id": "\xff\xfe"}', "application/json", "JSON"),
        (b"", "application/json", "Field required"),
        (b"[" * 5_000, "application/json", "JSON"),
    ],
    ids=["another-type", "no-type", "not-utf8", "empty", "too-deep"],
)
async def test_a_body_that_is_not_a_json_order_is_refused(
    order_client: httpx.AsyncClient,
    published: Recorder,
    content: bytes,
    content_type: str | None,
    reason: str,
) -> None:
    """As FastAPI reads a body for any other route: JSON only when its type says so."""
    headers = {} if content_type is None else {"content-type": content_type}
    response = await order_client.post("/orders", content=content, headers=headers)

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "body"
    assert reason in error["reason"]
    await assert_nothing_written_or_published(order_client, published)


async def test_a_json_subtype_with_parameters_is_read_as_json(
    order_client: httpx.AsyncClient,
) -> None:
    response = await order_client.post(
        "/orders",
        content=json.dumps(GOOD).encode(),
        headers={"content-type": "application/vnd.orderbus+json; charset=utf-8"},
    )
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    assert response.json()["status"] == "pending"


async def test_bad_headers_and_a_bad_body_are_refused_together(
    order_client: httpx.AsyncClient,
) -> None:
    response = await place(
        order_client,
        {"customer_id": "alice", "items": []},
        **{"Idempotency-Key": "has space", "X-Correlation-ID": "x" * 129},
    )
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["Idempotency-Key", "X-Correlation-ID", "items"]


async def test_a_body_that_is_not_json_is_the_one_error_even_with_a_bad_header(
    order_client: httpx.AsyncClient,
) -> None:
    response = await order_client.post(
        "/orders",
        content=b"{",
        headers={"content-type": "application/json", "Idempotency-Key": "has space"},
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body"]


async def test_the_order_route_is_documented_by_its_parameters(
    order_client: httpx.AsyncClient,
) -> None:
    """`POST /orders` is answered without FastAPI's per-request machinery
    (`services.runtime.http.answered_by`); its OpenAPI entry still comes from its signature."""
    spec = (await order_client.get("/openapi.json")).json()
    operation = spec["paths"]["/orders"]["post"]

    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/PlaceOrder"}
    assert {(p["in"], p["name"]) for p in operation["parameters"]} == {
        ("header", "Idempotency-Key"),
        ("header", "X-Correlation-ID"),
    }
    accepted = operation["responses"]["202"]["content"]["application/json"]["schema"]
    assert accepted == {"$ref": "#/components/schemas/OrderAccepted"}
    assert {"413", "422", "429"} <= operation["responses"].keys()


async def test_a_one_megabyte_body_is_refused_unread(
    order_client: httpx.AsyncClient, published: Recorder
) -> None:
    huge = {
        "customer_id": "alice",
        "items": [{"sku": "KB-001", "quantity": 1}],
        "padding": "x" * 1_048_576,
    }
    response = await place(order_client, huge)
    assert response.status_code == 413
    assert response.json()["errors"] == [{"field": "body", "reason": "larger than 65536 bytes"}]
    await assert_nothing_written_or_published(order_client, published)


async def test_a_chunked_body_over_the_limit_is_refused(
    order_client: httpx.AsyncClient, published: Recorder
) -> None:
    async def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 4_096

    response = await order_client.post(
        "/orders", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    await assert_nothing_written_or_published(order_client, published)


async def test_the_same_idempotency_key_gives_the_same_order_and_one_event(
    order_client: httpx.AsyncClient, published: Recorder
) -> None:
    first = await place(order_client, **{"Idempotency-Key": "key-1"})
    again = await place(order_client, **{"Idempotency-Key": "key-1"})

    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    order_id = first.json()["order_id"]
    await assert_idempotent_single_event(order_client, published, order_id)


async def assert_idempotent_single_event(
    client: httpx.AsyncClient, published: Recorder, order_id: str
) -> None:
    marker = (await place(client)).json()["order_id"]
    await published.wait_until(lambda: any(e.subject == marker for e in _events(published)))
    assert [e.subject for e in _events(published)].count(order_id) == 1
    assert (await client.get("/orders")).json()["total"] == 2


async def test_concurrent_orders_with_a_raced_idempotency_key_each_get_their_answer(
    order_client: httpx.AsyncClient, published: Recorder
) -> None:
    # Orders placed at the same moment share a transaction (services/order/writer.py). Two of
    # them race on one Idempotency-Key: the batch fails on it, and must still commit the
    # others, while both racers get the one order that won.
    racers = [place(order_client, **{"Idempotency-Key": "raced"}) for _ in range(2)]
    others = [place(order_client, {**GOOD, "customer_id": f"c{n}"}) for n in range(10)]
    responses = await asyncio.gather(*racers, *others)

    assert [r.status_code for r in responses] == [202] * 12
    raced = {r.json()["order_id"] for r in responses[:2]}
    assert len(raced) == 1, "both racers are answered with the order that won"
    placed = raced | {r.json()["order_id"] for r in responses[2:]}
    assert len(placed) == 11
    await published.wait_until(lambda: placed <= {e.subject for e in _events(published)})
    assert sorted(e.subject for e in _events(published)) == sorted(placed), "one event each"
    page = (await order_client.get("/orders", params={"limit": 50})).json()
    assert {o["order_id"] for o in page["orders"]} == placed


async def test_an_idempotency_key_reused_for_another_order_is_refused(
    order_client: httpx.AsyncClient, published: Recorder
) -> None:
    first = await place(order_client, **{"Idempotency-Key": "key-2"})
    other = {"customer_id": "alice", "items": [{"sku": "MS-002", "quantity": 1}]}
    reused = await place(order_client, other, **{"Idempotency-Key": "key-2"})

    assert reused.status_code == 422
    assert reused.json()["errors"][0]["field"] == "Idempotency-Key"
    await assert_idempotent_single_event(order_client, published, first.json()["order_id"])


async def test_an_idempotency_key_is_one_customers_own(
    order_client: httpx.AsyncClient,
) -> None:
    """Another customer using (or guessing) the same key neither gets alice's order back nor
    is refused: the key means something only with its customer."""
    alices = await place(order_client, **{"Idempotency-Key": "shared-key"})
    bobs_order = {"customer_id": "bob", "items": [{"sku": "MS-002", "quantity": 1}]}
    bobs = await place(order_client, bobs_order, **{"Idempotency-Key": "shared-key"})
    assert (alices.status_code, bobs.status_code) == (202, 202)
    assert bobs.json()["order_id"] != alices.json()["order_id"]
    again = await place(order_client, bobs_order, **{"Idempotency-Key": "shared-key"})
    assert again.json() == bobs.json()


async def test_a_malformed_idempotency_key_is_refused(order_client: httpx.AsyncClient) -> None:
    response = await place(order_client, **{"Idempotency-Key": "x" * 129})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_orders_are_paged(order_client: httpx.AsyncClient) -> None:
    ids = [(await place(order_client)).json()["order_id"] for _ in range(3)]

    first = (await order_client.get("/orders", params={"limit": 2})).json()
    rest = (await order_client.get("/orders", params={"limit": 2, "offset": 2})).json()

    assert first["total"] == rest["total"] == 3
    assert len(first["orders"]) == 2
    assert len(rest["orders"]) == 1
    assert sorted(o["order_id"] for o in first["orders"] + rest["orders"]) == sorted(ids)
    assert (await order_client.get("/orders", params={"limit": 0})).status_code == 422


async def test_unknown_and_malformed_order_ids(order_client: httpx.AsyncClient) -> None:
    missing = await order_client.get("/orders/6f1c7f5e-7a52-4f7e-9a53-0ad1a1d0b0c1")
    assert missing.status_code == 404
    malformed = await order_client.get("/orders/not-a-uuid")
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "order_id"


async def published_line(client: httpx.AsyncClient) -> str | None:
    metrics = (await client.get("/metrics")).text
    prefix = "orderbus_events_published_total{"
    return next((m for m in metrics.splitlines() if m.startswith(prefix)), None)


async def test_products_health_ready_metrics(
    order_client: httpx.AsyncClient, published: Recorder
) -> None:
    products = (await order_client.get("/products")).json()
    assert {"sku": "KB-001", "name": "Mechanical keyboard", "unit_price": "89.00"} in products
    assert (await order_client.get("/health")).json()["status"] == "ok"
    ready = (await order_client.get("/ready")).json()
    assert ready["checks"] == {"database": True, "broker": True}

    await place(order_client)
    # The relay counts a publish after marking its outbox row: poll until it has.
    line = await eventually(lambda: published_line(order_client))
    assert 'service="order"' in line
    assert 'type="order_created"' in line
    assert line.endswith(" 1.0")


async def test_asyncapi_is_served_as_json_and_as_a_page_without_scripts(
    order_client: httpx.AsyncClient,
) -> None:
    served = await order_client.get("/asyncapi.json")
    assert served.status_code == 200
    assert served.json() == document("redis-streams")  # memory shows the default broker's
    page = await order_client.get("/asyncapi")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "order_created.billing" not in page.text  # redis-streams: groups, not queues
    assert "as group billing" in page.text
    assert "OrderCreatedEvent" in page.text
    # Renders offline: nothing is fetched from anywhere.
    assert "<script" not in page.text
    assert "http://" not in page.text
    assert "https://" not in page.text


async def test_publishing_logs_one_line_with_the_event_fields(
    order_client: httpx.AsyncClient, published: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    answer = await order_client.post(
        "/orders",
        json={"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}]},
        headers={"X-Correlation-ID": "corr-logs-1"},
    )
    assert answer.status_code == 202
    await published.wait_for_count(1)
    [event] = [e for e, _ in published.received]

    async def publish_line() -> logging.LogRecord | None:
        lines = [r for r in caplog.records if getattr(r, "action", None) == "publish"]
        return lines[0] if lines else None

    line = await eventually(publish_line, within_s=5)
    assert line.event_id == str(event.id)  # type: ignore[attr-defined]
    assert line.correlation_id == "corr-logs-1"  # type: ignore[attr-defined]
    assert line.service == "order"  # type: ignore[attr-defined]


async def test_outbox_backlog_counts_what_the_relay_could_not_publish(
    order_client: httpx.AsyncClient, published: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = order_client._transport
    assert isinstance(transport, httpx.ASGITransport)
    runtime = transport.app.state.runtime  # type: ignore[attr-defined]
    real_publish_many = runtime.bus.publish_many

    async def broker_down(
        events: Sequence[object], *, stored: object = None
    ) -> list[BaseException | None]:
        return [ConnectionError("broker down")] * len(events)

    async def backlog_is(rows: float) -> str | None:
        text = (await order_client.get("/metrics")).text
        lines = [m for m in text.splitlines() if m.startswith("orderbus_outbox_backlog{")]
        return lines[0] if lines and float(lines[0].rsplit(" ", 1)[1]) == rows else None

    monkeypatch.setattr(runtime.bus, "publish_many", broker_down)
    for _ in range(2):
        answer = await order_client.post(
            "/orders", json={"customer_id": "alice", "items": [{"sku": "KB-001", "quantity": 1}]}
        )
        assert answer.status_code == 202
    line = await eventually(lambda: backlog_is(2), within_s=5)
    assert 'service="order"' in line
    monkeypatch.setattr(runtime.bus, "publish_many", real_publish_many)
    runtime.relay.wake.set()
    await published.wait_for_count(2)
    await eventually(lambda: backlog_is(0), within_s=5)
