"""Admin endpoints on every subscriber service: its dead letters, replay and purge.

They sit behind the admin token: a dead letter holds a customer's order, and a replay
changes what the system does.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bus import names
from bus.dead_letter_store import DeadLetterStore, Stored, open_store
from services.runtime import dead_letters
from services.runtime.admin import admin_guard

if TYPE_CHECKING:
    from services.runtime.service import Runtime

MAX_REFS = 1_000


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
            return opened, dead_letters.choose(stored, selection.refs, selection.all), len(stored)
        except dead_letters.NoSuchDeadLetter as missing:
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
            "dead_letters": [dead_letters.row(s, full) for s in stored[:limit]],
        }

    @router.post("/replay")
    async def replay(selection: Selection) -> dict[str, Any]:
        opened, picked, _ = await chosen(selection)
        return await dead_letters.replay(opened, group, picked, runtime.bus, topics)

    @router.post("/purge")
    async def purge(selection: Selection) -> dict[str, Any]:
        opened, picked, total = await chosen(selection)
        try:
            return await dead_letters.purge(opened, group, picked, selection.all, total)
        except ValueError as refusal:
            raise HTTPException(status.HTTP_409_CONFLICT, str(refusal)) from None

    return router
