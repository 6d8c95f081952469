"""Tests that need a Docker engine: skipped without one, failed under ORDERBUS_REQUIRE_DOCKER=1
(CI, which starts one). Every container a test starts is removed when it ends."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.broker_containers import docker

DEFAULT_PYTHON_IMAGE = "python:3.11.11-slim-bookworm"
"""The Dockerfile's own default (`ARG PYTHON_IMAGE`)."""


def unavailable(reason: str) -> None:
    if os.environ.get("ORDERBUS_REQUIRE_DOCKER") == "1":
        pytest.fail(f"ORDERBUS_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def engine() -> None:
    if shutil.which("docker") is None:
        unavailable("no docker command")
    info = docker("info", "--format", "{{.ServerVersion}}", timeout=10)
    if info.returncode != 0:
        unavailable(f"no Docker engine answers: {info.stderr.strip()[:200]}")


@pytest.fixture(scope="session")
def project_image(engine: None) -> str:
    """The project's image, built from the Dockerfile on `PYTHON_IMAGE` (the official base
    unless told otherwise); one the engine cannot get is a skip, not an error."""
    base = os.environ.get("PYTHON_IMAGE") or DEFAULT_PYTHON_IMAGE
    if docker("image", "inspect", base).returncode != 0:
        unavailable(f"the engine holds no {base} (deploy/images/build.sh makes a stand-in)")
    tag = "orderbus:test"
    built = docker(
        "build",
        "-q",
        "--force-rm",
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        "-t",
        tag,
        ".",
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2_000:]
    return tag
