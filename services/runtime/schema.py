"""Each service's database schema, by Alembic revision.

A service's revisions are in `services/<name>/migrations/`; one environment
(`services/runtime/alembic/env.py`) runs them on a connection this module hands over, in its
transaction. Each database records its revision in a table named for its service
(`alembic_version_<name>`). Each service needs a database of its own: several define tables
of the same name (`outbox`, `processed_events`).

A service upgrades its database to head when it starts (`ORDERBUS_MIGRATE_ON_START`, on by
default), or `orderbus migrate` does it first (a Kubernetes Job, a deploy step) and the
services only check that the database is at head. Replicas that start together take turns:
a PostgreSQL advisory lock held for the migrating transaction, SQLite's write lock
(`BEGIN IMMEDIATE`). A database `create_all` made before there were migrations holds the
first revision's tables and no version: it is stamped at the first revision, then upgraded.

Alembic keeps the migration in progress in process-wide globals, so instances sharing a
process (`orderbus up` on the embedded bus) migrate one after the other (`_turn`).

A table model changed without a revision fails `tests/integration/test_migrations.py`; `orderbus
migrate --new "what changed" SERVICE` writes the next revision from the difference.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import weakref
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.database import reading
from services.runtime.inbox import processed_events_table

log = logging.getLogger(__name__)

ENV = Path(__file__).with_name("alembic")
SERVICES_DIR = Path(__file__).resolve().parents[1]


def migrations_dir(service: str) -> Path:
    return SERVICES_DIR / service / "migrations"


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def service_metadata(metadata: MetaData, *, inbox: bool) -> MetaData:
    """Every table of a service: its own and, if it subscribes, the inbox's."""
    if inbox:
        processed_events_table(metadata)
    return metadata


def alembic_config(
    service: str, connection: Connection | None = None, metadata: MetaData | None = None
) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ENV))
    config.set_main_option("version_locations", str(migrations_dir(service)))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes.update(
        connection=connection, metadata=metadata, version_table=version_table(service)
    )
    return config


@functools.cache
def revisions(service: str) -> tuple[str, ...]:
    """The service's revisions, first to head (one line: no branches); read once per process."""
    script = ScriptDirectory.from_config(alembic_config(service))
    return tuple(r.revision for r in reversed(list(script.walk_revisions())))


def current(connection: Connection, service: str) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": version_table(service)})
    return context.get_current_revision()


@functools.cache
def _first_revision(service: str) -> dict[str, list[tuple[str, tuple[str, ...], bool]]]:
    """What the service's first revision makes (applied to a scratch database): each table
    with its indexes (name, columns, unique)."""
    engine = sa.create_engine("sqlite://")
    with engine.begin() as connection:
        command.upgrade(alembic_config(service, connection, MetaData()), revisions(service)[0])
        inspector = sa.inspect(connection)
        return {
            table: [
                (str(ix["name"]), tuple(str(c) for c in ix["column_names"]), bool(ix["unique"]))
                for ix in inspector.get_indexes(table)
            ]
            for table in inspector.get_table_names()
            if table != version_table(service)
        }


def first_revision_tables(service: str) -> frozenset[str]:
    """The tables the service's first revision makes."""
    return frozenset(_first_revision(service))


def upgrade(
    connection: Connection, service: str, metadata: MetaData, target: str = "head"
) -> str | None:
    """Bring the database to `target` (sync: in `run_sync`, or on a sync connection) and
    say the revision it is at."""
    config = alembic_config(service, connection, metadata)
    found = current(connection, service)
    if found is not None and found not in revisions(service):
        raise RuntimeError(
            f"{service}'s database is at revision {found}, which this release does not know: "
            "a newer release migrated it; run that release (or roll the database back with it)"
        )
    existing = set(sa.inspect(connection).get_table_names())
    if found is None and existing & set(metadata.tables):
        _adopt(config, service, existing)
    command.upgrade(config, target)
    return current(connection, service)


