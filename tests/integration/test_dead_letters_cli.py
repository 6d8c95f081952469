"""`orderbus dlq` on every broker: list, show, purge, and replay to a mended consumer."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from bus import BACKENDS, BusSettings, Delivery
from contracts import CloudEvent
from orderbus import dlq
from tests.integration.conftest import BusFactory, Names, Recorder, make_event
from tests.integration.native import inject_dead_letter, inject_raw, read_dead_letters
from tests.polling import eventually

BROKERS = [b for b in BACKENDS if b != "memory"]  # memory's dead letters never leave its process


async def fill_dead_letters(
    backend: str, url: str, make_bus: BusFactory, names: Names, count: int
) -> tuple[str, str, list[CloudEvent]]:
    topic, group = names.topic(), names.group()

    async def broken(event: CloudEvent, delivery: Delivery) -> None:
        raise RuntimeError("billing is broken today")

    failing = await make_bus((topic, broken, group, "c1"), max_attempts=1)
    publisher = await make_bus()
    events = [make_event(topic, i) for i in range(count)]
    for event in events:
        await publisher.publish(topic, event)
    await inject_raw(backend, url, topic, b"not an event")

    async def all_there() -> bool | None:
        return True if len(await read_dead_letters(backend, url, group)) == count + 1 else None

    await eventually(all_there)
    await failing.close()
    return topic, group, events


@pytest.mark.parametrize("backend", BROKERS)
async def test_list_show_purge_and_replay(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    settings = BusSettings(backend=backend, url=backend_url)
    topic, group, events = await fill_dead_letters(backend, backend_url, make_bus, names, 3)

    code, listed = await dlq.run("list", group, [], False, True, settings)
    rows = json.loads(listed)
    assert code == 0
    assert len(rows) == 4
    assert {r["event_id"] for r in rows} == {str(e.id) for e in events} | {None}
    assert all("envelope" not in r for r in rows)

    first = next(r for r in rows if r["event_id"] == str(events[0].id))
    code, shown = await dlq.run("show", group, [first["ref"]], False, True, settings)
    (full,) = json.loads(shown)
    assert "billing is broken today" in full["traceback"]
    assert CloudEvent.from_json(full["envelope"]) == events[0]

    # The consumer is mended: replaying hands it every event; the poison one is refused.
    mended = Recorder()
    await make_bus((topic, mended, group, "c2"))
    code, replayed = await dlq.run("replay", group, [], True, True, settings)
    result = json.loads(replayed)
    assert result["replayed"] == 3
    assert [r["reason"] for r in result["refused"]] == ["not a valid CloudEvent; purge it instead"]
    await mended.wait_for_count(3)
    assert sorted(mended.ids) == sorted(e.id for e in events)

    remaining = await read_dead_letters(backend, backend_url, group)
    if backend == "kafka":  # an append-only log: replayed entries stay until purged
        assert len(remaining) == 4
        code, _ = await dlq.run("purge", group, [first["ref"]], False, True, settings)
        assert code == 1
    else:
        assert [letter.event_id for letter in remaining] == [None]
    code, purged = await dlq.run("purge", group, [], True, True, settings)
    assert code == 0
    assert json.loads(purged)["purged"] == len(remaining)
    assert await read_dead_letters(backend, backend_url, group) == []


@pytest.mark.parametrize("backend", BROKERS)
async def test_the_command_line_prints_json(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    _, group, _ = await fill_dead_letters(backend, backend_url, make_bus, names, 1)
    env = os.environ | {"BUS_BACKEND": backend, "BUS_URL": backend_url}
    code, out, _ = await orderbus(env, "dlq", "list", "--service", group, "--json")
    assert code == 0
    assert len(json.loads(out)) == 2
    code, _, err = await orderbus(env, "dlq", "show", "nope", "--service", group)
    assert code == 1
    assert "no dead letter nope" in err


@pytest.mark.parametrize("backend", BROKERS)
async def test_a_malformed_entry_is_listed_as_such_and_purged_never_replayed(
    backend: str, backend_url: str, make_bus: BusFactory, names: Names
) -> None:
    """Anything that can write to the broker can write to a dead-letter queue: an entry that
    is not a dead-letter record must not break the tools, nor be replayed."""
    settings = BusSettings(backend=backend, url=backend_url)
    topic, group, events = await fill_dead_letters(backend, backend_url, make_bus, names, 1)
    await inject_dead_letter(backend, backend_url, group, b"{}")
    await inject_dead_letter(backend, backend_url, group, b"\xff not even text")

    code, listed = await dlq.run("list", group, [], False, True, settings)
    assert code == 0
    rows = json.loads(listed)
    assert len(rows) == 4
    malformed = [r for r in rows if r["malformed"] is not None]
    assert len(malformed) == 2
    assert all(r["malformed"].startswith("not a dead-letter record") for r in malformed)
    code, text = await dlq.run("list", group, [], False, False, settings)
    assert code == 0
    assert "malformed entry" in text

    mended = Recorder()
    await make_bus((topic, mended, group, "c2"))
    code, replayed = await dlq.run("replay", group, [], True, True, settings)
    result = json.loads(replayed)
    assert result["replayed"] == 1
    assert sorted(r["reason"].split(" (")[0] for r in result["refused"]) == [
        "malformed entry",
        "malformed entry",
        "not a valid CloudEvent; purge it instead",
    ]
    await mended.wait_for_count(1)
    assert mended.ids == [events[0].id]

    code, _ = await dlq.run("purge", group, [], True, True, settings)
    assert code == 0
    assert await dlq.run("list", group, [], False, True, settings) == (0, "[]")


async def orderbus(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orderbus.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return int(process.returncode or 0), out.decode(), err.decode()
