"""What a clone installs: every third-party module the code imports is a declared dependency,
one uv release everywhere, and the type stubs pinned like mypy."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from orderbus.cli import main
from services import __version__

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OWN = {"bus", "contracts", "services", "orderbus", "tests"}


def _names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower().replace("_", "-") for r in requirements}


def _imported(*folders: str) -> set[str]:
    """Top-level modules imported at any depth (lazy imports included), minus the standard
    library and the project's own packages."""
    found: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found.update(alias.name.partition(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.partition(".")[0])
    return found - set(sys.stdlib_module_names) - OWN


def _undeclared(modules: set[str], declared: set[str]) -> dict[str, list[str]]:
    distributions = packages_distributions()
    missing = {}
    for module in sorted(modules):
        names = [d.lower().replace("_", "-") for d in distributions.get(module, [module])]
        if not declared.intersection(names):
            missing[module] = names
    return missing


def test_every_module_the_code_imports_is_a_runtime_dependency() -> None:
    declared = _names(PROJECT["dependencies"]) | _names(PROJECT["optional-dependencies"]["otlp"])
    assert _undeclared(_imported("bus", "contracts", "services", "orderbus"), declared) == {}


def test_every_module_the_tests_import_is_a_dependency_or_a_dev_one() -> None:
    declared = _names(PROJECT["dependencies"]) | _names(
        [r for extra in PROJECT["optional-dependencies"].values() for r in extra]
    )
    # packaging comes with pytest (this file reads requirements with it).
    assert _undeclared(_imported("tests") - {"packaging"}, declared) == {}


def test_the_type_stubs_and_the_tools_are_pinned() -> None:
    dev = [Requirement(r) for r in PROJECT["optional-dependencies"]["dev"]]
    loose = [
        str(r)
        for r in dev
        if (r.name.startswith("types-") or r.name in ("mypy", "ruff"))
        and not str(r.specifier).startswith("==")
    ]
    assert loose == []


def test_one_uv_release_in_the_makefile_the_dockerfile_and_pyproject() -> None:
    makefile = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    dockerfile = re.search(r"^ARG UV_VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]
    assert makefile
    assert dockerfile
    assert {makefile[1], dockerfile[1], tool["required-version"].removeprefix("==")} == {
        makefile[1]
    }


def test_the_lock_is_installed_frozen_everywhere() -> None:
    # `--frozen`: the install takes uv.lock as it is; `make lint` checks it still matches.
    assert "sync --quiet --frozen" in (ROOT / "Makefile").read_text()
    assert (ROOT / "Dockerfile").read_text().count("uv sync --frozen") == 2
    assert "$(UV) lock --check" in (ROOT / "Makefile").read_text()


def test_the_license_is_apache_2_and_the_packages_are_typed() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert PROJECT["license"] == "Apache-2.0"
    for package in ("bus", "contracts", "services", "orderbus"):
        assert (ROOT / package / "py.typed").exists(), package


def test_the_one_version_is_pyprojects(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"orderbus {PROJECT['version']}"
    assert __version__ == PROJECT["version"]
