"""The order service's own settings: `ORDER_PORT`, `ORDER_DATABASE_URL`,
`ORDER_DECISION_TIMEOUT_S` and the rate limit's `ORDERBUS_RATE_LIMIT_*`."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import OwnSettings, Port

REDIS_SCHEMES = ("redis", "rediss", "unix")


class OrderSettings(OwnSettings):
    model_config = SettingsConfigDict(env_prefix="ORDER_")

    port: Port = 8000
    decision_timeout_s: float = Field(300.0, ge=1, le=86_400)
    """An order still pending this long after it was placed is rejected (`timed out`): an
    answer dead-lettered or lost (redis-pubsub), or a service that never started, must not
    leave it pending for good. The saga's compensation undoes what a late answer did."""
    rate_limit_per_minute: int = Field(
        600, ge=0, le=1_000_000, validation_alias=AliasChoices("ORDERBUS_RATE_LIMIT_PER_MINUTE")
    )
    """Orders one customer may place from one client address per rate-limit window (a minute
    by default); 0: no limit."""
    rate_limit_per_client_per_minute: int = Field(
        6_000,
        ge=0,
        le=10_000_000,
        validation_alias=AliasChoices("ORDERBUS_RATE_LIMIT_PER_CLIENT_PER_MINUTE"),
    )
    """Orders one client address may place per window, whatever the customers; 0: no limit.
    Behind a proxy, every client has the proxy's address."""
    rate_limit_window_s: int = Field(
        60, ge=1, le=3_600, validation_alias=AliasChoices("ORDERBUS_RATE_LIMIT_WINDOW_S")
    )
    """Length of the fixed window the order rate limit counts in."""
    rate_limit_redis_url: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ORDERBUS_RATE_LIMIT_REDIS_URL")
    )
    """Where replicas share their counts; the bus's Redis when unset on a Redis backend, else
    each process counts alone."""

    @field_validator("rate_limit_redis_url")
    @classmethod
    def _check_rate_limit_redis_url(cls, url: SecretStr | None) -> SecretStr | None:
        # The message names the variable, never the value: it may hold a password.
        if url is not None and urlsplit(url.get_secret_value()).scheme not in REDIS_SCHEMES:
            raise ValueError(
                "ORDERBUS_RATE_LIMIT_REDIS_URL must start redis://, rediss:// or unix://"
            )
        return url
