"""Scenarios 1-3: how events flow. Fan-out, competing consumers, an offline subscriber."""

from __future__ import annotations

from bus import backend_info
from orderbus.demo.stage import Outcome, Stage, short, wait_until

WAIT_S = 30.0
"""How long a scenario waits for what it expects before reporting that it did not happen."""


async def fan_out(stage: Stage) -> Outcome:
    outcome = Outcome(1, "Fan-out: one order, three services")
    consumers = await stage.consumers(
        ("inventory", "inventory-1"), ("billing", "billing-1"), ("notification", "notification-1")
    )
    [event] = await stage.publish(1)
    await wait_until(lambda: all(c.got() for c in consumers), WAIT_S)
    outcome.headers = ("service", "group", "instance", "order", "copies")
    outcome.rows = [
        (c.service, stage.group(c.service), c.instance, short(event.subject), len(c.got()))
        for c in consumers
    ]
    reached = sum(1 for c in consumers if c.got())
    outcome.facts = {"published": 1, "services_reached": reached}
    outcome.lesson = (
        f"fan-out: 1 order_created event reached {reached} of 3 services, because each "
        "service subscribes under a group of its own and every group gets its own copy."
    )
    return outcome


async def competing_consumers(stage: Stage) -> Outcome:
    outcome = Outcome(2, "Competing consumers: two billing replicas, twenty orders")
    competing = backend_info(stage.settings.backend).capabilities.competing_consumers
    replicas = await stage.consumers(
        ("billing", "billing-1"), ("billing", "billing-2"), work_s=0.01
    )
    events = await stage.publish(20)
    every = 20 * (1 if competing else len(replicas))
    await wait_until(lambda: sum(len(r.got()) for r in replicas) >= every, WAIT_S)
    counts = [len(r.got()) for r in replicas]
    distinct = len({g.event_id for r in replicas for g in r.got()})
    outcome.headers = ("instance", "group", "orders handled", "of published")
    outcome.rows = [
        (r.instance, stage.group("billing"), n, len(events))
        for r, n in zip(replicas, counts, strict=True)
    ]
    outcome.facts = {
        "published": len(events),
        "billing-1": counts[0],
        "billing-2": counts[1],
        "distinct": distinct,
    }
    if competing:
        outcome.lesson = (
            f"competing consumers: two replicas in one group split {len(events)} orders "
            f"({counts[0]} + {counts[1]}), each order handled once. Add replicas to go faster."
        )
    else:
        outcome.lesson = (
            f"{stage.settings.backend} has no consumer groups: both replicas got all "
            f"{len(events)} orders ({counts[0]} and {counts[1]}); a service here needs an inbox "
            "to act once per order (orderbus services have one)."
        )
    return outcome


async def offline_subscriber(stage: Stage) -> Outcome:
    outcome = Outcome(3, "Pub/sub vs streams: a subscriber offline for a moment")
    catches_up = backend_info(stage.settings.backend).capabilities.offline_catch_up
    [online] = await stage.consumers(("notification", "notification-1"))
    before = await stage.publish(2)
    await wait_until(lambda: len(online.got()) >= 2, WAIT_S)
    await stage.stop(online)  # notification goes offline...
    offline = await stage.publish(5)  # ...while these are published...
    [back] = await stage.consumers(("notification", "notification-1"))  # ...and returns
    after = await stage.publish(2)

    def seen(events: list[str]) -> int:
        ids = {g.event_id for g in back.got()} | {g.event_id for g in online.got()}
        return sum(1 for e in events if e in ids)

    after_ids = [str(e.id) for e in after]
    offline_ids = [str(e.id) for e in offline]
    # The two published after its return arrive either way; on a durable backend the five
    # it missed arrive too (before them: per-group order). Wait for what the backend promises.
    await wait_until(lambda: seen(after_ids) == 2, WAIT_S)
    if catches_up:
        await wait_until(lambda: seen(offline_ids) == 5, WAIT_S)
    caught = seen(offline_ids)
    outcome.headers = ("phase", "published", "received by notification")
    outcome.rows = [
        ("online", len(before), seen([str(e.id) for e in before])),
        ("offline (stopped)", len(offline), caught),
        ("back online", len(after), seen(after_ids)),
    ]
    missed = len(offline) - caught
    outcome.facts = {"published_offline": len(offline), "caught_up": caught, "missed": missed}
    if missed == 0:
        outcome.lesson = (
            f"{stage.settings.backend} kept the {len(offline)} events published while "
            "notification was offline (its group's queue/offset waited), and it caught up."
        )
    else:
        outcome.lesson = (
            f"{stage.settings.backend} missed {missed} of {len(offline)} events published while "
            "notification was offline: nothing keeps events for a subscriber that is away. "
            "Use redis-streams, rabbitmq, kafka or nats when every event matters."
        )
    return outcome
