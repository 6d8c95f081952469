"""Each service's schema by migration, on SQLite and PostgreSQL: head is what the table models
say (a model changed without a revision fails here), a database holding data upgrades from
the first revision to head, one `create_all` made is adopted, and replicas migrating at once
take turns."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from orderbus.specs import create_app, service_spec
from services.billing.settings import BillingSettings
from services.runtime import schema
from services.runtime.database import create_engine
from services.runtime.settings import SERVICES, ServiceName, ServiceSettings

pytestmark = pytest.mark.integration


NewDatabase = Callable[[], Awaitable[str]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def new_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[NewDatabase]:
    """`await new_database()`: the URL of another empty database of the test's own, on the
    engine of the test's parameter (PostgreSQL ones dropped afterwards)."""
    if request.param == "sqlite":
        paths = iter(range(1_000))
        yield lambda: _ready(f"sqlite:///{tmp_path / f'service-{next(paths)}.db'}")
        return
    import asyncpg

    admin_url: str = request.getfixturevalue("postgres_admin_url")
    parts = urlsplit(admin_url)
    admin = await asyncpg.connect(admin_url)
    created: list[str] = []

    async def make() -> str:
        name = f"orderbus_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        netloc = f"{parts.username or 'postgres'}:x@{parts.hostname}:{parts.port or 5432}"
        return urlunsplit(("postgresql+asyncpg", netloc, f"/{name}", "", ""))

    try:
        yield make
        for name in created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _ready(url: str) -> str:
    return url


@pytest.fixture
async def database_url(new_database: NewDatabase) -> str:
    """An empty database of the test's own on each engine."""
    return await new_database()


def metadata_of(service: ServiceName) -> sa.MetaData:
    spec = service_spec(service)
    return schema.service_metadata(spec.metadata, inbox=bool(spec.subscriptions))


async def on(url: str, work: Any, *args: Any) -> Any:
    """Run `work(connection, *args)` in one transaction on a fresh engine."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(work, *args)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
async def test_head_is_what_the_table_models_say(database_url: str, service: ServiceName) -> None:
    metadata = metadata_of(service)
    engine = create_engine(database_url)
    try:
        assert await schema.migrate(engine, service, metadata) == schema.revisions(service)[-1]
    finally:
        await engine.dispose()
    assert await on(database_url, schema.unmigrated_changes, service, metadata) == []


async def test_a_model_changed_without_a_revision_is_caught(database_url: str) -> None:
    changed = sa.MetaData()
    for table in metadata_of("billing").tables.values():
        table.to_metadata(changed)
    changed.tables["invoices"].append_column(sa.Column("discount", sa.String(20)))
    engine = create_engine(database_url)
    try:
        await schema.migrate(engine, "billing", metadata_of("billing"))
    finally:
        await engine.dispose()
    changes = await on(database_url, schema.unmigrated_changes, "billing", changed)
    assert [(c[0], c[3].name) for c in changes] == [("add_column", "discount")]


def _value(column: sa.Column[Any], n: int) -> Any:
    """A value of the column's type for row `n` (unique where that matters)."""
    kind = column.type
    if isinstance(kind, sa.DateTime):
        return datetime(2026, 1, 1, tzinfo=UTC)
    if isinstance(kind, sa.Integer):
        return n
    if isinstance(kind, sa.Numeric):
        return Decimal(n)
    if isinstance(kind, sa.Boolean):
        return False
    length = getattr(kind, "length", None) or 36
    return f"{column.name[:4]}-{n}"[:length]


def fill_every_table(connection: Connection) -> dict[str, int]:
    """Two rows in every table the database has now (reflected, so this works on whatever
    revision it is at), parents before children; the rows each table then holds."""
    found = sa.MetaData()
    found.reflect(connection)
    for table in found.sorted_tables:
        if table.name.startswith("alembic_version"):
            continue
        for n in (1, 2):
            row = {c.name: _value(c, n) for c in table.columns if c.autoincrement is not True}
            for key in table.foreign_keys:  # point at the parent's row n
                row[key.parent.name] = _value(key.column, n)
            connection.execute(table.insert().values(row))
    return {
        t.name: connection.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
        for t in found.sorted_tables
        if not t.name.startswith("alembic_version")
    }


def counts(connection: Connection) -> dict[str, int]:
    found = sa.MetaData()
    found.reflect(connection)
    return {
        t.name: connection.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
        for t in found.sorted_tables
        if not t.name.startswith("alembic_version")
    }


