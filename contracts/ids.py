"""New identifiers of orders, invoices and events: UUIDs that sort by their creation time.

Version 7 (RFC 9562): 48 bits of Unix time in milliseconds, then 74 random bits. Every table
is keyed or indexed by these ids (an order's rows, each service's inbox), and a B-tree takes a
random key (version 4) on a random page: each commit then rewrote as many pages as it had
rows in each index. Keys that grow with time land on the last pages, which each commit
writes once (docs/performance.md, "Ids that sort by time"). The random part keeps them as
hard to guess as version 4's 122 bits in practice; what they add is the time of creation,
which the order's `created_at` shows anyway.

Python 3.14 has `uuid.uuid7`; this is the same layout for 3.11.
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
