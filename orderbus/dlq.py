"""`orderbus dlq list|show|replay|purge --service S`: see and act on a service's dead letters."""

from __future__ import annotations

import json
from typing import Any

from bus import BusSettings, create_bus, names
from bus.dead_letters import open_store
from orderbus.specs import service_spec
from services.runtime.dead_letter_routes import (
    NoSuchDeadLetter,
    choose,
    purge_letters,
    replay_letters,
    row,
)
from services.runtime.settings import SERVICES


async def run(
    action: str, service: str, refs: list[str], every: bool, as_json: bool, settings: BusSettings
) -> tuple[int, str]:
    """Do `action`; return the exit code and what to print."""
    group = names.check_group(service)
    if settings.backend == "memory":
        raise ValueError(
            "the memory backend keeps dead letters inside its running process: use the "
            "service's GET /dead-letters, or a broker backend"
        )
    store = open_store(settings)
    stored = await store.list(group)
    if action == "list":
        if as_json:
            return 0, json.dumps([row(s, full=False) for s in stored], indent=2)
        lines = [f"{len(stored)} dead letter(s) in {names.dead_letters(group)}"]
        lines += [
            f"{s.ref}  {s.letter.failed_at:%Y-%m-%d %H:%M:%S}  attempts={s.letter.attempts}  "
            f"event={s.letter.event_id or '-'}  {s.letter.error[:80]}"
            for s in stored
        ]
        return 0, "\n".join(lines)

    try:
        chosen = choose(stored, refs, every)
    except NoSuchDeadLetter as missing:
        return 1, f"no dead letter {missing} in {names.dead_letters(group)}"
    if not chosen:
        return 1, "name one or more REFs (see `list`), or --all"

    if action == "show":
        return 0, json.dumps([row(s, full=True) for s in chosen], indent=2)
    if action == "purge":
        try:
            result = await purge_letters(store, group, chosen, every, len(stored))
        except ValueError:
            return 1, f"{settings.backend} keeps dead letters in an append-only log: only --all"
        return _report(as_json, result)

    bus = create_bus(settings)
    await bus.start()
    try:
        result = await replay_letters(store, group, chosen, bus, _subscribed(service))
    finally:
        await bus.close()
    return _report(as_json, result)


def _subscribed(group: str) -> set[str] | None:
    """The topics a service's group subscribes to; None for a group that is no service's."""
    if group not in SERVICES:
        return None
    return {sub.topic for sub in service_spec(group).subscriptions}


def _report(as_json: bool, result: dict[str, Any]) -> tuple[int, str]:
    if as_json:
        return 0, json.dumps(result, indent=2)
    return 0, ", ".join(f"{k}: {v}" for k, v in result.items() if v != [])
