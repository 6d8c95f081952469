"""A compose project of a test's own: its name, free host ports, the images the environment
names (CI: deploy/images/build.sh's stand-ins) or the pinned ones, and what is left of it."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import cast

from tests.broker_containers import docker
from tests.brokers import Kind, free_port, image, postgres_image
from tests.docker.conftest import DEFAULT_PYTHON_IMAGE, unavailable

ROOT = Path(__file__).resolve().parents[2]


def host_ports(files: tuple[str, ...]) -> set[str]:
    """The host-port variables of these compose files: each project gets free ports."""
    text = "".join((ROOT / name).read_text() for name in files)
    return set(re.findall(r"\$\{(\w+_HOST_PORT):-", text))


class Project:
    """One compose project: `run(...)` is `docker compose ...` with its variables."""

    def __init__(self, profile: str, files: tuple[str, ...] = ("docker-compose.yml",)) -> None:
        self.name = f"orderbus-test-{uuid.uuid4().hex[:8]}"
        self.env = os.environ | {
            "COMPOSE_PROFILES": profile,
            "COMPOSE_PROJECT_NAME": self.name,
            "COMPOSE_FILE": os.pathsep.join(str(ROOT / name) for name in files),
            **{variable: str(free_port()) for variable in host_ports(files)},
        }

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "compose", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def url(self, service: str, port: int, index: int = 1) -> str:
        published = self.run("port", "--index", str(index), service, str(port))
        assert published.returncode == 0, published.stderr
        return f"http://{published.stdout.strip()}"

    def leftovers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.name}"
        found: list[str] = []
        for kind in ("container", "network", "volume"):
            listed = docker(
                kind, "ls", "-q", *(["-a"] if kind == "container" else []), "--filter", label
            )
            found += [f"{kind} {item}" for item in listed.stdout.split()]
        return found


def image_for(kind: str) -> str:
    """The image compose runs for a broker kind or PostgreSQL: the fixture layer's choice."""
    return postgres_image() if kind == "postgres" else image(cast(Kind, kind))


def require_compose_and_images(*names: str) -> None:
    if docker("compose", "version").returncode != 0:
        unavailable("no `docker compose` (the Compose plugin)")
    for name in (os.environ.get("PYTHON_IMAGE") or DEFAULT_PYTHON_IMAGE, *names):
        if docker("image", "inspect", name).returncode != 0:
            unavailable(f"the engine holds no {name} (deploy/images/build.sh makes a stand-in)")
