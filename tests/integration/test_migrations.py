"""Each service's schema by migration, on SQLite and PostgreSQL: head is what the table models
say (a model changed without a revision fails here), a database holding data upgrades from
the first revision to head, one `create_all` made is adopted, and replicas migrating at once
take turns."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime import schema
from services.runtime.database import create_engine
from services.runtime.settings import SERVICES, ServiceName, ServiceSettings
from services.specs import create_app, service_spec

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of the test's own on each engine."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
        return
    import asyncpg

    admin_url: str = request.getfixturevalue("postgres_admin_url")
    name = f"orderbus_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(admin_url)
        netloc = f"{parts.username or 'postgres'}:x@{parts.hostname}:{parts.port or 5432}"
        yield urlunsplit(("postgresql+asyncpg", netloc, f"/{name}", "", ""))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


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
    before = await on(database_url, fill_every_table)
    assert await on(database_url, schema.current, "inventory") is None

    engine = create_engine(database_url)
    try:
        assert await schema.migrate(engine, "inventory", metadata) == "0001"
    finally:
        await engine.dispose()
    assert await on(database_url, counts) == before


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
    settings = ServiceSettings(
        data_dir=tmp_path, migrate_on_start=False, billing_database_url=database_url
    )
    app = create_app("billing", settings)
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
