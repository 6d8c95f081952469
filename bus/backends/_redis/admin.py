"""The admin side both Redis backends share: dead letters are a stream `dlq.<group>` on both."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as redis

from bus import names
from bus.backends._redis import DATA_FIELD
from bus.dead_letters import Stored, parse
from bus.probes import BaseProbe


class RedisProbe(BaseProbe):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.client = redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    async def close(self) -> None:
        await self.client.aclose()

    async def _dead_letters(self, group: str) -> int:
        return int(await self.client.xlen(names.dead_letters(group)))


class RedisStore:
    removes_single_entries = True

    def __init__(self, url: str) -> None:
        self.url = url

    async def list(self, group: str) -> list[Stored]:
        client = redis.from_url(self.url)
        try:
            entries = await client.xrange(names.dead_letters(group)) or []
        finally:
            await client.aclose()
        return [
            parse(text(ref), (fields or {}).get(DATA_FIELD), group)
            for ref, fields in entries
            if ref is not None
        ]

    async def remove(self, group: str, refs: set[str]) -> int:
        client = redis.from_url(self.url)
        try:
            return int(await client.xdel(names.dead_letters(group), *refs)) if refs else 0
        finally:
            await client.aclose()

    async def purge(self, group: str) -> int:
        return await self.remove(group, {s.ref for s in await self.list(group)})


async def remove_topology(url: str, topics: Sequence[str], groups: Sequence[str]) -> None:
    """The topics' keys (streams; pub/sub channels have none) and the dead-letter streams."""
    keys = [*topics, *(names.dead_letters(g) for g in groups)]
    client = redis.from_url(url)
    try:
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
