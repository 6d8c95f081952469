"""What a browser may send over `/ws`, validated; anything else gets an `error` message.

    {"type": "subscribe", "order_id": "..."}      # pushes for this order
    {"type": "subscribe", "customer_id": "..."}   # pushes for this customer's orders
    {"type": "auth", "token": "..."}              # the admin token: for what follows
    {"type": "subscribe", "all": true}            # every push (admin only)
    {"type": "feeds", "feeds": ["activity"]}      # what kinds of message (activity: admin
                                                  # only where a token is configured)
    {"type": "ping", "client_id": "..."}          # heartbeat: keeps the client "online"

A client follows nothing until it names an order or a customer. A browser page of another
site cannot connect at all: an `Origin` other than the service's own (or one of
`ORDERBUS_WS_ALLOWED_ORIGINS`) is refused at the handshake.

The server sends `hello` on connect, `subscribed` after each subscription, `notification`
for each push (with `handled_by` and `delivered_by`, the instances either side of the
broker), `activity` to dashboard clients, `pong` and `error`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, model_validator

from services.notification.live import FEEDS

Key = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MAX_MESSAGE_CHARS = 4_096
IDLE_S = 300.0
"""A client silent this long is closed (1001): a live page pings every few seconds. A binary
frame is closed with 1003, a frame over `WS_MAX_BYTES` by the server with 1009."""


class Subscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["subscribe"]
    order_id: Key | None = None
    customer_id: Key | None = None
    all: bool = False

    @model_validator(mode="after")
    def _one(self) -> Subscribe:
        if sum([self.order_id is not None, self.customer_id is not None, self.all]) != 1:
            raise ValueError("give exactly one of order_id, customer_id, all")
        return self

    def key(self) -> tuple[str, str]:
        if self.order_id is not None:
            return "order", self.order_id
        if self.customer_id is not None:
            return "customer", self.customer_id
        return "all", ""


class Feeds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["feeds"]
    feeds: Annotated[list[Literal["notifications", "activity"]], Field(max_length=len(FEEDS))]


class Auth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["auth"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Ping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["ping"]
    client_id: Key | None = None


Incoming = TypeAdapter(Annotated[Subscribe | Feeds | Auth | Ping, Field(discriminator="type")])
