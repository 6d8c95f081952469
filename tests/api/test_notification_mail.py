"""The notification "email" is sent at least once: recorded in the notification's own
transaction, so a mail API that fails (or a process that stops before sending) loses nothing,
and an email already sent is not sent again."""

from __future__ import annotations

import sqlite3
from collections import Counter

import pytest

from bus import Bus
from contracts import ORDER_CREATED
from services.notification import mail
from services.runtime.settings import ServiceSettings
from tests.api.conftest import Running, order_event
from tests.polling import eventually


def unsent(settings: ServiceSettings) -> list[tuple[str, str]]:
    with sqlite3.connect(settings.data_dir / "notification.db") as db:
        return list(db.execute("SELECT order_id, kind FROM mail_queue"))


async def test_an_email_the_mail_api_refused_is_sent_after_a_restart_and_a_sent_one_is_not(
    running: Running,
    publisher: Bus,
    settings: ServiceSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accepted, refused = order_event(("KB-001", 1)), order_event(("KB-001", 2))
    sent: Counter[str] = Counter()
    mail_api_down_for = {str(refused.subject)}

    async def mail_api(customer_id: str, message: str) -> None:
        order_id = next(o for o in (str(accepted.subject), str(refused.subject)) if o in message)
        if order_id in mail_api_down_for:
            raise ConnectionError("mail API unavailable")
        sent[order_id] += 1

    monkeypatch.setattr(mail, "send_email", mail_api)

    async with running("notification") as notification:
        await publisher.publish(ORDER_CREATED, accepted)
        await publisher.publish(ORDER_CREATED, refused)

        async def only_the_refused_waits() -> bool | None:
            return True if unsent(settings) == [(str(refused.subject), "received")] else None

        await eventually(only_the_refused_waits)
        assert sent == {str(accepted.subject): 1}
        rows = (await notification.get("/notifications")).json()
        assert {row["order_id"] for row in rows} == {accepted.subject, refused.subject}

    mail_api_down_for.clear()
    async with running("notification"):

        async def queue_empty() -> bool | None:
            return True if unsent(settings) == [] else None

        await eventually(queue_empty)
    assert sent == {str(accepted.subject): 1, str(refused.subject): 1}
