"""Service configuration, read once per process from the environment: what every service
shares (`ServiceSettings`: host, data directory, bus, shutdown, ...) and the base of what each
has of its own (`OwnSettings`: its port and database URL, plus whatever only it reads), which
each service declares in `services/<name>/settings.py` under its own environment prefix."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus import BusSettings

ServiceName = Literal["order", "inventory", "billing", "notification"]
SERVICES: tuple[ServiceName, ...] = ("order", "inventory", "billing", "notification")
SUBSCRIBERS: tuple[ServiceName, ...] = ("inventory", "billing", "notification")

# hide_input_in_errors: a URL or token with a password must not appear in a startup error.
# populate_by_name: code (tests, `orderbus up`) may pass `data_dir=` where the environment says
# ORDERBUS_DATA_DIR; without it pydantic silently ignores the field name.
_CONFIG = SettingsConfigDict(
    extra="ignore", frozen=True, hide_input_in_errors=True, populate_by_name=True
)

Port = Annotated[int, Field(ge=1, le=65535)]
"""An HTTP port: what a service's own settings declare, with its default (`port: Port = 8001`)."""


class ServiceSettings(BaseSettings):
    """What every service reads alike; each service's own settings are an `OwnSettings`."""

    model_config = _CONFIG

    instance_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    """This process's consumer name; `<service>-<host>-<pid>` when unset."""
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("ORDERBUS_HOST"))
    advertised_host: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9.:\[\]-]{1,253}$",
        validation_alias=AliasChoices("ORDERBUS_ADVERTISED_HOST"),
    )
    """The host peers reach this instance at, where its own name does not resolve for them
    (a Kubernetes pod: its IP, from the downward API)."""
    data_dir: Path = Field(Path(".orderbus"), validation_alias=AliasChoices("ORDERBUS_DATA_DIR"))
    """Where the default SQLite databases live."""

    max_body_bytes: int = Field(
        65_536, ge=1_024, le=16_777_216, validation_alias=AliasChoices("ORDERBUS_MAX_BODY_BYTES")
    )
    """Largest HTTP request body accepted; larger ones get 413 before they are read."""
    outbox_poll_s: float = Field(
        1.0, gt=0, le=60, validation_alias=AliasChoices("ORDERBUS_OUTBOX_POLL_S")
    )
    """How often the outbox relay looks for unpublished events it was not told about."""
    outbox_retention_s: float = Field(
        86_400, ge=0, le=365 * 86_400, validation_alias=AliasChoices("ORDERBUS_OUTBOX_RETENTION_S")
    )
    """How long a published outbox row is kept (for `GET /outbox`-style forensics) before it
    is deleted; unpublished rows are never deleted (`services.runtime.retention`)."""
    inbox_retention_s: float = Field(
        30 * 86_400,
        ge=3_600,
        le=365 * 86_400,
        validation_alias=AliasChoices("ORDERBUS_INBOX_RETENTION_S"),
    )
    """How long an inbox entry (an event id handled) is kept: a delivery of that event later
    than this would be handled again, so keep it past any replay you may do. The default is
    the dead letters' (`BUS_DEAD_LETTER_RETENTION_S`): a replay republishes to the whole
    topic, so every group may see an event again as long as a dead letter can be replayed."""
    activity: bool = Field(True, validation_alias=AliasChoices("ORDERBUS_ACTIVITY"))
    """Publish `instance_activity` (what this instance handles, a heartbeat) for the live
    dashboard; off, the dashboard shows no lanes for this instance."""

    admin_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ORDERBUS_ADMIN_TOKEN")
    )
    """Bearer token for admin endpoints (dashboard controls, dead-letter replay); unset, they
    answer 403. At least 16 characters."""

    shutdown_timeout_s: float = Field(
        25.0, ge=1, le=600, validation_alias=AliasChoices("ORDERBUS_SHUTDOWN_TIMEOUT_S")
    )
    """The whole of a process's shutdown, from the first SIGTERM or SIGINT: past it the
    process logs what is still pending and exits (`services.runtime.shutdown`). Keep it below
    the orchestrator's grace period (compose's `stop_grace_period`, 30 s)."""

    metrics_probe_timeout_s: float = Field(
        2.0, gt=0, le=30, validation_alias=AliasChoices("ORDERBUS_METRICS_PROBE_TIMEOUT_S")
    )
    """How long a `/metrics` scrape may wait for the broker and database backlog gauges."""
    migrate_on_start: bool = Field(True, validation_alias=AliasChoices("ORDERBUS_MIGRATE_ON_START"))
    """Upgrade the service's database to the latest revision when it starts; off, the
    service refuses to start on a database `orderbus migrate` has not brought there."""
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", validation_alias=AliasChoices("ORDERBUS_LOG_FORMAT")
    )
    """`auto`: readable text in a terminal, one JSON object per line otherwise."""
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias=AliasChoices("ORDERBUS_LOG_LEVEL")
    )
    """`info`: a line per batch of events (and per HTTP request); `debug` adds a line per
    event, per order decided and per email."""

    bus: BusSettings = Field(default_factory=BusSettings)

    @field_validator("admin_token")
    @classmethod
    def _check_admin_token(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < 16:
            raise ValueError("ORDERBUS_ADMIN_TOKEN must be at least 16 characters")
        return token

    @property
    def http_drain_s(self) -> float:
        """How long shutdown lets HTTP requests in flight finish: two fifths of the deadline,
        at most 10 s, leaving the rest to the background work, the bus and the database."""
        return min(10.0, self.shutdown_timeout_s * 0.4)

    def instance(self, service: ServiceName) -> str:
        return self.instance_id or f"{service}-{socket.gethostname()[:32]}-{os.getpid()}"


class OwnSettings(BaseSettings):
    """What every service has of its own, the base of its settings model
    (`services/<name>/settings.py`), which sets its environment prefix (`env_prefix="ORDER_"`:
    `ORDER_PORT`, `ORDER_DATABASE_URL`), its default port, and what only it reads. Never read
    itself: without a prefix it would take `PORT` and `DATABASE_URL`."""

    model_config = _CONFIG

    port: Port
    database_url: SecretStr | None = None
    """The service's own database; a SQLite file in the data directory when unset."""


def database_url(settings: ServiceSettings, own: OwnSettings, service: ServiceName) -> str:
    """The service's database: its own URL, else `<data_dir>/<service>.db`."""
    if own.database_url is not None:
        return own.database_url.get_secret_value()
    return f"sqlite:///{settings.data_dir.resolve() / f'{service}.db'}"


def advertised_url(settings: ServiceSettings, own: OwnSettings) -> str:
    """Where peers reach this instance: its host (the machine's name when it listens on every
    interface, as in a container) and its port."""
    host = settings.host
    if host in ("0.0.0.0", "::"):  # noqa: S104
        host = socket.gethostname()
    return f"http://{settings.advertised_host or host}:{own.port}"
