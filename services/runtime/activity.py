"""What this instance handled lately, published for the live dashboard (`instance_activity`).

Every instance counts each delivery (handled, duplicate, failed, dead-lettered; the order
service its publishes) and publishes a report: within `BATCH_S` of the first record when
busy, and a heartbeat every `HEARTBEAT_S` when idle, so the dashboard knows who is alive
(presence with a TTL). Batching keeps the cost to a few small events a second per instance,
whatever the load. It is a view, best effort: the records are bounded, and a batch the broker
refuses is dropped, never retried.

The events themselves are recorded only while a dashboard watches: a dashboard with a browser
on its activity feed asks every instance it hears of (`POST /admin/watch`, behind the admin
token) to record for `WATCH_S`, again and again while the browser stays. Nobody watching, a
delivery costs a counter, not a record. An instance records from its start for `WATCH_S`
too (a dashboard already open sees its first events), and always where no admin token is set
(no dashboard could ask).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from pydantic import SecretStr

from bus import Bus, BusSettings, Delivery, create_bus
from contracts import INSTANCE_ACTIVITY, CloudEvent, HandledEvent, InstanceActivity
from contracts.live import ACTIVITY_EVENTS_MAX, INSTANCE_ACTIVITY_SCHEMA, Outcome
from services.runtime.admin import report_signature

log = logging.getLogger(__name__)

BATCH_S = 0.25
HEARTBEAT_S = 2.0
TOTALS_EVERY_S = 1.0
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0
KEPT = 1_000
"""Records waiting for the next batch; past that the oldest are dropped (and counted)."""
WATCH_S = 10.0
"""How long an instance records its events when a dashboard asks (`watch`); a dashboard
asks again every third of it while a browser follows its activity feed."""
WATCH_MAX_S = 60.0

Totals = Callable[[], Awaitable[dict[str, int]]]
_Record = tuple[CloudEvent, Outcome, int | None, str | None, datetime]
"""An event, what became of it, its attempt, the error, when."""


def _handled(
    event: CloudEvent, outcome: Outcome, attempt: int | None, error: str | None, at: datetime
) -> HandledEvent:
    return HandledEvent(
        event_id=str(event.id),
        type=event.type,
        order_id=event.subject,
        attempt=attempt,
        outcome=outcome,
        latency_ms=max(0.0, (at - event.time).total_seconds() * 1000),
        at=at,
        error=error,
    )


def signed_fields(report: InstanceActivity) -> tuple[str, ...]:
    """What a report's signature covers besides its time: what a dashboard acts on (it calls
    `url` with the token) and what the peers of a notification instance act on (`clients`:
    they push only while someone listens)."""
    return report.service, report.instance, report.url, str(report.clients)


class Activity:
    def __init__(
        self, service: str, instance: str, url: str, backend: str, token: SecretStr | None = None
    ) -> None:
        self.service = service
        self.token = token
        """The admin token, to sign each report's address (`report_signature`)."""
        self.instance = instance
        self.url = url
        self.backend = backend
        self.started_at = datetime.now(UTC)
        self.counters: dict[Outcome, int] = dict.fromkeys(
            ("handled", "duplicate", "failed", "dead_lettered", "published"), 0
        )
        # Kept as they come and made into `HandledEvent`s only when reported: at thousands of
        # deliveries a second most records are dropped unseen, and a model each cost more
        # than the rest of the record.
        self._pending: deque[_Record] = deque(maxlen=KEPT)
        self._dropped = 0
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._watched_until = time.monotonic() + WATCH_S
        self.totals: Totals | None = None
        self.extra: dict[str, Callable[[], int | bool]] = {}
        """Fields read for each report: `paused`, `fail_next`, `clients`."""

    @property
    def watched(self) -> bool:
        """Whether events are recorded: a dashboard asked lately, or none can ask (no token)."""
        return self.token is None or time.monotonic() < self._watched_until

    @property
    def watched_until(self) -> float:
        """Until when (`time.monotonic()`) events are recorded, unless there is no token."""
        return self._watched_until

    def watch(self, seconds: float) -> None:
        """Record events for the next `seconds` (at most `WATCH_MAX_S`): a dashboard watches."""
        until = time.monotonic() + min(seconds, WATCH_MAX_S)
        self._watched_until = max(self._watched_until, until)

    def record(
        self,
        event: CloudEvent,
        outcome: Outcome,
        delivery: Delivery | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.counters[outcome] += 1
        if not self.watched:
            return  # nobody would see it; the counters go out with every heartbeat
        if len(self._pending) == self._pending.maxlen:
            self._dropped += 1
        self._pending.append(
            (
                event,
                outcome,
                delivery.attempt if delivery is not None else None,
                f"{type(error).__name__}: {error}"[:200] if error is not None else None,
                datetime.now(UTC),
            )
        )
        self._wake.set()

    async def run(self, settings: BusSettings) -> None:
        """Publish batches until `stop()`, on a connection of its own (publish only): the
        service's consumers never share a client with this chatter. On Kafka they did, and
        a consumer closing while its process published heartbeats could not leave its group
        (a broker that never expires sessions, such as Tansu, then held the group)."""
        pause_s = RECONNECT_MIN_S
        while not self._stopping.is_set():
            bus = create_bus(settings)
            try:
                await bus.start()
                await self._report(bus)
                return
            except Exception:  # noqa: BLE001 - a view: without a broker there is nothing to show
                level = logging.WARNING if pause_s == RECONNECT_MIN_S else logging.DEBUG
                log.log(
                    level,
                    "activity of %s not published: no broker connection (trying again)",
                    self.instance,
                )
            finally:
                with contextlib.suppress(Exception):
                    await bus.close()
            # Tried again, not given up: the peers of a notification instance publish their
            # live pushes for its browsers only once its reports say it holds some.
            await self._pause(pause_s, self._stopping)
            pause_s = min(pause_s * 2, RECONNECT_MAX_S)

    async def _report(self, bus: Bus) -> None:
        totals: dict[str, int] = {}
        totals_at = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            await self._pause(HEARTBEAT_S, self._wake)
            # Gather what arrives right behind the first record.
            await self._pause(BATCH_S, self._stopping)
            if self._stopping.is_set():
                return
            self._wake.clear()
            if self.totals is not None and loop.time() - totals_at >= TOTALS_EVERY_S:
                with contextlib.suppress(Exception):  # a view: an unreachable database skips
                    totals = await self.totals()
                totals_at = loop.time()
            await self._publish(bus, totals)
            if self._pending:  # more than one batch was waiting
                self._wake.set()

    def wake(self) -> None:
        """Report soon (within `BATCH_S`), not at the next heartbeat: something others act on
        changed here (a browser connected to this notification instance)."""
        self._wake.set()

    def stop(self) -> None:
        """Have `run` return at its next pause (after the batch it is publishing, if any)."""
        self._stopping.set()
        self._wake.set()

    @staticmethod
    async def _pause(seconds: float, until: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await until.wait()

    def report(self, totals: dict[str, int]) -> InstanceActivity:
        events = [
            _handled(*self._pending.popleft())
            for _ in range(min(len(self._pending), ACTIVITY_EVENTS_MAX))
        ]
        dropped, self._dropped = self._dropped, 0
        now = datetime.now(UTC)
        report = InstanceActivity.model_validate(
            {
                "service": self.service,
                "instance": self.instance,
                "url": self.url,
                "backend": self.backend,
                "started_at": self.started_at,
                "counters": self.counters,
                "totals": totals,
                "events": events,
                "dropped": dropped,
                "reported_at": now,
                **{name: read() for name, read in self.extra.items()},
            }
        )
        if self.token is None:
            return report
        signature = report_signature(self.token, now, *signed_fields(report))
        return report.model_copy(update={"signature": signature})

    async def _publish(self, bus: Bus, totals: dict[str, int]) -> None:
        report = self.report(totals)
        event = CloudEvent.of(
            report,
            type=INSTANCE_ACTIVITY,
            source=f"/services/{self.service}/{self.instance}",
            dataschema=INSTANCE_ACTIVITY_SCHEMA,
        )
        try:
            await bus.publish(INSTANCE_ACTIVITY, event)
        except Exception:  # best effort: the next heartbeat says the same and more
            log.debug("activity of %s not published", self.instance, exc_info=True)
