"""A backend is one package with one descriptor, and choosing one loads only its own client."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bus import BACKENDS, backend_class
from bus.descriptor import Admin
from bus.registry import backend_admin, load
from services.runtime.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ("faststream", "redis", "aio_pika", "aiormq", "aiokafka", "nats")
"""The top-level packages of the broker clients."""


def _clients_loaded_after(code: str) -> list[str]:
    """The broker-client packages in `sys.modules` after `code` runs in a fresh interpreter."""
    probe = (
        "import json, sys\n"
        f"{code}\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({CLIENTS!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_the_embedded_default_loads_no_broker_client() -> None:
    code = (
        "import bus, bus.probes, bus.dead_letters, bus.topology, bus.prometheus\n"
        "from bus import BACKENDS, BusSettings, backend_info, create_bus\n"
        "settings = BusSettings(backend='memory')\n"
        "create_bus(settings)\n"
        "bus.probes.open_probe(settings)\n"
        "bus.dead_letters.open_store(settings)\n"
        "[backend_info(name).capabilities for name in BACKENDS]\n"
    )
    assert _clients_loaded_after(code) == []


def test_the_services_on_the_embedded_default_load_no_broker_client() -> None:
    code = "\n".join(f"import services.{s}.bootstrap" for s in SERVICES)
    assert _clients_loaded_after(code) == []


@pytest.mark.parametrize(
    ("backend", "client"),
    [("redis-streams", "redis"), ("rabbitmq", "aio_pika"), ("kafka", "aiokafka"), ("nats", "nats")],
)
def test_a_chosen_backend_loads_its_own_client_and_no_other(backend: str, client: str) -> None:
    code = (
        "from bus import BusSettings, create_bus\n"
        "from bus.probes import open_probe\n"
        f"settings = BusSettings(backend={backend!r})\n"
        "create_bus(settings)\n"
        "open_probe(settings)\n"
    )
    loaded = set(_clients_loaded_after(code))
    assert client in loaded
    others = {"redis", "aio_pika", "aiokafka", "nats"} - {client}
    # FastStream's own packages import only what they use; aio_pika brings aiormq.
    assert not loaded & others, f"{backend} loaded {sorted(loaded & others)}"


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_descriptor_names_code_that_exists(name: str) -> None:
    info = BACKENDS[name]
    assert backend_class(name).name == name
    assert backend_class(name).capabilities is info.capabilities
    assert isinstance(backend_admin(name), Admin)
    if info.metrics is not None:
        assert callable(load(info.metrics))
    package = info.bus.partition(":")[0].rpartition(".")[0]
    assert info.admin.startswith(f"{package}.")


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def test_no_module_of_the_bus_outside_the_backends_names_a_backend() -> None:
    """A backend switch anywhere but its own package would be a second source of truth."""
    names = set(BACKENDS) - {"memory"}  # `memory` is also a URL scheme and the default
    offenders = {
        str(path.relative_to(ROOT)): sorted(found)
        for path in (ROOT / "bus").glob("*.py")
        if (found := _string_constants(path) & names)
    }
    assert offenders == {}
