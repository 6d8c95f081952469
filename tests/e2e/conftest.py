"""End-to-end fixtures: a PostgreSQL database of the test's own, when PostgreSQL is there."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.brokers import brokers_required, own_tansu_if_shared, port_open

POSTGRES_ENV = "ORDERBUS_TEST_POSTGRES_URL"
POSTGRES_LOOPBACK = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
async def postgres_database() -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """`database(password)`: the SQLAlchemy URL of a fresh database, dropped afterwards."""
    import asyncpg

    admin_url = os.environ.get(POSTGRES_ENV) or POSTGRES_LOOPBACK
    parts = urlsplit(admin_url)
    if not port_open(parts.hostname or "127.0.0.1", parts.port or 5432):
        reason = f"no PostgreSQL: set {POSTGRES_ENV} or run one on 127.0.0.1:5432"
        if brokers_required():
            pytest.fail(f"ORDERBUS_REQUIRE_BROKERS=1 but {reason}")
        pytest.skip(reason)
    created: list[str] = []
    admin = await asyncpg.connect(admin_url)

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
