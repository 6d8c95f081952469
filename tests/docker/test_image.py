"""The project's image, as compose runs it: `docker run IMAGE run order` answers `/health`,
as the non-root user the Dockerfile names."""

from __future__ import annotations

import uuid

import httpx

from tests.broker_containers import docker
from tests.polling import eventually


async def test_the_image_serves_a_service_as_a_user_without_privilege(project_image: str) -> None:
    name = f"orderbus-image-{uuid.uuid4().hex[:8]}"
    started = docker(
        "run", "-d", "--name", name, "-p", "127.0.0.1::8000", project_image, "run", "order"
    )
    assert started.returncode == 0, started.stderr
    try:
        port = docker("port", name, "8000").stdout.strip().rsplit(":", 1)[1]

        async def healthy() -> int | None:
            try:
                async with httpx.AsyncClient() as client:
                    answer = await client.get(f"http://127.0.0.1:{port}/health", timeout=2)
            except httpx.HTTPError:
                return None
            return answer.status_code

        assert await eventually(healthy, within_s=60) == 200
        assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
        assert docker("exec", name, "id", "-un").stdout.strip() == "orderbus"
    finally:
        docker("rm", "-f", name)
