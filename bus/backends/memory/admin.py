"""The memory bus's admin side: what it holds is visible only inside the process running it."""

from __future__ import annotations

from collections.abc import Sequence

from bus.backends.memory.bus import dead_letters, queued, remove_dead_letters
from bus.dead_letters import Stored
from bus.descriptor import Admin
from bus.probes import Backlog, BaseProbe


class MemoryProbe(BaseProbe):
    async def backlog(self, topic: str, group: str) -> Backlog:
        return Backlog(
            lag=queued(self.url, topic, group),
            dead_letters=len(dead_letters(self.url, group)),
        )


class MemoryStore:
    removes_single_entries = True

    def __init__(self, url: str) -> None:
        self.url = url

    async def list(self, group: str) -> list[Stored]:
        return [Stored(str(letter.id), letter) for letter in dead_letters(self.url, group)]

    async def remove(self, group: str, refs: set[str]) -> int:
        return remove_dead_letters(self.url, group, refs)

    async def purge(self, group: str) -> int:
        return await self.remove(group, {s.ref for s in await self.list(group)})


async def remove_topology(url: str, topics: Sequence[str], groups: Sequence[str]) -> None:
    """Nothing outlives the process: the topics go with the last bus of `url`."""


ADMIN = Admin(probe=MemoryProbe, dead_letters=MemoryStore, remove_topology=remove_topology)
