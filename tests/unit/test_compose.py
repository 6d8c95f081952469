"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The compose file must be valid Compose (the Compose Specification's JSON Schema, copied into
tests/data so a clean clone has it), use the image tags the test fixtures pin, set only
variables the settings models read, and run only commands the CLI has.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from bus import BACKENDS, BusSettings
from orderbus.cli import build_parser
from orderbus.specs import check_service, own_settings_model
from services.runtime.settings import SERVICES, ServiceSettings
from tests.brokers import BACKEND_KIND, IMAGES, POSTGRES_IMAGE
from tests.docker.conftest import DEFAULT_PYTHON_IMAGE

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SCHEMA = json.loads((ROOT / "tests/data/compose-spec.json").read_text())
BROKER_BACKENDS = [name for name in BACKENDS if BACKEND_KIND[name] is not None]
APP_SERVICES = {
    name: spec
    for name, spec in COMPOSE["services"].items()
    if spec.get("command", [""])[0] == "run"
}


def env_names(model: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings model reads (aliases included), upper-cased."""
    prefix = str(model.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings):
            continue  # a nested model reads its own variables
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


SETTINGS_ENV = set().union(
    env_names(BusSettings),
    env_names(ServiceSettings),
    *(env_names(own_settings_model(service)) for service in SERVICES),
)


def env_file(backend: str, service: str = "order") -> dict[str, str]:
    lines = (ROOT / f"deploy/bus/{backend}/{service}.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_compose_file_is_valid_compose() -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(COMPOSE)


def test_env_names_of_the_settings_models_include_aliases() -> None:
    assert {"BUS_BACKEND", "BUS_URL", "INSTANCE_ID", "BILLING_DATABASE_URL"} <= SETTINGS_ENV
    assert {"ORDER_PORT", "ORDER_DECISION_TIMEOUT_S", "ORDERBUS_WS_ALLOWED_ORIGINS"} <= SETTINGS_ENV
    assert {"ORDERBUS_HOST", "ORDERBUS_DATA_DIR", "ORDERBUS_OUTBOX_POLL_S"} <= SETTINGS_ENV
    assert "BUS" not in SETTINGS_ENV
    assert "HOST" not in SETTINGS_ENV


def test_brokers_use_the_images_the_tests_pin() -> None:
    """Each image a variable, the one the fixture layer reads, with the pinned tag as default."""
    services = COMPOSE["services"]
    for kind, image in [*IMAGES.items(), ("postgres", POSTGRES_IMAGE)]:
        assert services[kind]["image"] == f"${{ORDERBUS_{kind.upper()}_IMAGE:-{image}}}", kind
    build = COMPOSE["x-service"]["build"]
    assert build["args"]["PYTHON_IMAGE"] == f"${{PYTHON_IMAGE:-{DEFAULT_PYTHON_IMAGE}}}"


def test_every_service_runs_from_the_image_with_a_cli_command() -> None:
    assert set(APP_SERVICES) == set(SERVICES)
    for name, spec in APP_SERVICES.items():
        args = build_parser().parse_args(spec["command"])
        assert args.command == "run"
        assert check_service(args.service) == name


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_set_on_a_service_is_a_setting(service: str) -> None:
    spec = APP_SERVICES[service]
    assert set(spec["environment"]) <= SETTINGS_ENV, set(spec["environment"]) - SETTINGS_ENV
    [template] = spec["env_file"]
    assert template == f"deploy/bus/${{COMPOSE_PROFILES:-redis-streams}}/{service}.env"


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("backend", BROKER_BACKENDS)
def test_each_broker_backend_has_a_profile_and_a_valid_bus_env_file(
    backend: str, service: str
) -> None:
    values = env_file(backend, service)
    assert set(values) <= SETTINGS_ENV
    assert values["BUS_BACKEND"] == backend
    BusSettings(backend=values["BUS_BACKEND"], url=values["BUS_URL"])  # a URL it accepts
    kind = BACKEND_KIND[backend]
    assert kind is not None
    assert backend in COMPOSE["services"][kind]["profiles"]
    host = re.split(r"[@/:]", values["BUS_URL"].split("//", 1)[1].split("@")[-1])[0]
    assert host == kind  # the broker's service name on the compose network


def test_default_profile_is_a_backend() -> None:
    dotenv = dict(
        line.split("=", 1)
        for line in (ROOT / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert dotenv["COMPOSE_PROFILES"] in BROKER_BACKENDS


def test_services_wait_for_healthy_dependencies() -> None:
    services: dict[str, Any] = COMPOSE["services"]
    for name, spec in APP_SERVICES.items():
        assert "healthcheck" in spec, name
        for dependency, rule in spec["depends_on"].items():
            assert rule["condition"] == "service_healthy", (name, dependency)
            assert "healthcheck" in services[dependency], dependency
            # Optional exactly when the dependency sits in a profile that may be off.
            assert rule.get("required", True) == ("profiles" not in services[dependency])


@pytest.mark.parametrize("service", ["inventory", "billing", "notification"])
def test_scalable_services_take_no_fixed_host_port(service: str) -> None:
    port = own_settings_model(check_service(service)).model_fields["port"].default
    # No fixed host port (`--scale` works), and on the host's loopback only.
    assert APP_SERVICES[service]["ports"] == [f"127.0.0.1::{port}"]


def test_every_published_port_is_on_the_hosts_loopback_only() -> None:
    """Anything that can reach a broker can publish on it; a service's admin surface too."""
    for name, spec in COMPOSE["services"].items():
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


@pytest.mark.parametrize(
    ("backend", "broker"),
    [
        ("redis-streams", "redis"),
        ("redis-pubsub", "redis"),
        ("rabbitmq", "rabbitmq"),
        ("nats", "nats"),
    ],
)
def test_each_service_reaches_its_broker_as_its_own_user(backend: str, broker: str) -> None:
    """Each BUS_URL names the service's own user, which the file the broker loads defines."""
    spec = COMPOSE["services"][broker]
    mounted = [str(v).split(":")[0] for v in spec["volumes"]]
    users_file = next(ROOT / m for m in mounted if "rabbitmq.conf" not in m)
    for service in SERVICES:
        url = env_file(backend, service)["BUS_URL"]
        assert f"//{service}:orderbus@" in url, url  # the laptop default password
        assert service in users_file.read_text(), (users_file, service)


def test_healthchecks_probe_each_services_own_port() -> None:
    for name, spec in APP_SERVICES.items():
        port = own_settings_model(check_service(name)).model_fields["port"].default
        assert f"127.0.0.1:{port}/ready" in " ".join(spec["healthcheck"]["test"]), name


def test_dockerfile_is_pinned_non_root_and_without_dev_dependencies() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert bases, "no FROM"
    assert set(bases) == {"${PYTHON_IMAGE}"}, "every stage on the one base"
    [default] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", default), default
    assert default == DEFAULT_PYTHON_IMAGE, "the image test builds on the same default"
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)
    assert "[dev]" not in dockerfile
    assert 'ENTRYPOINT ["orderbus"]' in dockerfile


def _seconds(duration: str) -> float:
    """A Compose duration such as `30s`, `1m30s`, `1500ms`."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


@pytest.mark.parametrize("service", sorted(APP_SERVICES))
def test_compose_waits_longer_than_the_services_shutdown_deadline(service: str) -> None:
    """Past `stop_grace_period` Docker kills the container: the service's own deadline
    (which logs what is still pending before it exits) must come first."""
    spec = APP_SERVICES[service]
    grace = _seconds(str(spec.get("stop_grace_period", "10s")))
    deadline = float(
        spec.get("environment", {}).get(
            "ORDERBUS_SHUTDOWN_TIMEOUT_S", ServiceSettings().shutdown_timeout_s
        )
    )
    assert deadline + 2 <= grace


def test_the_readme_documents_every_variable() -> None:
    table = (ROOT / "README.md").read_text().split("## Configuration", 1)[1]
    missing = sorted(name for name in SETTINGS_ENV if f"`{name}`" not in table)
    assert not missing, f"not in the README's configuration table: {missing}"
