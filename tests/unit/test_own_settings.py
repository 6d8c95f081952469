"""Each service's own settings (`services/<name>/settings.py`) read the same environment
variables as ever, under the service's prefix or the `ORDERBUS_` name it always had; the shared
ones stay in `ServiceSettings`. No value of a refused URL appears in the error."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orderbus.specs import create_app, own_settings, own_settings_model
from services.billing.settings import BillingSettings
from services.inventory.settings import InventorySettings
from services.notification.settings import NotificationSettings
from services.order.settings import OrderSettings
from services.runtime.settings import SERVICES, ServiceName, ServiceSettings, database_url

DEFAULT_PORTS: dict[ServiceName, int] = {
    "order": 8000,
    "inventory": 8001,
    "billing": 8002,
    "notification": 8003,
}
"""The contract's defaults (design.md: one port per service)."""


def test_the_table_of_services_knows_each_ones_model() -> None:
    models = [own_settings_model(service) for service in SERVICES]
    assert models == [OrderSettings, InventorySettings, BillingSettings, NotificationSettings]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_its_port_and_database_under_its_prefix(
    service: ServiceName, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in SERVICES:
        monkeypatch.delenv(f"{name.upper()}_PORT", raising=False)
        monkeypatch.delenv(f"{name.upper()}_DATABASE_URL", raising=False)
    shared = ServiceSettings(data_dir=tmp_path)
    default = own_settings(service)
    assert default.port == DEFAULT_PORTS[service]
    assert database_url(shared, default, service) == f"sqlite:///{tmp_path.resolve()}/{service}.db"

    monkeypatch.setenv(f"{service.upper()}_PORT", "18500")
    monkeypatch.setenv(f"{service.upper()}_DATABASE_URL", "postgresql+asyncpg://u:pw@db/x")
    found = own_settings(service)
    assert found.port == 18500
    assert database_url(shared, found, service) == "postgresql+asyncpg://u:pw@db/x"
    assert "pw" not in repr(found)
    others = {s: own_settings(s) for s in SERVICES if s != service}
    assert {s: (o.port, o.database_url) for s, o in others.items()} == {
        s: (DEFAULT_PORTS[s], None) for s in others
    }, "its own variables only"


def test_the_order_service_reads_its_timeout_and_rate_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDER_DECISION_TIMEOUT_S", "42")
    monkeypatch.setenv("ORDERBUS_RATE_LIMIT_PER_MINUTE", "7")
    monkeypatch.setenv("ORDERBUS_RATE_LIMIT_PER_CLIENT_PER_MINUTE", "70")
    monkeypatch.setenv("ORDERBUS_RATE_LIMIT_WINDOW_S", "30")
    monkeypatch.setenv("ORDERBUS_RATE_LIMIT_REDIS_URL", "rediss://:pw@cache:6380/1")
    found = OrderSettings()
    assert found.decision_timeout_s == 42
    assert (found.rate_limit_per_minute, found.rate_limit_per_client_per_minute) == (7, 70)
    assert found.rate_limit_window_s == 30
    assert found.rate_limit_redis_url is not None
    assert found.rate_limit_redis_url.get_secret_value() == "rediss://:pw@cache:6380/1"


def test_notification_reads_the_origins_its_websocket_admits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERBUS_WS_ALLOWED_ORIGINS", "https://shop.example")
    assert NotificationSettings().ws_allowed_origins == "https://shop.example"


def test_a_bad_rate_limit_redis_url_names_the_variable_not_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERBUS_RATE_LIMIT_REDIS_URL", "http://admin:s3cr3t@cache:6379/0")
    with pytest.raises(ValidationError) as caught:
        OrderSettings()
    message = str(caught.value)
    assert "ORDERBUS_RATE_LIMIT_REDIS_URL must start redis://" in message
    assert "s3cr3t" not in message
    assert "cache" not in message


def test_a_bad_port_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_PORT", "70000")
    with pytest.raises(ValidationError, match="port") as caught:
        BillingSettings()
    assert "70000" not in str(caught.value), "hide_input_in_errors, as every settings model"


def test_a_service_refuses_another_ones_settings(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="order takes OrderSettings, not BillingSettings"):
        create_app("order", ServiceSettings(data_dir=tmp_path), own=BillingSettings())
