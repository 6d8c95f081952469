"""The Redis ACL file (Redis 7 selectors), for both Redis profiles (streams and pub/sub).

Redis grants a command on a key, not a command per key: a user that may XREADGROUP a stream
could XADD to it too. Selectors (`(...)`) pair them: each one is a set of commands on a set
of keys and channels, and a command passes if one selector allows it with all its keys. So
billing has XADD/PUBLISH only on its own topics and dead letters, and the consumer's commands
(XREADGROUP, XACK, XAUTOCLAIM...) only on the topics it subscribes to.

What ACLs cannot say: which consumer group. A user that may read a stream may read, claim,
acknowledge or remove consumers in any group of it (another service's included); it still
cannot write an event to it.
"""

from __future__ import annotations

import hashlib

from orderbus.broker_access.rules import LAPTOP_PASSWORD, OPERATOR, ServiceRights

CONNECTION = "+ping +hello +auth +client|setname +select"
"""What redis-py and FastStream send on every connection, besides the work. Not CLIENT
SETINFO: Redis 7.0 has no such command (and refuses an ACL file naming it); redis-py sends it
and goes on when it is refused."""
PUBLISH = "+xadd +publish +xtrim +xinfo|groups +xpending"
"""Writing, and trimming what every group is done with: a stream's publishers trim it."""
CONSUME = (
    "+xreadgroup +xack +xautoclaim +xclaim +xpending +xgroup|create +xgroup|createconsumer"
    " +xgroup|delconsumer +xinfo|groups +xinfo|consumers +xlen +subscribe +unsubscribe"
)
"""A group's consumer on a stream (and a channel subscriber), its reclaimer and sweeper, and
the backlog probe. No XTRIM: a reader could delete what other groups have not read."""
EPHEMERAL = f"{CONSUME} +xgroup|destroy +xtrim"
"""The broadcast groups are the instance's own: destroyed when it closes; their live-view
streams are trimmed by their readers, by age."""
DEAD_LETTERS = "+xrange +xdel +xlen +xtrim"
"""`orderbus`'s admin endpoints list and remove the service's own dead letters; the group
trims them past their retention."""
RATE_LIMIT = "+multi +exec +discard +incrby +expire"  # redis-py sends INCR as INCRBY


def password_hash(password: str) -> str:
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def _on(keys: list[str], channels: list[str], commands: str) -> str:
    patterns = [f"~{k}" for k in keys] + [f"&{c}" for c in channels]
    return f"({' '.join(patterns)} {commands})"


def user_line(rights: ServiceRights, password: str = LAPTOP_PASSWORD) -> str:
    own = [*rights.publishes, *([rights.dead_letters] if rights.dead_letters else [])]
    selectors = [_on(own, list(rights.publishes), PUBLISH)]
    if rights.consumes:
        selectors.append(_on(list(rights.consumes), list(rights.consumes), CONSUME))
    if rights.broadcasts:
        selectors.append(_on(list(rights.broadcasts), list(rights.broadcasts), EPHEMERAL))
    if rights.dead_letters:
        selectors.append(_on([rights.dead_letters], [], DEAD_LETTERS))
    if rights.watches:
        watched = [f"dlq.{group}" for group in rights.watches]
        selectors.append(_on([rights.watched_topic], [], "+xinfo|groups +xlen"))
        selectors.append(_on(watched, [], "+xlen"))
    for prefix in rights.key_prefixes:
        selectors.append(_on([f"{prefix}*"], [], RATE_LIMIT))
    root = f"user {rights.user} on {password_hash(password)} resetkeys resetchannels -@all"
    return " ".join([root, CONNECTION, *selectors])


def acl_file(rights: list[ServiceRights], password: str = LAPTOP_PASSWORD) -> str:
    """An ACL file has no comments: what it is and where it comes from is said where it is
    mounted (docker-compose.yml)."""
    users = [
        "user default off",
        f"user {OPERATOR} on {password_hash(password)} ~* &* +@all",
        *(user_line(r, password) for r in rights),
    ]
    return "\n".join(users) + "\n"
