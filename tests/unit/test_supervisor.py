"""`orderbus up`'s planning: replicas, ports, and what counts as a port in use."""

from __future__ import annotations

import json
import socket

import pytest

from orderbus.specs import own_settings
from orderbus.supervisor import (
    dashboard_line,
    parse_replicas,
    plan,
    port_free,
    print_table,
    with_admin_token,
)
from services.runtime.settings import SERVICES, ServiceName, ServiceSettings


def ports(**chosen: int) -> dict[ServiceName, int]:
    """Each service's port from its own settings, but those chosen (`notification=18203`)."""
    return {service: chosen.get(service, own_settings(service).port) for service in SERVICES}


def test_a_listening_port_is_in_use() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert not port_free("127.0.0.1", server.getsockname()[1])


def test_a_port_with_only_time_wait_connections_is_free() -> None:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end waits in TIME_WAIT
        client.close()
    assert port_free("127.0.0.1", port)


def test_replicas_take_the_next_free_ports() -> None:
    chosen = ports(order=18000, inventory=18001, billing=18002, notification=18003)
    instances = plan(ServiceSettings(), chosen, parse_replicas("billing=3"))
    billing = [(i.instance_id, i.port) for i in instances if i.service == "billing"]
    assert billing[0] == ("billing-1", 18002)
    assert [name for name, _ in billing] == ["billing-1", "billing-2", "billing-3"]
    assert all(port > 18003 for _, port in billing[1:])
    assert len({i.port for i in instances}) == len(instances)


@pytest.mark.parametrize("text", ["billing", "billing=0", "billing=17", "billing=x"])
def test_bad_replica_counts_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="SERVICE=N"):
        parse_replicas(text)


def test_up_makes_a_session_token_and_prints_it_only_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ORDERBUS_ADMIN_TOKEN", raising=False)
    settings = with_admin_token(ServiceSettings())
    assert settings.admin_token is not None
    token = settings.admin_token.get_secret_value()
    assert len(token) >= 16
    instances = plan(settings, ports(notification=18203), parse_replicas(None))
    line = dashboard_line(settings, instances)
    assert line == f"dashboard: http://127.0.0.1:18203/dashboard#token={token}"

    monkeypatch.setenv("ORDERBUS_ADMIN_TOKEN", "the-users-own-token-0123")
    mine = with_admin_token(ServiceSettings())
    assert mine.admin_token is not None
    assert mine.admin_token.get_secret_value() == "the-users-own-token-0123"
    line = dashboard_line(mine, instances)
    assert "the-users-own-token" not in line
    assert line.endswith("(controls: your ORDERBUS_ADMIN_TOKEN)")


def test_up_json_is_one_line_with_every_instance_and_the_same_token_rule(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ORDERBUS_ADMIN_TOKEN", raising=False)
    settings = with_admin_token(ServiceSettings())
    assert settings.admin_token is not None
    instances = plan(settings, ports(order=18200, notification=18203), parse_replicas("billing=2"))
    print_table(settings, instances, "json")
    (line,) = capsys.readouterr().out.splitlines()
    listing = json.loads(line)
    assert listing["backend"] == settings.bus.backend
    assert [(i["service"], i["instance"]) for i in listing["instances"]] == [
        (i.service, i.instance_id) for i in instances
    ]
    assert listing["instances"][0]["url"] == "http://127.0.0.1:18200"
    token = settings.admin_token.get_secret_value()
    assert listing["dashboard"] == f"http://127.0.0.1:18203/dashboard#token={token}"

    monkeypatch.setenv("ORDERBUS_ADMIN_TOKEN", "the-users-own-token-0123")
    mine = with_admin_token(ServiceSettings())
    print_table(mine, instances, "json")
    assert "the-users-own-token" not in capsys.readouterr().out
