"""The transactional outbox: an event is written in the same transaction as the state it
announces, and a relay publishes it once that transaction has committed.

A service's handler (or route) calls `enqueue(conn, outbox, topic, event)` inside its
transaction; the relay of each instance claims unpublished rows, publishes them in order (the
bytes stored, as they are, unless a trace stamps the event), waits for the broker to accept
each one, then marks it published.
If the broker is down, rows wait and go out when it returns; a crash between publish and mark
publishes a row twice, which the consumers' inboxes absorb.

Replicas of a service share its database, so they share its outbox: a relay claims a batch for
`CLAIM_S` before publishing it, and the other replicas skip claimed rows. A relay that dies
holding a claim leaves its rows to the others once the claim runs out (or to itself at once
when it restarts under the same instance id, as `orderbus up` does).

A row that can never be published (over `BUS_MAX_EVENT_BYTES`, or not a valid event) would
stop every row behind it, since rows go out in order: the relay moves it to `outbox_parked`
with the reason, and goes on. `GET /outbox/parked` lists them (admin), the gauge
`orderbus_outbox_parked` counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import ValidationError
from sqlalchemy import (
    Column,
    Insert,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bus import names, tracing
from bus.codec import EventTooLarge
from bus.logfields import event_fields
from contracts import CloudEvent
from services.runtime.database import UtcDateTime, reading

if TYPE_CHECKING:
    from services.runtime.service import Runtime

log = logging.getLogger(__name__)

BATCH = 100
CLAIM_S = 30.0
"""How long a relay may hold rows it claimed before another replica may publish them: far
longer than publishing `BATCH` events takes, as a second publisher only makes duplicates."""


def outbox_table(metadata: MetaData) -> Table:
    """The service's outbox, and beside it (in the same metadata) `outbox_parked`."""
    if "outbox" in metadata.tables:  # replicas in one process share the metadata
        return metadata.tables["outbox"]
    parked_table(metadata)
    return Table(
        "outbox",
        metadata,
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("topic", String(64), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("claimed_by", String(64)),
        Column("claimed_until", UtcDateTime),
        Column("published_at", UtcDateTime, index=True),
    )


def parked_table(metadata: MetaData) -> Table:
    """Outbox rows that can never be published, with why (see the module's docstring)."""
    if "outbox_parked" in metadata.tables:
        return metadata.tables["outbox_parked"]
    return Table(
        "outbox_parked",
        metadata,
        Column("seq", Integer, primary_key=True),
        Column("event_id", String(36), nullable=False),
        Column("topic", String(64), nullable=False),
        Column("payload", Text, nullable=False),
        Column("reason", String(200), nullable=False),
        Column("parked_at", UtcDateTime, nullable=False),
    )


async def enqueue(conn: AsyncConnection, outbox: Table, topic: str, event: CloudEvent) -> None:
    """Add `event` to the outbox, in the caller's transaction: it is published iff that commits.

    The row keeps the trace context of the request or handling that wrote it (the event's
    `traceparent`), so the relay's publish, later and in another task, continues that trace.
    """
    await enqueue_many(conn, outbox, [(topic, event)])


async def enqueue_many(
    conn: AsyncConnection,
    outbox: Table,
    events: Sequence[tuple[str, CloudEvent]],
    *,
    max_bytes: int | None = None,
) -> None:
    """`enqueue` for several events in one statement. With `max_bytes`, an event larger than
    that encoded raises `EventTooLarge` before anything is written (the order service refuses
    such an order at the door rather than accept what it could never announce)."""
    now = datetime.now(UTC)
    rows = []
    for topic, event in events:
        payload = with_trace(event).to_json()
        if max_bytes is not None and len(payload) > max_bytes:
            raise EventTooLarge(event, len(payload), max_bytes)
        rows.append(
            {
                "event_id": str(event.id),
                "topic": names.check_topic(topic),
                "payload": payload.decode(),
                "created_at": now,
            }
        )
    await conn.execute(_insert(outbox), rows)


@functools.cache
def _insert(outbox: Table) -> Insert:
    """Built once per table: built per event, a statement cost more than executing it."""
    return insert(outbox)


def with_trace(event: CloudEvent) -> CloudEvent:
    """`event` with the `traceparent` of the span in progress, unless it has one."""
    if event.traceparent is None and (current := tracing.traceparent()) is not None:
        return event.model_copy(update={"traceparent": current})
    return event


class OutboxRelay:
    """Publishes one service's outbox. `wake` it after a commit that enqueued something; it
    also looks every `ORDERBUS_OUTBOX_POLL_S` for rows it was not woken for."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.parked = parked_table(table.metadata)
        self.wake = asyncio.Event()
        self.failing = False
        # Built once, with bound parameters: built per batch they cost more than SQLite
        # spent executing them.
        t = table
        claimable = (
            t.c.published_at.is_(None),
            or_(
                t.c.claimed_until.is_(None),
                t.c.claimed_until < bindparam("now"),
                t.c.claimed_by == bindparam("me"),
            ),
        )
        self._unclaimed = select(t.c.seq).where(*claimable).order_by(t.c.seq).limit(BATCH)
        claim = (
            update(t)
            .values(claimed_by=bindparam("me"), claimed_until=bindparam("until"))
            .returning(t.c.seq, t.c.topic, t.c.payload)
        )
        # The conditions again: a replica may have claimed some of them since we looked (on
        # PostgreSQL a concurrent claim is waited for, then the conditions are checked anew).
        self._claim_rows = claim.where(t.c.seq.in_(bindparam("seqs", expanding=True)), *claimable)
        self._claim_next = claim.where(t.c.seq.in_(self._unclaimed), *claimable)
        self._park = insert(self.parked)
        self._remove_from_outbox = delete(t).where(t.c.seq.in_(bindparam("seqs", expanding=True)))
        self._mark_published = (
            update(t)
            .where(t.c.seq.in_(bindparam("seqs", expanding=True)))
            .values(published_at=bindparam("at"))
        )

    async def run(self, runtime: Runtime) -> None:
        while not runtime.stopping.is_set():
            # Clear before reading the table, so a wake-up set while we publish is kept.
            woken = self.wake.is_set()
            self.wake.clear()
            try:
                # A full batch: there may be more right behind it.
                while await self.publish_pending(runtime, expecting_rows=woken) == BATCH:
                    woken = True
            except Exception as exc:
                # Once with the traceback, then one line per retry: an outage of an hour
                # should not write an hour of tracebacks.
                log.warning(
                    "outbox relay: publishing failed (%s); retrying every %.1fs",
                    type(exc).__name__,
                    runtime.settings.outbox_poll_s,
                    exc_info=not self.failing,
                )
                self.failing = True
            else:
                if self.failing:
                    log.info("outbox relay: publishing again")
                self.failing = False
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that lands as the wake-up completes, and shutdown then waits forever on the relay.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(runtime.settings.outbox_poll_s):
                    await self.wake.wait()

    async def publish_pending(self, runtime: Runtime, *, expecting_rows: bool = False) -> int:
        """Claim up to `BATCH` unpublished rows, publish them in order (pipelined where the
        backend can, `Bus.publish_many`), mark what the broker accepted; return how many
        were claimed. Raises the first refusal once the rest is marked.

        `expecting_rows` (a commit woke the relay, or the last batch was full) claims in one
        statement; otherwise the relay looks first, so that an idle relay's poll never takes
        the write lock."""
        claimed = await self._claim(runtime.engine, runtime.instance, expecting_rows)
        if not claimed:
            return 0
        rows, events, bodies = await self._publishable(runtime, claimed)
        if not rows:
            return len(claimed)
        outcomes = await runtime.bus.publish_many(events, stored=bodies)
        # What went out before the first refusal; the rest goes again next round (some of it
        # may have reached the broker: the inboxes absorb the duplicates).
        accepted = next((n for n, error in enumerate(outcomes) if error is not None), len(rows))
        if accepted:
            # One transaction per batch, not one per row (each a BEGIN IMMEDIATE and a
            # commit; the relay shares the service's one SQLite connection with its
            # requests). A crash before the mark republishes the batch (at most BATCH rows,
            # held by our claim): the inboxes absorb it.
            async with runtime.engine.begin() as conn:
                await conn.execute(
                    self._mark_published,
                    {"seqs": [seq for seq, _, _ in rows[:accepted]], "at": datetime.now(UTC)},
                )
            self._published(runtime, events[:accepted])
        if accepted < len(rows):
            error = outcomes[accepted]
            assert error is not None
            raise error
        return len(claimed)

    async def _publishable(
        self, runtime: Runtime, claimed: list[tuple[int, str, str]]
    ) -> tuple[list[tuple[int, str, str]], list[tuple[str, CloudEvent]], list[bytes]]:
        """The claimed rows that can be published, as events and their stored bytes (which go
        out as they are unless a trace stamps the event); the others are parked."""
        max_bytes = runtime.settings.bus.max_event_bytes
        rows: list[tuple[int, str, str]] = []
        events: list[tuple[str, CloudEvent]] = []
        bodies: list[bytes] = []
        parked: list[dict[str, object]] = []
        for seq, topic, payload in claimed:
            body = payload.encode()
            size = len(body)
            try:
                event = CloudEvent.from_json(body)
            except ValidationError as exc:
                fields = ", ".join(".".join(map(str, e["loc"])) or "-" for e in exc.errors())
                reason, event_id = f"not a valid CloudEvent ({fields})", "-"
            else:
                if size <= max_bytes:
                    rows.append((seq, topic, payload))
                    events.append((topic, event))
                    bodies.append(body)
                    continue
                reason = f"{size} bytes encoded; the limit is {max_bytes} (BUS_MAX_EVENT_BYTES)"
                event_id = str(event.id)
            parked.append(
                {
                    "seq": seq,
                    "event_id": event_id[:36],
                    "topic": topic,
                    "payload": payload,
                    "reason": reason[:200],
                    "parked_at": datetime.now(UTC),
                }
            )
        if parked:
            async with runtime.engine.begin() as conn:
                await conn.execute(self._park, parked)
                await conn.execute(self._remove_from_outbox, {"seqs": [p["seq"] for p in parked]})
            for row in parked:
                log.error(
                    "outbox row %s (%s, event %s) parked: it can never be published: %s",
                    row["seq"],
                    row["topic"],
                    row["event_id"],
                    row["reason"],
                    extra={"action": "park", "service": runtime.service},
                )
        return rows, events, bodies

    def _published(self, runtime: Runtime, events: Sequence[tuple[str, CloudEvent]]) -> None:
        """Counted and shown per event; one INFO line per batch (each event at DEBUG): at a
        few thousand events a second, a line per event cost more than the event."""
        level = logging.INFO if len(events) == 1 else logging.DEBUG
        for topic, event in events:
            runtime.metrics.count(runtime.metrics.published, event.type)
            runtime.activity.record(event, "published")
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "published %s %s for order %s",
                    event.type,
                    event.id,
                    event.subject,
                    extra=event_fields(
                        "publish",
                        event,
                        topic=topic,
                        service=runtime.service,
                        instance=runtime.instance,
                    ),
                )
        if len(events) > 1:
            log.info(
                "published %d events: %s",
                len(events),
                ", ".join(f"{n} {t}" for t, n in Counter(e.type for _, e in events).items()),
                extra={
                    "action": "publish",
                    "service": runtime.service,
                    "instance": runtime.instance,
                },
            )

    async def _claim(
        self, engine: AsyncEngine, instance: str, expecting_rows: bool
    ) -> list[tuple[int, str, str]]:
        now = datetime.now(UTC)
        claiming = {"now": now, "me": instance, "until": now + timedelta(seconds=CLAIM_S)}
        statement = self._claim_next
        if not expecting_rows:
            # Look before claiming: an idle relay then never takes the write lock (SQLite
            # has one).
            async with reading(engine) as conn:
                found = await conn.execute(self._unclaimed, {"now": now, "me": instance})
                candidates = list(found.scalars())
            if not candidates:
                return []
            statement, claiming = self._claim_rows, claiming | {"seqs": candidates}
        async with engine.begin() as conn:
            mine = await conn.execute(statement, claiming)
            # RETURNING promises no order; the relay publishes in the order of writing.
            return sorted((seq, topic, payload) for seq, topic, payload in mine)
