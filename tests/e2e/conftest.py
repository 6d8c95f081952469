"""End-to-end fixtures: a PostgreSQL database of the test's own, when PostgreSQL is there."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.brokers import (
    Choice,
    brokers_required,
    containers_only,
    docker_has,
    missing_image,
    on_loopback,
    own_tansu_if_shared,
    port_open,
    postgres_image,
)

POSTGRES_ENV = "ORDERBUS_TEST_POSTGRES_URL"
POSTGRES_LOOPBACK = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str | Choice]:
    """An admin URL of a PostgreSQL server for the session, or why there is none: a container
    with `ORDERBUS_BROKERS=containers`, else `ORDERBUS_TEST_POSTGRES_URL` or the loopback one."""
    if containers_only():
        wanted = postgres_image()
        if not docker_has(wanted):
            yield Choice(None, missing_image(wanted))
            return
        on_loopback()  # before testcontainers reads its configuration, on import
        from testcontainers.community.postgres import PostgresContainer

        # Trust, as on the loopback server: the tests' URLs carry passwords of their own.
        server = PostgresContainer(wanted, username="postgres", password="postgres")
        with server.with_env("POSTGRES_HOST_AUTH_METHOD", "trust") as c:
            host, port = c.get_container_host_ip(), c.get_exposed_port(5432)
            yield f"postgresql://postgres@{host}:{port}/postgres"
        return
    admin_url = os.environ.get(POSTGRES_ENV) or POSTGRES_LOOPBACK
    parts = urlsplit(admin_url)
    if port_open(parts.hostname or "127.0.0.1", parts.port or 5432):
        yield admin_url
    else:
        yield Choice(None, f"no PostgreSQL: set {POSTGRES_ENV} or run one on 127.0.0.1:5432")


@pytest.fixture
def postgres_admin_url(postgres_server: str | Choice) -> str:
    if isinstance(postgres_server, Choice):
        if brokers_required():
            pytest.fail(f"ORDERBUS_REQUIRE_BROKERS=1 but {postgres_server.reason}")
        pytest.skip(postgres_server.reason)
    return postgres_server


@pytest.fixture
async def postgres_database(
    postgres_admin_url: str,
) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """`database(password)`: the SQLAlchemy URL of a fresh database, dropped afterwards."""
    import asyncpg

    parts = urlsplit(postgres_admin_url)
    created: list[str] = []
    admin = await asyncpg.connect(postgres_admin_url)

    async def database(password: str) -> str:
        name = f"orderbus_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        user = parts.username or "postgres"
        netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 5432}"
        return urlunsplit(("postgresql+asyncpg", netloc, f"/{name}", "", ""))

    try:
        yield database
        for name in created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def backend_url(backend: str, backend_url: str) -> AsyncIterator[str]:
    """These tests use the system's real topic and group names: on Tansu, each test gets a
    broker of its own, so a group member one test left dead cannot hang the next test's."""
    async with own_tansu_if_shared(backend, backend_url) as url:
        yield url
