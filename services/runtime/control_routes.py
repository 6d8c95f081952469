"""Admin endpoints on every subscriber instance: inject faults, pause and resume handling,
record events for a dashboard.

What the dashboard's controls call (through the notification service); behind the admin token,
since they change what the system does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from services.runtime.activity import WATCH_MAX_S, WATCH_S
from services.runtime.admin import admin_guard
from services.runtime.faults import MAX_FAIL_NEXT, MAX_PAUSE_S

if TYPE_CHECKING:
    from services.runtime.service import Runtime


class FailNext(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: Annotated[int, Field(ge=0, le=MAX_FAIL_NEXT)]
    """The next `count` new events fail on every attempt here; 0 cancels."""


class Pause(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: Annotated[float, Field(gt=0, le=MAX_PAUSE_S)] = 60.0


class Watch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: Annotated[float, Field(gt=0, le=WATCH_MAX_S)] = WATCH_S


def control_routes(runtime: Runtime) -> APIRouter:
    router = APIRouter(
        prefix="/admin",
        tags=["admin"],
        dependencies=[Depends(admin_guard(runtime.settings.admin_token))],
    )

    def state() -> dict[str, Any]:
        return {
            "instance": runtime.instance,
            "fail_next": runtime.faults.fail_next,
            "paused": runtime.faults.paused,
        }

    @router.post("/fail")
    async def fail(body: FailNext) -> dict[str, Any]:
        runtime.faults.fail(body.count)
        return state()

    @router.post("/pause")
    async def pause(body: Pause) -> dict[str, Any]:
        try:
            runtime.faults.pause(body.seconds)
        except ValueError as exc:  # the model bounds it too; kept for direct callers
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from None
        return state()

    @router.post("/resume")
    async def resume() -> dict[str, Any]:
        runtime.faults.resume()
        return state()

    @router.post("/watch")
    async def watch(body: Watch) -> dict[str, Any]:
        """A dashboard watches: record this instance's events for its activity feed."""
        runtime.activity.watch(body.seconds)
        return state() | {"watched": runtime.activity.watched}

    return router
