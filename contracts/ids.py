"""New identifiers of orders, invoices and events: UUIDs that sort by their creation time.

Version 7 (RFC 9562): 48 bits of Unix time in milliseconds, then 74 random bits. Every table
is keyed or indexed by these ids (an order's rows, each service's inbox). A B-tree puts a
random key on a random page, so a commit writes a page per row and index; keys that grow
with time land on the last pages, which a commit writes once (docs/performance.md, "Ids that
sort by time"). 74 random bits stay far out of reach of guessing; what an id gives away is
when it was made, which an order's `created_at` shows anyway.

Python 3.14's `uuid.uuid7` has the same fields but spends 42 of the random bits on a counter,
so that its ids of one millisecond are in order too; here they are not (the pages they land
on are the same).
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0b10 << 62
_RAND_A = 0xFFF
_RAND_B = (1 << 62) - 1


def new_id() -> uuid.UUID:
    """A fresh version 7 UUID. Ids made in the same millisecond are in random order."""
    milliseconds = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10))
    return uuid.UUID(
        int=milliseconds << 80
        | _VERSION_7
        | (rand >> 62 & _RAND_A) << 64
        | _VARIANT_RFC
        | rand & _RAND_B
    )
