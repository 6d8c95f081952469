"""What a dead letter carries."""

from __future__ import annotations

from bus.dead_letters import DeadLetter


def test_a_dead_letter_keeps_the_message_and_why_it_failed() -> None:
    def handler() -> None:
        raise RuntimeError("no invoice today")

    try:
        handler()
    except RuntimeError as exc:
        error = exc
    letter = DeadLetter.of(
        b'{"raw": "\xff"}',
        topic="order_created",
        group="billing",
        consumer="billing-2",
        attempts=5,
        error=error,
        event_id="e-1",
    )
    again = DeadLetter.model_validate_json(letter.to_json())
    assert again == letter
    assert again.error == "RuntimeError: no invoice today"
    assert again.traceback is not None
    assert "in handler" in again.traceback
    assert again.envelope == '{"raw": "\ufffd"}'  # invalid UTF-8 kept visibly, not dropped
    assert (again.topic, again.group, again.consumer, again.attempts) == (
        "order_created",
        "billing",
        "billing-2",
        5,
    )
