"""Scenarios 4-6: when things go wrong. A crash, a poison message, a slow consumer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time

from bus import backend_info, names
from bus.dead_letters import open_store
from contracts import CloudEvent
from orderbus.demo.flow import WAIT_S
from orderbus.demo.stage import Outcome, Stage, order_event, poll, short, wait_until
from services.runtime.dead_letter_routes import replay_letters

NO_CRASH_ON = {
    "memory": "needs a real broker: the memory bus lives in its process and dies with it, "
    "taking what it held along",
    "kafka": "a crashed Kafka consumer's partitions move only once the broker expires its "
    "session (session.timeout.ms, 45 s by default; never on Tansu, the test broker): see "
    "tests/e2e/test_replica_crash.py for Kafka under kill -9",
}


async def crash_and_redelivery(stage: Stage) -> Outcome:
    outcome = Outcome(4, "Crash and redelivery: billing-1 dies holding an order")
    settings = stage.settings
    if settings.backend in NO_CRASH_ON:
        outcome.skipped = NO_CRASH_ON[settings.backend]
        return outcome
    env = os.environ | {
        "BUS_BACKEND": settings.backend,
        "BUS_URL": settings.resolved_url,  # the environment, not argv: it may hold a password
        "BUS_REDELIVERY_AFTER_MS": str(settings.redelivery_after_ms),
        "BUS_PREFETCH": str(settings.prefetch),
        "DEMO_TOPIC": stage.topic,
        "DEMO_GROUP": stage.group("billing"),
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orderbus.demo.crash_worker", env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert worker.stdout is not None
        ready = await asyncio.wait_for(worker.stdout.readline(), WAIT_S)
        if ready.strip() != b"ready":
            raise RuntimeError("the crash worker did not start (its error is above)")
        [event] = await stage.publish(1)
        took = (await asyncio.wait_for(worker.stdout.readline(), WAIT_S)).split()
        await asyncio.wait_for(worker.wait(), WAIT_S)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    died_at = time.monotonic()
    [survivor] = await stage.consumers(("billing", "billing-2"))
    outcome.headers = ("step", "instance", "what happened")
    outcome.rows = [
        (1, "billing-1", f"took order {short(event.subject)} (attempt {took[-1].decode()})"),
        (2, "billing-1", f"died inside its handler, exit {worker.returncode}: no ack"),
    ]
    if backend_info(settings.backend).capabilities.redelivery:
        redelivered = await wait_until(lambda: bool(survivor.got()), WAIT_S)
        after_s = time.monotonic() - died_at
        attempt = survivor.got()[0].attempt if redelivered else None
        outcome.rows.append(
            (
                3,
                "billing-2",
                f"got it again after {after_s:.1f}s (attempt {attempt or '-'})"
                if redelivered
                else f"did not get it within {WAIT_S:.0f}s",
            )
        )
        outcome.facts = {"redelivered": int(redelivered), "lost": int(not redelivered)}
        outcome.lesson = (
            "at-least-once: the broker gave the unacknowledged order to the surviving "
            "replica. It may run twice, so handlers must be idempotent (an inbox)."
        )
    else:
        # No redelivery at all: once a later event reaches the survivor, the lost one is gone
        # for good (nothing holds it), so there is nothing to wait for.
        [marker] = await stage.publish(1)
        await wait_until(lambda: any(g.event_id == str(marker.id) for g in survivor.got()), WAIT_S)
        lost = not any(g.event_id == str(event.id) for g in survivor.got())
        outcome.rows.append(
            (3, "billing-2", "never got it: the order is lost" if lost else "got it")
        )
        outcome.facts = {"redelivered": int(not lost), "lost": int(lost)}
        outcome.lesson = (
            f"{settings.backend} is at-most-once: a message is gone once pushed, so a crash "
            "loses what the consumer held. Use a backend with acknowledgements."
        )
    return outcome


async def poison_and_replay(stage: Stage) -> Outcome:
    outcome = Outcome(5, "Poison message: retries, the dead-letter queue, then replay")
    events = [order_event() for _ in range(3)]
    poison = str(events[1].id)
    bug = [True]

    def fails(event: CloudEvent) -> bool:
        return bug[0] and str(event.id) == poison

    group = stage.group("billing")
    store = open_store(stage.settings)
    [billing] = await stage.consumers(("billing", "billing-1"), fails=fails)
    await stage.publish_events(events)
    await wait_until(lambda: len(billing.got()) >= 2, WAIT_S)

    async def dead_lettered() -> bool:
        return bool(await store.list(group))

    await poll(dead_lettered, WAIT_S)  # the dead-letter store is the broker's: poll it
    tries = [r for r in stage.received if r.event_id == poison]
    stored = await store.list(group)
    bug[0] = False  # "fix the bug", then replay
    replayed = await replay_letters(store, group, stored, await stage.publisher(), {stage.topic})
    await wait_until(lambda: any(g.event_id == poison for g in billing.got()), WAIT_S)
    left = len(await store.list(group))

    outcome.headers = ("order", "attempt", "outcome")
    for r in stage.received:
        outcome.rows.append(
            (short(r.order_id), r.attempt or 1, "failed: demo bug" if r.failed else "handled")
        )
    dlq = names.dead_letters(group)
    outcome.rows.insert(
        len(outcome.rows) - 1,
        (short(events[1].subject), "-", f"dead-lettered to {dlq}; bug fixed; replayed"),
    )
    handled_after = int(any(g.event_id == poison for g in billing.got()))
    outcome.facts = {
        "attempts_before_dead_letter": len(tries),
        "dead_letters": len(stored),
        "replayed": int(replayed["replayed"]),
        "handled_after_replay": handled_after,
        "dead_letters_left": left,
    }
    kept = "" if left == 0 else f" ({left} still listed: Kafka's log keeps them until purge)"
    tried = (
        f"is tried {len(tries)} times with backoff"
        if len(tries) > 1
        else f"fails once ({stage.settings.backend} cannot redeliver)"
    )
    outcome.lesson = (
        f"a message that always fails {tried}, then is parked in {dlq} while the others "
        f"flow on; replayed after the fix, it was handled{kept}."
    )
    return outcome


async def backpressure(stage: Stage) -> Outcome:
    outcome = Outcome(6, "Backpressure: a slow consumer and a growing queue")
    [slow] = await stage.consumers(("billing", "billing-1"), work_s=0.03)
    total = 60
    published = [0]

    async def produce() -> None:
        publisher = await stage.publisher()
        for _ in range(total):
            await publisher.publish(stage.topic, order_event())
            published[0] += 1

    started = time.monotonic()
    producer = asyncio.create_task(produce())
    samples: list[tuple[float, int, int]] = []
    publish_s = 0.0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT_S):
            while len(slow.got()) < total:
                samples.append((time.monotonic() - started, published[0], len(slow.got())))
                if producer.done() and not publish_s:
                    publish_s = time.monotonic() - started
                await asyncio.sleep(0.25)
    await producer
    publish_s = publish_s or time.monotonic() - started
    drain_s = time.monotonic() - started
    samples.append((drain_s, published[0], len(slow.got())))
    step = max(1, len(samples) // 8)  # at most about eight rows
    shown = samples[::step] if samples[-1] in samples[::step] else [*samples[::step], samples[-1]]
    outcome.headers = ("t (s)", "published", "handled", "waiting")
    outcome.rows = [(f"{t:.2f}", p, h, p - h) for t, p, h in shown]
    most = max(p - h for _, p, h in samples)
    outcome.facts = {
        "published": published[0],
        "handled": len(slow.got()),
        "max_waiting": most,
        "publish_ms": round(publish_s * 1000),
        "drain_ms": round(drain_s * 1000),
    }
    if stage.settings.backend == "redis-pubsub":
        outcome.lesson = (
            f"push: Redis sent all {published[0]} at once and up to {most} waited in the slow "
            "subscriber's buffers, not in Redis; one too slow for too long is disconnected "
            "(client-output-buffer-limit) and loses them. Pull-based backends let it set the pace."
        )
    elif stage.settings.backend == "memory":
        outcome.lesson = (
            f"a bounded queue ({stage.settings.memory_queue_size} here) pushes back: the "
            f"producer was held to the consumer's pace ({publish_s:.1f}s to publish {total}); "
            f"at most {most} waited. Unbounded, it would have filled memory instead."
        )
    else:
        outcome.lesson = (
            f"the broker absorbed the burst: up to {most} orders waited while the slow consumer "
            f"pulled at its own pace ({drain_s:.1f}s to drain). A growing queue depth is the "
            "signal to add replicas."
        )
    return outcome
