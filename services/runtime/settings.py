"""Service configuration, read once per process from the environment."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus import BusSettings

ServiceName = Literal["order", "inventory", "billing", "notification"]
SERVICES: tuple[ServiceName, ...] = ("order", "inventory", "billing", "notification")
SUBSCRIBERS: tuple[ServiceName, ...] = ("inventory", "billing", "notification")


class ServiceSettings(BaseSettings):
    # hide_input_in_errors: a database URL with a password must not appear in a startup error.
    # populate_by_name: code (tests, `orderbus up`) may pass `data_dir=` where the environment
    # says ORDERBUS_DATA_DIR; without it pydantic silently ignores the field name.
    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, hide_input_in_errors=True, populate_by_name=True
    )

    instance_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    """This process's consumer name; `<service>-<host>-<pid>` when unset."""
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("ORDERBUS_HOST"))
    data_dir: Path = Field(Path(".orderbus"), validation_alias=AliasChoices("ORDERBUS_DATA_DIR"))
    """Where the default SQLite databases live."""

    order_database_url: SecretStr | None = None
    inventory_database_url: SecretStr | None = None
    billing_database_url: SecretStr | None = None
    notification_database_url: SecretStr | None = None

    order_port: int = Field(8000, ge=1, le=65535)
    inventory_port: int = Field(8001, ge=1, le=65535)
    billing_port: int = Field(8002, ge=1, le=65535)
    notification_port: int = Field(8003, ge=1, le=65535)

    max_body_bytes: int = Field(
        65_536, ge=1_024, le=16_777_216, validation_alias=AliasChoices("ORDERBUS_MAX_BODY_BYTES")
    )
    """Largest HTTP request body accepted; larger ones get 413 before they are read."""
    outbox_poll_s: float = Field(
        1.0, gt=0, le=60, validation_alias=AliasChoices("ORDERBUS_OUTBOX_POLL_S")
    )
    """How often the outbox relay looks for unpublished events it was not told about."""

    bus: BusSettings = Field(default_factory=BusSettings)

    def database_url(self, service: ServiceName) -> str:
        url: SecretStr | None = getattr(self, f"{service}_database_url")
        if url is not None:
            return url.get_secret_value()
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / f'{service}.db'}"

    def port(self, service: ServiceName) -> int:
        return int(getattr(self, f"{service}_port"))

    def instance(self, service: ServiceName) -> str:
        return self.instance_id or f"{service}-{socket.gethostname()[:32]}-{os.getpid()}"
