"""Inventory's own settings: `INVENTORY_PORT`, `INVENTORY_DATABASE_URL`."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.runtime.settings import OwnSettings, Port


class InventorySettings(OwnSettings):
    model_config = SettingsConfigDict(env_prefix="INVENTORY_")

    port: Port = 8001
