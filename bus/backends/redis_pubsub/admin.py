"""Redis pub/sub's admin side: a channel holds nothing, so only dead letters can be counted."""

from __future__ import annotations

from bus.backends._redis.admin import RedisProbe, RedisStore, remove_topology
from bus.descriptor import Admin
from bus.probes import Backlog


class RedisPubSubProbe(RedisProbe):
    async def backlog(self, topic: str, group: str) -> Backlog:
        return Backlog(dead_letters=await self._dead_letters(group))


ADMIN = Admin(probe=RedisPubSubProbe, dead_letters=RedisStore, remove_topology=remove_topology)
