"""Put the CloudEvent JSON on Redis as it is.

FastStream's default Redis format wraps the body in a binary frame with its own headers. A
structured CloudEvent already carries every attribute, so the plain body loses nothing and
stays readable with `redis-cli` (`XRANGE order_created - +`, `SUBSCRIBE order_created`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faststream.redis.parser.message import MessageFormat


class PlainMessageFormat(MessageFormat):
    @classmethod
    async def encode(
        cls,
        *,
        message: Sequence[Any] | Any,
        reply_to: str | None,
        headers: dict[str, Any] | None,
        correlation_id: str,
        serializer: Any = None,
        codec: Any = None,
    ) -> bytes:
        if not isinstance(message, bytes):
            raise TypeError("the bus publishes encoded CloudEvents (bytes) only")
        return message

    @classmethod
    def parse(cls, data: bytes) -> tuple[bytes, dict[str, Any]]:
        return data, {}
