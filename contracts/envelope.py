"""The CloudEvents 1.0 envelope (structured JSON mode) that carries every event on the bus.

Every attribute travels inside the JSON body, so the event survives any broker unchanged and
`redis-cli`, `rabbitmqadmin`, `kafka-console-consumer` or `nats` show it as plain JSON.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from contracts.ids import new_id

EventType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
"""Event types are snake_case; the type is also the topic name (see `bus.names`)."""

TraceParent = Annotated[
    str, StringConstraints(pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
]
"""W3C trace context `traceparent` header value."""

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event whose `data` is a JSON object validated by its event model."""

    # Unknown extension attributes are kept, so a relay or a replay passes them on untouched.
    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID = Field(default_factory=new_id)
    source: NonEmpty
    type: EventType
    time: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: Literal["application/json"] = "application/json"
    subject: NonEmpty | None = None
    dataschema: NonEmpty | None = None
    data: dict[str, Any]
    correlationid: NonEmpty | None = None
    traceparent: TraceParent | None = None

    @classmethod
    def of(
        cls,
        payload: BaseModel,
        *,
        type: str,
        source: str,
        subject: str | None = None,
        dataschema: str | None = None,
        correlationid: str | None = None,
        traceparent: str | None = None,
    ) -> CloudEvent:
        """Wrap an event model as a CloudEvent (its data serialised in JSON mode)."""
        return cls(
            type=type,
            source=source,
            subject=subject,
            dataschema=dataschema,
            data=payload.model_dump(mode="json"),
            correlationid=correlationid,
            traceparent=traceparent,
        )

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> CloudEvent:
        return cls.model_validate_json(raw)
