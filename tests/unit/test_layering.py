"""What each layer may import, read from the source (lazy imports included):

- `contracts` imports neither `bus` nor `services`;
- `bus` imports no `services` code;
- nothing in `services` imports `orderbus`, the tools (the CLI, the supervisor, the table of
  services, demo, bench, soak, dlq, the generators), which import the services;
- `services.runtime`, the chassis, imports no service and not the console;
- a service imports `bus`, `contracts`, the chassis and itself, never another service;
- `services.console`, the operator console (the dashboard and its controls), imports `bus`,
  `contracts`, the chassis, notification's WebSocket gateway (`services.notification.live`)
  and itself; only notification, whose process serves it, imports the console;
- `services/` holds the chassis, the console and the services, nothing else.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.runtime.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_IMPORTS = ("services.console", "services.runtime", "services.notification.live")
"""All of `services` the console may import: itself, the chassis, notification's gateway."""


def imports(folder: str, root: Path = ROOT) -> dict[str, set[str]]:
    """Each module under `folder` (relative to `root`) and the project modules it imports."""
    found: dict[str, set[str]] = {}
    for path in (root / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(root))] = {
            n for n in names if n.split(".")[0] in ("bus", "contracts", "services", "orderbus")
        }
    return found


def offending(
    folder: str, allowed: tuple[str, ...], refused: tuple[str, ...], root: Path = ROOT
) -> list[str]:
    bad = []
    for module, names in sorted(imports(folder, root).items()):
        for name in sorted(names):
            if name.startswith(refused) and not name.startswith(allowed):
                bad.append(f"{module} imports {name}")
    return bad


def test_services_holds_the_chassis_the_console_and_the_services_only() -> None:
    found = {p.name for p in (ROOT / "services").iterdir() if p.name != "__pycache__"}
    assert found == {*SERVICES, "runtime", "console", "__init__.py", "py.typed"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_the_same_files_for_the_same_jobs(service: str) -> None:
    folder = ROOT / "services" / service
    jobs = {"bootstrap.py", "settings.py", "routes.py", "handlers.py", "store.py", "migrations"}
    assert jobs <= {p.name for p in folder.iterdir()}


def test_no_service_code_imports_the_tools() -> None:
    assert offending("services", (), ("orderbus",)) == []


def test_contracts_import_neither_bus_nor_services() -> None:
    assert offending("contracts", (), ("bus", "services", "orderbus")) == []


def test_bus_imports_no_service_code() -> None:
    assert offending("bus", (), ("services", "orderbus")) == []


def test_the_chassis_imports_no_service_and_not_the_console() -> None:
    refused = tuple(f"services.{name}" for name in (*SERVICES, "console"))
    assert offending("services/runtime", (), refused) == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service: str) -> None:
    refused = tuple(f"services.{name}" for name in SERVICES if name != service)
    assert offending(f"services/{service}", (), refused) == []


@pytest.mark.parametrize("service", [s for s in SERVICES if s != "notification"])
def test_only_notification_imports_the_console(service: str) -> None:
    assert offending(f"services/{service}", (), ("services.console",)) == []


def test_the_console_imports_the_chassis_and_notifications_gateway_only() -> None:
    assert offending("services/console", CONSOLE_IMPORTS, ("services",)) == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The same reading on a module that imports another service lazily: it is reported."""
    (tmp_path / "services" / "billing").mkdir(parents=True)
    probe = tmp_path / "services" / "billing" / "probe.py"
    probe.write_text("def f():\n    from services.inventory import app\n")
    refused = tuple(f"services.{n}" for n in SERVICES if n != "billing")
    assert offending("services/billing", (), refused, tmp_path) == [
        "services/billing/probe.py imports services.inventory",
        "services/billing/probe.py imports services.inventory.app",
    ]


def test_the_check_sees_the_console_reach_past_the_gateway(tmp_path: Path) -> None:
    (tmp_path / "services" / "console").mkdir(parents=True)
    probe = tmp_path / "services" / "console" / "probe.py"
    probe.write_text(
        "from services.notification.live import LiveClients\n"
        "from services.notification.handlers import record_notifications\n"
    )
    assert offending("services/console", CONSOLE_IMPORTS, ("services",), tmp_path) == [
        "services/console/probe.py imports services.notification.handlers",
        "services/console/probe.py imports services.notification.handlers.record_notifications",
    ]


def _imports_of(path: Path, *, typing_too: bool) -> set[str]:
    """The project modules a module imports; without `typing_too`, the `if TYPE_CHECKING:`
    blocks are left out (what it imports when it runs)."""
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    if not typing_too:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(child) for child in ast.walk(node))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def chassis_circles(*, typing_too: bool, folder: str = "services/runtime") -> list[list[str]]:
    """The groups of modules under `folder` (the chassis by default) that import each other in
    a circle (strongly connected components of more than one module), each sorted."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / folder).rglob("*.py")
    }
    graph = {
        name: {m for m in _imports_of(path, typing_too=typing_too) if m in modules and m != name}
        for name, path in modules.items()
    }
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for name in sorted(graph):
        if name not in order:
            visit(name)
    return sorted(circles)


def test_the_chassis_has_no_import_circle_when_it_runs() -> None:
    assert chassis_circles(typing_too=False) == []


def test_no_module_of_the_services_imports_itself_back_when_it_runs() -> None:
    """Across the chassis, the console and the services, through any chain."""
    assert chassis_circles(typing_too=False, folder="services") == []


def test_the_app_builder_is_in_no_circle_even_for_the_type_checker() -> None:
    # What is left: the relay's `run(runtime)` and `Runtime.relay` name each other's types.
    assert chassis_circles(typing_too=True) == [
        ["services.runtime.outbox", "services.runtime.service"]
    ]


def test_the_chassis_central_types_import_nothing_of_the_chassis_at_run_time() -> None:
    """`services/runtime/service.py` (Runtime, ServiceSpec, Subscription) is imported by every
    module of the chassis and by every service: importing any of them back would be a circle."""
    tree = ast.parse((ROOT / "services" / "runtime" / "service.py").read_text())
    at_run_time: set[str] = set()
    for node in tree.body:  # module level; `if TYPE_CHECKING:` blocks are for mypy only
        if isinstance(node, ast.Import):
            at_run_time.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            at_run_time.add(node.module)
    assert {name for name in at_run_time if name.startswith("services")} == set()
