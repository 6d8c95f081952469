"""Coalesced acknowledgements: one send at a time carries all made meanwhile, none dropped."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bus.backends import _coalesced_acks
from bus.backends._coalesced_acks import CoalescedAcks


class Broker:
    """Records each send; a send stays on the wire until the test lets it answer."""

    def __init__(self) -> None:
        self.sent: list[list[int]] = []
        self.answer = asyncio.Event()
        self.fail_next = False

    async def send(self, batch: list[int]) -> None:
        self.sent.append(batch)
        await self.answer.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("broker went away")


async def test_acks_made_while_one_is_on_the_wire_go_out_together_in_order() -> None:
    broker = Broker()
    acks = CoalescedAcks(broker.send, "test")

    await acks.add(1)  # returns at once: the consumer goes on
    await asyncio.sleep(0)  # the sender takes it
    for n in (2, 3, 4):
        await acks.add(n)
    assert broker.sent == [[1]]

    broker.answer.set()
    await acks.flush()
    assert broker.sent == [[1], [2, 3, 4]]


async def test_after_drain_each_ack_is_sent_before_add_returns() -> None:
    broker = Broker()
    broker.answer.set()
    acks = CoalescedAcks(broker.send, "test")
    await acks.add(1)
    await acks.drain()
    assert broker.sent == [[1]]

    await acks.add(2)
    assert broker.sent == [[1], [2]]  # the connection may close right after this returns


async def test_a_failed_send_is_logged_and_later_acks_still_go_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker()
    broker.answer.set()
    broker.fail_next = True
    acks = CoalescedAcks(broker.send, "order_created/billing")

    with caplog.at_level(logging.WARNING, logger=_coalesced_acks.__name__):
        await acks.add(1)
        await acks.flush()
        await acks.add(2)
        await acks.flush()

    assert broker.sent == [[1], [2]]
    assert "could not acknowledge 1 event(s) of order_created/billing" in caplog.text


async def test_add_waits_for_the_broker_once_the_bound_is_reached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_coalesced_acks, "MAX_WAITING", 3)
    broker = Broker()
    acks = CoalescedAcks(broker.send, "test")
    await acks.add(0)
    await asyncio.sleep(0)  # 0 is on the wire, unanswered
    await acks.add(1)
    await acks.add(2)

    third = asyncio.create_task(acks.add(3))
    await asyncio.sleep(0.01)
    assert not third.done(), "an ack past the bound must wait for the broker"

    broker.answer.set()
    await third
    assert broker.sent == [[0], [1, 2, 3]]
