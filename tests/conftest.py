"""Fixtures every test layer shares: brokers, per the order in `tests.brokers`, and a
PostgreSQL database of the test's own, when PostgreSQL is there."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bus import BACKENDS
from tests.brokers import (
    BACKEND_KIND,
    Choice,
    Kind,
    brokers_required,
    containers_only,
    docker_has,
    missing_image,
    on_loopback,
    port_open,
    postgres_image,
    provide,
)


@pytest.fixture(scope="session")
def broker_url() -> Iterator[Callable[[Kind], str]]:
    """`broker_url(kind)`: a reachable broker of that kind for this session, or skip/fail."""
    cache: dict[Kind, str | Choice] = {}
    with contextlib.ExitStack() as stack:

        def get(kind: Kind) -> str:
            if kind not in cache:
                cache[kind] = stack.enter_context(provide(kind))
            found = cache[kind]
            if isinstance(found, Choice):
                if brokers_required():
                    pytest.fail(f"ORDERBUS_REQUIRE_BROKERS=1 but {found.reason}")
                pytest.skip(found.reason)
            return found

        yield get


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    """Every test that takes `backend` runs once per backend, the name in its test id."""
    return str(request.param)


@pytest.fixture
def backend_url(backend: str, broker_url: Callable[[Kind], str]) -> str:
    kind = BACKEND_KIND[backend]
    if kind is None:
        return f"memory://{uuid.uuid4().hex[:8]}"  # a hub of its own per test
    return broker_url(kind)


def reset_tracer_provider() -> None:
    # The API lets a process set its tracer provider once; tests need one each, then none.
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test only, every finished span kept in memory."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reset_tracer_provider()
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    reset_tracer_provider()


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
