"""NATS JetStream's admin side: consumer info for lag and pending, dead letters read and
deleted by stream sequence, streams deleted."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import nats
from nats.js.errors import NotFoundError

from bus.backends.nats import dead_letter_stream
from bus.dead_letters import Stored, parse
from bus.descriptor import Admin
from bus.probes import Backlog, BaseProbe


class NatsProbe(BaseProbe):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.client: Any = None

    async def backlog(self, topic: str, group: str) -> Backlog:

        if self.client is None or self.client.is_closed:
            self.client = await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=1)
        js = self.client.jetstream(timeout=5)
        lag = pending = None
        with contextlib.suppress(NotFoundError):
            info = await js.consumer_info(topic, group)
            lag, pending = info.num_pending, info.num_ack_pending
        dead = 0
        with contextlib.suppress(NotFoundError):
            dead = (await js.stream_info(dead_letter_stream(group))).state.messages
        return Backlog(lag=lag, pending=pending, dead_letters=dead)

    async def close(self) -> None:
        if self.client is not None and not self.client.is_closed:
            await self.client.close()


class NatsStore:
    removes_single_entries = True

    def __init__(self, url: str) -> None:
        self.url = url

    async def list(self, group: str) -> list[Stored]:

        client = await nats.connect(self.url)
        stream = dead_letter_stream(group)
        stored: list[Stored] = []
        try:
            js = client.jetstream()
            info = await js.stream_info(stream)
            # An empty stream reports first_seq 0, and asking for message 0 is a 400.
            for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
                with contextlib.suppress(NotFoundError):  # a gap: removed earlier
                    message = await js.get_msg(stream, seq)
                    stored.append(parse(str(seq), message.data, group))
        except NotFoundError:
            pass  # no stream: nothing dead-lettered yet
        finally:
            await client.drain()
        return stored

    async def remove(self, group: str, refs: set[str]) -> int:

        client = await nats.connect(self.url)
        try:
            js = client.jetstream()
            for ref in refs:
                await js.delete_msg(dead_letter_stream(group), int(ref))
        finally:
            await client.drain()
        return len(refs)

    async def purge(self, group: str) -> int:
        return await self.remove(group, {s.ref for s in await self.list(group)})


async def remove_topology(url: str, topics: Sequence[str], groups: Sequence[str]) -> None:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        for stream in [*topics, *(dead_letter_stream(g) for g in groups)]:
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream)
    finally:
        await client.drain()


ADMIN = Admin(probe=NatsProbe, dead_letters=NatsStore, remove_topology=remove_topology)
