"""End-to-end fixtures: the system's real topic names, on a broker of the test's own where
it must be."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.brokers import own_tansu_if_shared


@pytest.fixture
async def backend_url(backend: str, backend_url: str) -> AsyncIterator[str]:
    """These tests use the system's real topic and group names: on Tansu, each test gets a
    broker of its own, so a group member one test left dead cannot hang the next test's."""
    async with own_tansu_if_shared(backend, backend_url) as url:
        yield url