def _adopt(config: Config, service: str, existing: set[str]) -> None:
    """A database `create_all` made before there were migrations holds exactly the first
    revision's tables: stamp it there. Anything else is not this service's database."""
    missing = sorted(first_revision_tables(service) - existing)
    if missing:
        raise RuntimeError(
            f"{service}'s database has some of its tables but not {', '.join(missing)}, and "
            f"no {version_table(service)}: it is not a database this service made (each "
            "service needs one of its own)"
        )
    # `create_all` never added an index to a table that was already there: a database older
    # than one of the first revision's indexes lacks it. Add what is missing, then stamp.
    connection = config.attributes["connection"]
    inspector = sa.inspect(connection)
    for table, indexes in _first_revision(service).items():
        have = {ix["name"] for ix in inspector.get_indexes(table)}
        missing_indexes = [ix for ix in indexes if ix[0] not in have]
        if missing_indexes:
            reflected = sa.Table(table, MetaData(), autoload_with=connection)
            for name, columns, unique in missing_indexes:
                sa.Index(name, *(reflected.c[c] for c in columns), unique=unique).create(connection)
                log.info("%s: index %s added to %s before stamping", service, name, table)
    first = revisions(service)[0]
    log.info("%s: tables without a revision (made before migrations): stamped %s", service, first)
    command.stamp(config, first)


def unmigrated_changes(connection: Connection, service: str, metadata: MetaData) -> list[object]:
    """How the table models differ from the database's schema (Alembic's diff; its own
    version table aside)."""
    context = MigrationContext.configure(
        connection, opts={"version_table": version_table(service), "compare_type": True}
    )
    return list(compare_metadata(context, metadata))


def _lock_key(service: str) -> int:
    digest = hashlib.sha256(f"orderbus migrate {service}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _turn() -> asyncio.Lock:
    """One migration at a time in this process (per event loop, as a lock belongs to one)."""
    loop = asyncio.get_running_loop()
    if loop not in _turns:
        _turns[loop] = asyncio.Lock()
    return _turns[loop]


async def migrate(engine: AsyncEngine, service: str, metadata: MetaData) -> str | None:
    """Upgrade the service's database to head, one replica at a time."""
    async with _turn(), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(service)}
            )
        was = await conn.run_sync(current, service)
        now = await conn.run_sync(upgrade, service, metadata)
    if now != was:
        log.info("%s: database migrated from revision %s to %s", service, was or "none", now)
    return now


async def require_head(engine: AsyncEngine, service: str) -> None:
    """Refuse to start on a database another release's migrations have not reached."""
    async with reading(engine) as conn:
        now = await conn.run_sync(current, service)
    head = revisions(service)[-1]
    if now is not None and now not in revisions(service):
        raise RuntimeError(
            f"{service}'s database is at revision {now}, which this release does not know: "
            "a newer release migrated it"
        )
    if now != head:
        raise RuntimeError(
            f"{service}'s database is at revision {now or 'none'}, not {head}: run "
            f"`orderbus migrate {service}` first, or set ORDERBUS_MIGRATE_ON_START=true"
        )


def new_revision(service: str, metadata: MetaData, message: str) -> Path:
    """Write the service's next revision from what its table models have that head has not
    (a scratch SQLite database at head is compared with them); review it before committing."""
    engine = sa.create_engine("sqlite://")
    with engine.begin() as connection:
        upgrade(connection, service, metadata)
        if not unmigrated_changes(connection, service, metadata):
            raise ValueError(
                f"{service}'s table models match its latest revision: nothing to write"
            )
        config = alembic_config(service, connection, metadata)
        number = f"{len(revisions(service)) + 1:04d}"
        script = command.revision(config, message, autogenerate=True, rev_id=number)
    if not isinstance(script, Script):
        raise RuntimeError(f"alembic wrote no single revision for {service}: {script!r}")
    return Path(script.path)
