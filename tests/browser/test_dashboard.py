"""The live dashboard in a real headless Chromium, against `orderbus up` as a user runs it.

On memory: the page loads without a console error, placed orders appear in every service's
lane, and a forced billing failure shows its retries, then its dead letter. On Redis Streams
with two billing replicas: the two billing lanes split the orders while the other services
each see all of them, fan-out and competing consumers side by side.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orderbus.soak import pid_of_port
from tests.brokers import Kind
from tests.browser.chromium import chromium_page, screenshot
from tests.e2e.system import System, orderbus_up, remove_system_topology

pytestmark = pytest.mark.timeout(180)

TOKEN = "browser-test-token-" + uuid.uuid4().hex
GROUPS = ["inventory", "billing", "notification"]


@pytest.fixture
def admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERBUS_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("ORDERBUS_ACTIVITY", "true")
    # Quick retries, so a forced failure reaches the dead-letter queue in a second or so.
    monkeypatch.setenv("BUS_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("BUS_RETRY_BACKOFF_MS", "100")
    monkeypatch.setenv("BUS_REDELIVERY_AFTER_MS", "500")


def lane_chips(outcome: str, instance: str, event_type: str = "order_created") -> str:
    return (
        f'.lane[data-instance="{instance}"] '
        f'.chip[data-outcome="{outcome}"][data-type="{event_type}"]'
    )


def count_in(instance: str, outcome: str = "handled", event_type: str = "order_created") -> str:
    return f"document.querySelectorAll('{lane_chips(outcome, instance, event_type)}').length"


@pytest.fixture
def memory_system(admin_env: None, tmp_path: Path) -> Iterator[System]:
    url = f"memory://{uuid.uuid4().hex[:8]}"
    with orderbus_up("memory", url, tmp_path) as running:
        yield running


def test_orders_appear_in_lanes_and_a_failure_goes_to_the_dead_letters(
    memory_system: System,
) -> None:
    with chromium_page() as (page, errors):
        page.goto(f"{memory_system.url('notification-1')}/dashboard#token={TOKEN}")
        for instance in ("order-1", "inventory-1", "billing-1", "notification-1"):
            page.wait_for_selector(f'.lane[data-instance="{instance}"]')
        page.wait_for_selector("#connection.on")
        assert page.inner_text("#backend") == "backend: memory"
        assert "token" not in page.url, "the token leaves the address bar"

        page.fill("#order-count", "4")
        page.click("#place button")
        page.wait_for_function(
            "document.querySelector('#result').textContent === 'placed 4 order(s)'"
        )
        for instance in ("inventory-1", "billing-1", "notification-1"):
            page.wait_for_function(f"{count_in(instance)} === 4")
        page.wait_for_function(f"{count_in('order-1', 'published')} === 4")
        # The saga: the order service hears both answers and confirms each order.
        page.wait_for_function(f"{count_in('order-1', 'published', 'order_confirmed')} === 4")
        page.wait_for_function(f"{count_in('notification-1', 'handled', 'order_confirmed')} === 4")

        page.select_option("#fail-service", "billing")
        page.fill("#fail-count", "1")
        page.click("#fail button")
        page.wait_for_function("document.querySelector('#result').textContent.includes('fail')")
        page.fill("#order-count", "1")
        page.click("#place button")
        # Attempts 1 and 2 fail and are retried; attempt 3 fails and is dead-lettered...
        page.wait_for_function(f"{count_in('billing-1', 'failed')} === 2")
        page.wait_for_selector(lane_chips("dead_lettered", "billing-1"))
        assert page.inner_text(lane_chips("dead_lettered", "billing-1")).split()[3] == "#3"
        # ...while inventory and notification handled that order as usual,
        page.wait_for_function(f"{count_in('inventory-1')} === 5")
        # and the queue table shows the dead letter.
        page.wait_for_function(
            "document.querySelector('tr[data-service=billing] td[data-dead-letters]')"
            ".textContent === '1'",
            timeout=15_000,
        )
        # Billing processed 4 of the 5 published; the fifth is in its dead letters.
        page.wait_for_function(
            "[...document.querySelectorAll('tr[data-service=billing] td')]"
            ".map(td => td.textContent).join(' ') === 'billing 5 4 0 - 1'",
            timeout=15_000,
        )
        # Every push reached this page through the relay: five orders received, four confirmed
        # (the fifth has no invoice: its order_created is billing's dead letter).
        page.wait_for_function("document.querySelectorAll('#pushes li').length === 9")
        screenshot(page, "dashboard-memory.png")
        assert errors == []


@pytest.fixture
def streams_system(
    admin_env: None,
    broker_url: Callable[[Kind], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[System]:
    monkeypatch.setenv("BUS_PREFETCH", "1")  # one at a time: the replicas take turns
    url = broker_url("redis")
    asyncio.run(remove_system_topology("redis-streams", url, GROUPS))
    with orderbus_up("redis-streams", url, tmp_path, "--replicas", "billing=2") as running:
        yield running
    asyncio.run(remove_system_topology("redis-streams", url, GROUPS))


def test_billing_replicas_split_the_orders_while_services_fan_out(
    streams_system: System,
) -> None:
    with chromium_page() as (page, errors):
        page.goto(f"{streams_system.url('notification-1')}/dashboard#token={TOKEN}")
        page.wait_for_selector('.lane[data-instance="billing-2"]')
        page.wait_for_selector("#connection.on")
        page.fill("#order-count", "20")
        page.click("#place button")
        for instance in ("inventory-1", "notification-1"):
            page.wait_for_function(f"{count_in(instance)} === 20", timeout=30_000)
        page.wait_for_function(
            f"{count_in('billing-1')} + {count_in('billing-2')} === 20", timeout=30_000
        )
        split = [page.evaluate(count_in(f"billing-{n}")) for n in (1, 2)]
        assert min(split) > 0, f"both billing replicas took a share: {split}"
        # The queue table catches up: all 20 published and processed by billing.
        page.wait_for_function(
            "[...document.querySelectorAll('tr[data-service=billing] td')]"
            ".map(td => td.textContent).join(' ') === 'billing 20 20 0 0 0'",
            timeout=15_000,
        )
        screenshot(page, "dashboard-redis-streams.png")
        assert errors == []


def test_the_page_reconnects_and_resubscribes_after_its_instance_dies(
    streams_system: System,
) -> None:
    notification = streams_system.url("notification-1")
    with chromium_page() as (page, errors):
        page.goto(f"{notification}/dashboard#token={TOKEN}")
        page.wait_for_selector("#connection.on")
        pid = pid_of_port(int(notification.rsplit(":", 1)[1]))
        assert pid is not None, "notification-1 is not running"
        os.kill(pid, signal.SIGKILL)  # the page's server dies with its connections
        page.wait_for_selector("#connection.off")
        # `orderbus up` restarts it, as a container would; the page connects again and asks
        # for its feeds again: a new connection knows nothing of the old one's subscriptions.
        page.wait_for_selector("#connection.on", timeout=60_000)
        before = page.evaluate(count_in("inventory-1"))
        page.fill("#order-count", "3")
        page.click("#place button")
        page.wait_for_function(f"{count_in('inventory-1')} === {before + 3}", timeout=30_000)
        # The browser logs the refused connections while the server is down; nothing else.
        assert [e for e in errors if "WebSocket" not in e and "ERR_CONNECTION" not in e] == []
