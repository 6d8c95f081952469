"""The batch pull of a NATS subscription: what has arrived, handed over at once.

FastStream's batch pull subscriber, like nats-py's `fetch(n)`, keeps a pull open until the
batch is full or its timeout has passed. Below a full batch per window every batch waits for
the window: at 1,000 events/s a batch of 16 waited about 16 ms, and its messages' ack wait ran
the whole time. Here a pull waits only for a first message (a lingering request for one),
then asks for what else is there without waiting (`no_wait`, which JetStream answers at once
with the messages it has and a status, `404 No Messages` or `408`), and hands the two over
together. The second pull waits no longer than the first may (`wait_s`, a fraction of the ack
wait): the first message, held meanwhile, is in no pipeline yet that would keep it alive.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from faststream.nats.subscriber.usecases import BatchPullStreamSubscriber
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from nats.aio.msg import Msg

log = logging.getLogger("bus")


async def fetch_ready(
    subscription: JetStreamContext.PullSubscription, most: int, wait_s: float
) -> list[Msg]:
    """Up to `most` messages: waits up to `wait_s` for the first, not at all for the rest.
    An empty list when nothing arrived in `wait_s`."""
    try:
        first = await subscription.fetch(batch=1, timeout=wait_s)
    except NatsTimeoutError:  # nats-py's, an asyncio.TimeoutError: nothing arrived
        return []
    if most <= 1:
        return first
    return first + await _fetch_available(subscription, most - 1, wait_s)


async def _fetch_available(
    subscription: JetStreamContext.PullSubscription, most: int, wait_s: float
) -> list[Msg]:
    """What the consumer has for us now, up to `most`. nats-py has no such call (its `fetch`
    falls back to a lingering pull when nothing waits), so this sends the pull request itself,
    through the subscription's own inbox, as nats-py's `fetch` does (nats-py is pinned by
    uv.lock; tests/integration/test_conformance.py runs this on every NATS test)."""
    inbox: Any = subscription._sub
    request = json.dumps({"batch": most, "no_wait": True}).encode()
    await subscription._nc.publish(subscription._nms, request, subscription._deliver)
    messages: list[Msg] = []
    while len(messages) < most:
        try:
            message = await _next(inbox, wait_s)
        except NatsTimeoutError:
            break  # no answer: what came is handed over, the rest waits for the next pull
        status = JetStreamContext.is_status_msg(message)
        if not status:
            messages.append(message)
        elif status != api.StatusCode.CONTROL_MESSAGE:
            # This pull's end (404, 408), an earlier lingering pull's expiry, or JetStream
            # refusing it (409: too many waiting pulls, a leader change): no more now.
            break
        # else: a heartbeat, not an answer
    return messages


async def _next(inbox: Any, wait_s: float) -> Msg:
    """The inbox's next message: taken from its queue when there (nats-py's `next_msg` starts
    a task and a timer for every message), else awaited for `wait_s` at most."""
    queue = inbox._pending_queue
    if queue.empty():
        message: Msg = await inbox.next_msg(timeout=wait_s)
        return message
    message = queue.get_nowait()
    inbox._pending_size -= len(message.data)  # the accounting next_msg does
    queue.task_done()
    return message


class ReadyBatchPullSubscriber(BatchPullStreamSubscriber):
    """FastStream's batch pull subscriber with its loop replaced by `fetch_ready`: its
    middlewares (metrics, tracing), AsyncAPI entry and start and stop stay FastStream's."""

    __slots__ = ()

    async def _consume_pull(self) -> None:
        subscription = self.subscription
        assert subscription is not None, "started by _create_subscription"
        while self.running:
            try:
                messages = await fetch_ready(
                    subscription, self.pull_sub.batch_size, self.pull_sub.timeout or 0.1
                )
            except (ConnectionClosedError, ServiceUnavailableError):
                # What was fetched stays unacknowledged: JetStream redelivers it. Wait a
                # window before trying again instead of spinning on a closed connection.
                await asyncio.sleep(self.pull_sub.timeout or 0.1)
                continue
            except Exception:  # the consumer's loop must go on: log, wait a window, again
                log.warning("NATS pull failed; pulling again", exc_info=True)
                await asyncio.sleep(self.pull_sub.timeout or 0.1)
                continue
            if messages and self.running:
                await self.consume(messages)
