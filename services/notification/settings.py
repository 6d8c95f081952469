"""Notification's own settings: `NOTIFICATION_PORT`, `NOTIFICATION_DATABASE_URL`, and the
origins its WebSocket admits (`ORDERBUS_WS_ALLOWED_ORIGINS`)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import OwnSettings, Port


class NotificationSettings(OwnSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATION_")

    port: Port = 8003
    ws_allowed_origins: str = Field(
        "", validation_alias=AliasChoices("ORDERBUS_WS_ALLOWED_ORIGINS")
    )
    """Comma-separated origins (`https://shop.example`) whose pages may open `/ws`, besides
    the service's own; a browser from any other origin is refused at the handshake."""
