"""`orderbus dlq list|show|replay|purge --service S`: see and act on a service's dead letters.

Replay republishes the message exactly as it was received to its original topic. The event
keeps its id, so a service that had in fact processed it changes nothing twice (its inbox).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from bus import BusSettings, create_bus, names
from bus.dead_letter_store import Stored, open_store
from contracts import CloudEvent


def _row(stored: Stored, full: bool) -> dict[str, Any]:
    row = {"ref": stored.ref} | stored.letter.model_dump(mode="json")
    if not full:
        row.pop("envelope")
        row.pop("traceback")
    return row


async def run(
    action: str, service: str, refs: list[str], every: bool, as_json: bool, settings: BusSettings
) -> tuple[int, str]:
    """Do `action`; return the exit code and what to print."""
    group = names.check_group(service)
    store = open_store(settings)
    stored = await store.list(group)
    if action == "list":
        if as_json:
            return 0, json.dumps([_row(s, full=False) for s in stored], indent=2)
        lines = [f"{len(stored)} dead letter(s) in {names.dead_letters(group)}"]
        lines += [
            f"{s.ref}  {s.letter.failed_at:%Y-%m-%d %H:%M:%S}  attempts={s.letter.attempts}  "
            f"event={s.letter.event_id or '-'}  {s.letter.error[:80]}"
            for s in stored
        ]
        return 0, "\n".join(lines)

    chosen = stored if every else [s for s in stored if s.ref in set(refs)]
    missing = set(refs) - {s.ref for s in stored}
    if missing:
        return 1, f"no dead letter {', '.join(sorted(missing))} in {names.dead_letters(group)}"
    if not chosen:
        return 1, "name one or more REFs (see `list`), or --all"

    if action == "show":
        return 0, json.dumps([_row(s, full=True) for s in chosen], indent=2)
    if action == "purge":
        if every:
            removed = await store.purge(group)
        elif store.removes_single_entries:
            removed = await store.remove(group, {s.ref for s in chosen})
        else:
            return 1, f"{settings.backend} keeps dead letters in an append-only log: only --all"
        return _report(as_json, {"purged": removed, "kept": len(stored) - removed})

    # replay
    replayable: list[tuple[Stored, CloudEvent]] = []
    refused: list[dict[str, str]] = []
    for s in chosen:
        try:
            replayable.append((s, CloudEvent.from_json(s.letter.envelope)))
        except ValidationError:
            refused.append({"ref": s.ref, "reason": "not a valid CloudEvent; purge it instead"})
    bus = create_bus(settings)
    await bus.start()
    try:
        for s, event in replayable:
            await bus.publish(s.letter.topic, event)
    finally:
        await bus.close()
    removed = await store.remove(group, {s.ref for s, _ in replayable})
    return _report(as_json, {"replayed": len(replayable), "removed": removed, "refused": refused})


def _report(as_json: bool, result: dict[str, Any]) -> tuple[int, str]:
    if as_json:
        return 0, json.dumps(result, indent=2)
    return 0, ", ".join(f"{k}: {v}" for k, v in result.items() if v != [])
