"""How a service instance takes its events: a batch at a time, through its inbox.

The bus's delivery pipeline decides what happens to each delivery (acknowledged, retried,
dead-lettered); the service adds, around it:
- `inbox_handler`: the batch in one transaction of the inbox, each new event's effect once;
- `faults`: the operator's injected failures and pauses, as a middleware of the pipeline;
- `observer`: what the pipeline decided, counted in metrics and shown in the activity feed.

Every event is checked against the contract's table first (`contracts.admission_error`): the
type its topic carries, from the one service that publishes it; then its data is validated,
once, into the subscription's model, which the service's handler receives.

One INFO line per batch (each event at DEBUG): at a few thousand events a second, a line per
event cost more than the event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence, Set
from typing import TYPE_CHECKING, TypeVar

from pydantic import ValidationError

from bus import Delivery
from bus.codec import PoisonMessage
from bus.logfields import event_fields
from bus.port import BatchHandler, Middleware, Observer, Outcome, Received
from contracts import CloudEvent, admission_error
from contracts.base import OrderEventData

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from services.runtime.service import Runtime, Subscription

D = TypeVar("D", bound=OrderEventData)

log = logging.getLogger("services")


def inbox_handler(runtime: Runtime, subscription: Subscription[D]) -> BatchHandler:
    async def handle(batch: Sequence[Received]) -> None:
        assert runtime.inbox is not None
        # Checked and validated before the transaction: one forged or malformed event fails
        # the batch; handled again one by one, only it goes to the dead letters, at once
        # (retrying cannot mend it).
        data = {id(received): admitted(subscription, received.event) for received in batch}

        async def effect(conn: AsyncConnection, received: Received) -> None:
            assert subscription.handler is not None
            try:
                await subscription.handler(conn, data[id(received)], received)
            except ValidationError as invalid:
                # What the handler built from this event does not fit its own model (an
                # event it announces): the same every time, so no retry can mend it.
                raise PoisonMessage(f"handling: {_first_error(invalid)}") from None

        async def effect_at_once(conn: AsyncConnection, news: Sequence[Received]) -> None:
            assert subscription.batched is not None
            try:
                await subscription.batched(conn, [(data[id(r)], r) for r in news])
            except ValidationError as invalid:
                raise PoisonMessage(f"handling: {_first_error(invalid)}") from None

        metrics = runtime.metrics
        started = time.perf_counter()
        if subscription.batched is not None:
            firsts = await runtime.inbox.handle_batch_at_once(batch, effect_at_once)
        else:
            firsts = await runtime.inbox.handle_batch(batch, effect)
        each_s = (time.perf_counter() - started) / len(batch)
        new: list[D] = []
        for received, first in zip(batch, firsts, strict=True):
            event, delivery = received.event, received.delivery
            metrics.observe_handling(event.type, each_s)
            if first:
                new.append(data[id(received)])
                metrics.count(metrics.consumed, event.type)
                runtime.activity.record(event, "handled", delivery)
            else:
                metrics.count(metrics.duplicates, event.type)
                runtime.activity.record(event, "duplicate", delivery)
            if len(batch) == 1:
                _log_one(runtime, event, delivery, first, logging.INFO)
            elif log.isEnabledFor(logging.DEBUG):
                _log_one(runtime, event, delivery, first, logging.DEBUG)
        if len(batch) > 1:
            log.info(
                "handled %d %s events on %s: %d new, %d duplicate",
                len(batch),
                batch[0].delivery.topic,
                runtime.instance,
                len(new),
                len(batch) - len(new),
                extra={"action": "handle", "topic": batch[0].delivery.topic}
                | _service_fields(runtime),
            )
        if new and runtime.relay is not None:
            runtime.relay.wake.set()  # the effects may have enqueued events: publish them now
        if new and subscription.after_commit is not None:
            await subscription.after_commit(new)

    return handle


def admitted(subscription: Subscription[D], event: CloudEvent) -> D:
    """`event`'s data as the subscription's model, if the contract believes the event; else
    `PoisonMessage`, naming the field and the reason."""
    if (reason := admission_error(subscription.topic, event)) is not None:
        raise PoisonMessage(f"not believed: {reason}")
    try:
        return subscription.model.model_validate(event.data)
    except ValidationError as invalid:
        raise PoisonMessage(f"data: {_first_error(invalid)}") from None


def _first_error(invalid: ValidationError) -> str:
    """The first error's field and reason: `items.0.quantity: Input should be ...`."""
    first = invalid.errors()[0]
    return f"{'.'.join(map(str, first['loc'])) or '-'}: {first['msg']}"


def _log_one(
    runtime: Runtime, event: CloudEvent, delivery: Delivery, first: bool, level: int
) -> None:
    fields = event_fields(
        "handle" if first else "duplicate",
        event,
        topic=delivery.topic,
        service=runtime.service,
        instance=runtime.instance,
        attempt=delivery.attempt,
    )
    if first:
        log.log(
            level,
            "handled %s %s for order %s on %s",
            event.type,
            event.id,
            event.subject,
            runtime.instance,
            extra=fields,
        )
    else:
        log.log(
            level,
            "duplicate %s %s on %s (attempt %s): no effect",
            event.type,
            event.id,
            runtime.instance,
            delivery.attempt,
            extra=fields,
        )


def _service_fields(runtime: Runtime) -> dict[str, str]:
    return {"service": runtime.service, "instance": runtime.instance}


def faults(runtime: Runtime) -> Middleware:
    """The operator's faults (`services.runtime.faults`) as a middleware: a paused instance
    holds its batches; an event chosen to fail fails its call (the pipeline then isolates it,
    and only it is retried)."""

    async def middleware(batch: Sequence[Received], call_next: BatchHandler) -> None:
        injected = runtime.faults
        await injected.wait_running()
        if injected.armed:
            for received in batch:
                injected.check(str(received.event.id))
        await call_next(batch)

    return middleware


def observer(runtime: Runtime, views: Set[str]) -> Observer:
    """Counts and shows what the pipeline decided for each delivery of the service's own
    subscriptions; events of the `views` types (the instance's broadcasts) are not counted."""
    metrics = runtime.metrics

    def observe(
        event: CloudEvent | None,
        delivery: Delivery,
        outcome: Outcome,
        error: BaseException | str | None,
    ) -> None:
        if outcome == "dead_letter_failed":
            metrics.count(metrics.dead_letter_failures, event.type if event else "other")
            return
        if event is None or event.type in views:
            return
        if outcome == "handled":
            if (delivery.attempt or 1) > 1:
                metrics.count(metrics.redelivered, event.type)
            return
        metrics.count(metrics.failures, event.type)
        if (delivery.attempt or 1) > 1:
            metrics.count(metrics.redelivered, event.type)
        failure = error if isinstance(error, BaseException) else RuntimeError(str(error))
        runtime.activity.record(
            event, "failed" if outcome == "retried" else "dead_lettered", delivery, failure
        )

    return observe
