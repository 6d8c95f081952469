"""A subscriber service's dead letters: its admin endpoints (`GET /dead-letters`, replay and
purge) and what they do, which `orderbus dlq` does too, from the command line.

The endpoints sit behind the admin token: a dead letter holds a customer's order, and a replay
changes what the system does.

Replay republishes the message exactly as it was received to its original topic. The event
keeps its id, so a service that had in fact processed it changes nothing twice (its inbox).
Anything that can write to the broker can write to a dead-letter queue too: a replay goes
only to a topic the group subscribes to, never to one an entry names.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bus import Bus, names
from bus.dead_letters import DeadLetterStore, Stored, open_store
from contracts import CloudEvent
from services.runtime.admin import admin_guard

if TYPE_CHECKING:
    from services.runtime.service import Runtime

log = logging.getLogger(__name__)

MAX_REFS = 1_000


class NoSuchDeadLetter(LookupError):
    pass


def row(stored: Stored, full: bool) -> dict[str, Any]:
    """A dead letter for display; without `full`, the envelope and traceback are left out."""
    shown = {"ref": stored.ref} | stored.letter.model_dump(mode="json")
    shown["malformed"] = stored.malformed
    if not full:
        shown.pop("envelope")
        shown.pop("traceback")
    return shown


def choose(stored: Sequence[Stored], refs: Sequence[str], every: bool) -> list[Stored]:
    """The dead letters named by `refs` (all of them with `every`); unknown refs raise."""
    if every:
        return list(stored)
    missing = set(refs) - {s.ref for s in stored}
    if missing:
        raise NoSuchDeadLetter(", ".join(sorted(missing)))
    wanted = set(refs)
    return [s for s in stored if s.ref in wanted]


async def purge_letters(
    store: DeadLetterStore, group: str, chosen: Sequence[Stored], every: bool, total: int
) -> dict[str, Any]:
    if every:
        removed = await store.purge(group)
    elif store.removes_single_entries:
        removed = await store.remove(group, {s.ref for s in chosen})
    else:
        raise ValueError("this backend keeps dead letters in an append-only log: purge them all")
    return {"purged": removed, "kept": total - removed}


async def replay_letters(
    store: DeadLetterStore,
    group: str,
    chosen: Sequence[Stored],
    bus: Bus,
    topics: Collection[str] | None,
) -> dict[str, Any]:
    """Republish each chosen letter to its original topic, then remove the replayed ones.

    Refused and kept: a malformed entry, a letter whose topic is not one of `topics` (what the
    group subscribes to; None: a group that is not a service's, not checked), and a letter
    whose body is not a CloudEvent (replaying it would only dead-letter it again).
    """
    replayable: list[tuple[Stored, CloudEvent]] = []
    refused: list[dict[str, str]] = []
    for s in chosen:
        if s.malformed is not None:
            refused.append({"ref": s.ref, "reason": f"malformed entry ({s.malformed}); purge it"})
            continue
        if s.letter.truncated:
            reason = "truncated to fit the dead-letter queue: the original is in its topic"
            refused.append({"ref": s.ref, "reason": f"{reason}; purge it"})
            continue
        if topics is not None and s.letter.topic not in topics:
            reason = f"{group} does not subscribe to {s.letter.topic[:64]!r}; purge it"
            refused.append({"ref": s.ref, "reason": reason})
            continue
        try:
            replayable.append((s, CloudEvent.from_json(s.letter.envelope)))
        except ValidationError:
            refused.append({"ref": s.ref, "reason": "not a valid CloudEvent; purge it instead"})
    replayed: set[str] = set()
    for s, event in replayable:
        try:
            await bus.publish(s.letter.topic, event)
        except Exception as exc:  # noqa: BLE001 - kept and said: the rest are replayed
            # With a broker user per service (deploy/brokers) a subscriber may not publish
            # what it consumes: a replay is then the operator's.
            reason = (
                f"not republished ({type(exc).__name__}); if this service's broker user may "
                f"not publish {s.letter.topic!r}, replay it with `orderbus dlq` as the operator"
            )
            refused.append({"ref": s.ref, "reason": reason})
            log.warning(
                "replay of %s to %s refused (%s)", s.ref, s.letter.topic, type(exc).__name__
            )
            continue
        replayed.add(s.ref)
    removed = await store.remove(group, replayed) if replayed else 0
    return {"replayed": len(replayed), "removed": removed, "refused": refused}


class Selection(BaseModel):
    """Which dead letters to act on: `refs` from the listing, or `all`."""

    model_config = ConfigDict(extra="forbid")

    refs: list[str] = Field(default_factory=list, max_length=MAX_REFS)
    all: bool = False

    @model_validator(mode="after")
    def _names_something(self) -> Selection:
        if not self.refs and not self.all:
            raise ValueError("name dead letters in refs, or set all")
        return self


def dead_letter_routes(runtime: Runtime, topics: Collection[str]) -> APIRouter:
    """`topics`: what the service subscribes to, the only topics a replay may go to."""
    router = APIRouter(
        prefix="/dead-letters",
        tags=["admin"],
        dependencies=[Depends(admin_guard(runtime.settings.admin_token))],
    )
    group = names.check_group(runtime.service)

    def store() -> DeadLetterStore:
        return open_store(runtime.settings.bus)

    async def chosen(selection: Selection) -> tuple[DeadLetterStore, list[Stored], int]:
        opened = store()
        stored = await opened.list(group)
        try:
            return opened, choose(stored, selection.refs, selection.all), len(stored)
        except NoSuchDeadLetter as missing:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"no dead letter {missing} in {names.dead_letters(group)}",
            ) from None

    @router.get("")
    async def listing(
        full: bool = Query(False, description="include each envelope and traceback"),
        limit: int = Query(100, ge=1, le=MAX_REFS),
    ) -> dict[str, Any]:
        stored = await store().list(group)
        return {
            "service": runtime.service,
            "queue": names.dead_letters(group),
            "count": len(stored),
            "dead_letters": [row(s, full) for s in stored[:limit]],
        }

    @router.post("/replay")
    async def replay(selection: Selection) -> dict[str, Any]:
        opened, picked, _ = await chosen(selection)
        return await replay_letters(opened, group, picked, runtime.bus, topics)

    @router.post("/purge")
    async def purge(selection: Selection) -> dict[str, Any]:
        opened, picked, total = await chosen(selection)
        try:
            return await purge_letters(opened, group, picked, selection.all, total)
        except ValueError as refusal:
            raise HTTPException(status.HTTP_409_CONFLICT, str(refusal)) from None

    return router
