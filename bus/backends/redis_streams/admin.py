"""Redis Streams' admin side: a group's lag and pending entries from `XINFO GROUPS`."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from bus.backends._redis.admin import RedisProbe, RedisStore, remove_topology, text
from bus.descriptor import Admin
from bus.probes import Backlog


class RedisStreamsProbe(RedisProbe):
    async def backlog(self, topic: str, group: str) -> Backlog:
        try:
            groups: list[dict[Any, Any]] = await self.client.xinfo_groups(topic)
        except ResponseError:  # no such key: nothing published, no group yet
            groups = []
        found = next((g for g in groups if text(g["name"]) == group), None)
        lag = found.get("lag") if found is not None else None
        return Backlog(
            # Redis reports no lag (nil) after entries were deleted from the stream.
            lag=int(lag) if lag is not None else None,
            pending=int(found["pending"]) if found is not None else 0,
            stream_length=int(await self.client.xlen(topic)),
            dead_letters=await self._dead_letters(group),
        )


ADMIN = Admin(probe=RedisStreamsProbe, dead_letters=RedisStore, remove_topology=remove_topology)
