"""New ids are RFC 9562 version 7 UUIDs: creation time first, then random bits."""

from __future__ import annotations

import time
import uuid

from contracts import CloudEvent
from contracts.ids import new_id


def _milliseconds(value: uuid.UUID) -> int:
    return value.int >> 80


def test_a_new_id_is_a_version_7_uuid_of_the_rfc_variant() -> None:
    value = new_id()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert uuid.UUID(str(value)) == value


def test_a_new_id_carries_the_millisecond_it_was_made_in() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= _milliseconds(value) <= after


def test_ids_of_later_milliseconds_sort_after_as_uuids_and_as_text() -> None:
    first = new_id()
    while time.time_ns() // 1_000_000 <= _milliseconds(first):
        pass  # the next millisecond is less than one away
    second = new_id()
    assert first < second
    assert str(first) < str(second)  # the keys' order in every table (stored as text)


def test_ids_of_one_millisecond_differ_in_their_random_bits() -> None:
    by_millisecond: dict[int, list[uuid.UUID]] = {}
    ids: list[uuid.UUID] = []
    while len(ids) < 50:  # hundreds are made in a millisecond
        made = new_id()
        ids = by_millisecond.setdefault(_milliseconds(made), [])
        ids.append(made)
    assert len(set(ids)) == len(ids)
    # 74 random bits: the 12 after the version and the 62 after the variant both vary.
    assert len({i.int >> 64 & 0xFFF for i in ids}) > 1
    assert len({i.int & (1 << 62) - 1 for i in ids}) == len(ids)


def test_an_event_gets_a_version_7_id_unless_given_one() -> None:
    assert CloudEvent(source="test", type="order_created", data={}).id.version == 7
    given = uuid.uuid4()
    assert CloudEvent(id=given, source="test", type="order_created", data={}).id == given
