"""What each layer may import, read from the source (lazy imports included):

- `contracts` imports neither `bus` nor `services`;
- `bus` imports no `services` code;
- `services.runtime`, the chassis, imports no service and no tool;
- a service imports `bus`, `contracts`, the chassis and itself, never another service or a
  tool (the CLI, the supervisor, demo, bench, soak, dlq, the generators).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.runtime.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]
TOOLS = {p.stem for p in (ROOT / "services").iterdir() if p.stem not in {*SERVICES, "runtime"}}
TOOLS -= {"__init__", "__pycache__", "py"}
"""Everything in services/ that is neither a service nor the chassis: the tools."""


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
            n for n in names if n.split(".")[0] in ("bus", "contracts", "services")
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


def test_there_are_tools_to_keep_out() -> None:
    assert {"cli", "supervisor", "asyncapi", "specs", "demo", "bench"} <= TOOLS


def test_contracts_import_neither_bus_nor_services() -> None:
    assert offending("contracts", (), ("bus", "services")) == []


def test_bus_imports_no_service_code() -> None:
    assert offending("bus", (), ("services",)) == []


def test_the_chassis_imports_no_service_and_no_tool() -> None:
    refused = tuple(f"services.{name}" for name in (*SERVICES, *TOOLS))
    assert offending("services/runtime", (), refused) == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_and_no_tool(service: str) -> None:
    others = [name for name in (*SERVICES, *TOOLS) if name != service]
    refused = tuple(f"services.{name}" for name in others)
    # `from services import __version__` names services.__version__, not a service.
    assert offending(f"services/{service}", (), refused) == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The same reading on a module that imports another service lazily: it is reported."""
    (tmp_path / "services" / "billing").mkdir(parents=True)
    probe = tmp_path / "services" / "billing" / "probe.py"
    probe.write_text("def f():\n    from services.inventory import app\n")
    refused = tuple(f"services.{n}" for n in (*SERVICES, *TOOLS) if n != "billing")
    assert offending("services/billing", (), refused, tmp_path) == [
        "services/billing/probe.py imports services.inventory",
        "services/billing/probe.py imports services.inventory.app",
    ]
