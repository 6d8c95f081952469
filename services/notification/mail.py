"""The notification "email", sent at least once: a crash between the commit and the send
loses nothing.

The handler writes the email to `mail_queue` in the transaction that records the
notification, claimed by its own instance for `CLAIM_S`. After the commit `Mailer.deliver`
sends it and deletes the row. If the send fails, or the process dies first, the row stays:
`Mailer.run` sends it once the claim runs out (on any replica), or at once when the instance
restarts under the same id, as `orderbus up` does. A crash between a send and its delete sends
that email twice, which is what "at least once" costs; the mail API's own idempotency key
(order id and kind) is where a real system would absorb it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, bindparam, delete, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notification.store import mail_queue
from services.runtime.database import reading

if TYPE_CHECKING:
    from services.notification.handlers import Notice
    from services.runtime.service import Runtime

log = logging.getLogger(__name__)
email = logging.getLogger("notification.email")
"""The "email" sink: a DEBUG line per message, where a real system would call its mail API;
`Mailer` writes one INFO line per batch sent."""

BATCH = 100
CLAIM_S = 30.0
"""How long an instance may hold an email it has not sent before another may send it: far
longer than a send takes, as a second sender only makes duplicates."""
SWEEP_S = 5.0
"""How often `Mailer.run` looks for emails whose claim ran out."""

_QUEUE = insert(mail_queue)
_key = tuple_(mail_queue.c.order_id, mail_queue.c.kind)
_SENT = delete(mail_queue).where(_key.in_(bindparam("keys", expanding=True)))
_claimable = or_(
    mail_queue.c.claimed_until < bindparam("now"),
    # Claimed by this instance before this process started: nobody is sending them.
    and_(
        mail_queue.c.claimed_by == bindparam("me"),
        mail_queue.c.claimed_until < bindparam("mine_before"),
    ),
)
_DUE = (
    select(mail_queue.c.order_id, mail_queue.c.kind)
    .where(_claimable)
    .order_by(mail_queue.c.claimed_until)
    .limit(BATCH)
)
# The conditions again: a replica may have claimed some of them since we looked.
_CLAIM = (
    update(mail_queue)
    .where(_key.in_(bindparam("keys", expanding=True)), _claimable)
    .values(claimed_by=bindparam("me"), claimed_until=bindparam("until"))
    .returning(
        mail_queue.c.order_id, mail_queue.c.kind, mail_queue.c.customer_id, mail_queue.c.message
    )
)


async def send_email(customer_id: str, message: str) -> None:
    """Where a real system calls its mail API (with the order id and kind as idempotency key)."""
    email.debug("to customer %s: %s", customer_id, message)


async def queue(conn: AsyncConnection, notices: Sequence[Notice], instance: str) -> None:
    """Record the emails of `notices`, claimed by `instance`, in the caller's transaction (one
    statement for all of them)."""
    claimed_until = datetime.now(UTC) + timedelta(seconds=CLAIM_S)
    await conn.execute(
        _QUEUE,
        [
            {
                "order_id": notice.order_id,
                "kind": notice.kind,
                "customer_id": notice.customer_id,
                "message": notice.message,
                "claimed_by": instance,
                "claimed_until": claimed_until,
            }
            for notice in notices
        ],
    )


class Mailer:
    """Sends what `queue` recorded: `deliver` right after the commit, `run` what was left."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        # Before the app starts, so before any email of this process is queued: a row of
        # ours claimed earlier is a previous process's, which nobody is sending.
        self._started = datetime.now(UTC)

    def bind(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def runtime(self) -> Runtime:
        assert self._runtime is not None, "bind() the mailer to its runtime first"
        return self._runtime

    async def deliver(self, notices: Sequence[Notice]) -> None:
        """Send the emails of `notices` (one batch's) now, then delete the sent in one
        statement; what fails to send, `run` sends later."""
        sent: list[tuple[str, str]] = []
        for notice in notices:
            try:
                await send_email(notice.customer_id, notice.message)
            except Exception as exc:  # noqa: BLE001 - whatever the mail API raises, `run` retries
                log.warning(
                    "email for order %s (%s) not sent (%s); retried in %.0fs",
                    notice.order_id,
                    notice.kind,
                    type(exc).__name__,
                    CLAIM_S,
                )
                continue
            sent.append((notice.order_id, notice.kind))
        if not sent:
            return
        try:
            async with self.runtime.engine.begin() as conn:
                await conn.execute(_SENT, {"keys": sent})
        except Exception as exc:  # noqa: BLE001 - sent; `run` may send them again (at least once)
            log.warning("%d emails sent, not marked (%s)", len(sent), type(exc).__name__)
            return
        log.info("emails sent: %d", len(sent))

    async def run(self, runtime: Runtime) -> None:
        """A background task: every `SWEEP_S`, send the emails nobody is sending."""
        while not runtime.stopping.is_set():
            try:
                while await self.send_due(runtime) == BATCH:
                    pass
            except Exception as exc:  # noqa: BLE001 - the database is away: look again later
                log.warning(
                    "mail sweep failed (%s); retrying in %.0fs", type(exc).__name__, SWEEP_S
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.stopping.wait(), SWEEP_S)

    async def send_due(self, runtime: Runtime) -> int:
        """Claim the emails whose claim ran out, send them, delete the sent: how many were due."""
        now = datetime.now(UTC)
        when = {
            "now": now,
            "me": runtime.instance,
            "mine_before": self._started + timedelta(seconds=CLAIM_S),
        }
        async with reading(runtime.engine) as conn:  # look first: no write lock when idle
            due = [tuple(row) for row in await conn.execute(_DUE, when)]
        if not due:
            return 0
        async with runtime.engine.begin() as conn:
            until = now + timedelta(seconds=CLAIM_S)
            claimed = list(await conn.execute(_CLAIM, when | {"keys": due, "until": until}))
        sent: list[tuple[str, str]] = []
        for order_id, kind, customer_id, message in claimed:
            try:
                await send_email(customer_id, message)
            except Exception as exc:  # noqa: BLE001 - left claimed: retried once the claim ends
                log.warning(
                    "email for order %s (%s) not sent (%s)", order_id, kind, type(exc).__name__
                )
                continue
            sent.append((order_id, kind))
        if sent:
            async with runtime.engine.begin() as conn:
                await conn.execute(_SENT, {"keys": sent})
            log.info("sent %d emails left unsent", len(sent))
        return len(due)