@pytest.mark.parametrize("service", SERVICES)
async def test_a_database_holding_data_upgrades_from_the_first_revision_to_head(
    database_url: str, service: ServiceName
) -> None:
    metadata = metadata_of(service)
    first, head = schema.revisions(service)[0], schema.revisions(service)[-1]
    assert await on(database_url, schema.upgrade, service, metadata, first) == first
    before = await on(database_url, fill_every_table)
    assert before
    assert all(rows == 2 for rows in before.values())

    assert await on(database_url, schema.upgrade, service, metadata) == head
    after = await on(database_url, counts)
    assert {name: after[name] for name in before if name in after} == {
        name: 2 for name in before if name in after
    }
    assert await on(database_url, schema.unmigrated_changes, service, metadata) == []


async def test_a_database_create_all_made_is_adopted_with_its_rows(database_url: str) -> None:
    metadata = metadata_of("inventory")
    await on(database_url, metadata.create_all)  # as every release before migrations did
    # Older still: made before the inbox's retention index, which create_all never added.
    await on(
        database_url, lambda c: c.execute(sa.text("DROP INDEX ix_processed_events_processed_at"))
    )
    before = await on(database_url, fill_every_table)
    assert await on(database_url, schema.current, "inventory") is None

    engine = create_engine(database_url)
    try:
        assert await schema.migrate(engine, "inventory", metadata) == "0001"
    finally:
        await engine.dispose()
    assert await on(database_url, counts) == before
    assert await on(database_url, schema.unmigrated_changes, "inventory", metadata) == []


async def test_replicas_migrating_at_once_take_turns(database_url: str) -> None:
    metadata = metadata_of("order")
    engines: list[AsyncEngine] = [create_engine(database_url) for _ in range(3)]
    try:
        done = await asyncio.gather(*(schema.migrate(e, "order", metadata) for e in engines))
    finally:
        await asyncio.gather(*(e.dispose() for e in engines))
    assert done == [schema.revisions("order")[-1]] * 3


async def test_a_service_not_migrating_on_start_refuses_a_database_behind(
    database_url: str, tmp_path: Path
) -> None:
    settings = ServiceSettings(data_dir=tmp_path, migrate_on_start=False)
    app = create_app("billing", settings, own=BillingSettings(database_url=database_url))
    with pytest.raises(RuntimeError, match="orderbus migrate billing"):
        async with app.router.lifespan_context(app):
            pass

    engine = create_engine(database_url)
    try:
        await schema.migrate(engine, "billing", metadata_of("billing"))
    finally:
        await engine.dispose()
    async with app.router.lifespan_context(app):
        pass  # at head: it starts


async def test_services_migrating_at_once_in_one_process_each_get_their_own_tables(
    new_database: NewDatabase,
) -> None:
    """As `orderbus up` on the embedded bus starts them: Alembic's globals are the process's,
    so two services' migrations must not interleave (on PostgreSQL each statement yields to
    the other)."""
    urls: dict[ServiceName, str] = {s: await new_database() for s in SERVICES}
    engines = {name: create_engine(url) for name, url in urls.items()}
    try:
        done = await asyncio.gather(
            *(schema.migrate(engine, name, metadata_of(name)) for name, engine in engines.items())
        )
    finally:
        await asyncio.gather(*(engine.dispose() for engine in engines.values()))
    assert done == [schema.revisions(name)[-1] for name in engines]
    for name, url in urls.items():
        assert set(await on(url, counts)) == set(metadata_of(name).tables), name


async def test_a_database_of_another_service_is_refused_not_adopted(database_url: str) -> None:
    await on(database_url, metadata_of("inventory").create_all)
    engine = create_engine(database_url)
    try:
        with pytest.raises(RuntimeError, match="not a database this service made"):
            await schema.migrate(engine, "billing", metadata_of("billing"))
    finally:
        await engine.dispose()
    assert await on(database_url, schema.current, "billing") is None


async def test_a_database_a_newer_release_migrated_is_refused_naming_it(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        await schema.migrate(engine, "billing", metadata_of("billing"))
        async with engine.begin() as conn:
            table = schema.version_table("billing")
            await conn.execute(sa.text(f"UPDATE {table} SET version_num = '0099'"))  # noqa: S608
        with pytest.raises(RuntimeError, match="0099, which this release does not know"):
            await schema.migrate(engine, "billing", metadata_of("billing"))
        with pytest.raises(RuntimeError, match="0099, which this release does not know"):
            await schema.require_head(engine, "billing")
    finally:
        await engine.dispose()
