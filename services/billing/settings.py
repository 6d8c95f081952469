"""Billing's own settings: `BILLING_PORT`, `BILLING_DATABASE_URL`."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.runtime.settings import OwnSettings, Port


class BillingSettings(OwnSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_")

    port: Port = 8002
