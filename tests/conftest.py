"""Fixtures every test layer shares: brokers, per the order in `tests.brokers`."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import pytest

from bus import BACKENDS
from tests.brokers import BACKEND_KIND, Choice, Kind, brokers_required, provide


@pytest.fixture(scope="session")
def broker_url() -> Iterator[Callable[[Kind], str]]:
    """`broker_url(kind)`: a reachable broker of that kind for this session, or skip/fail."""
    cache: dict[Kind, str | Choice] = {}
    with contextlib.ExitStack() as stack:

        def get(kind: Kind) -> str:
            if kind not in cache:
                cache[kind] = stack.enter_context(provide(kind))
            found = cache[kind]
            if isinstance(found, Choice):
                if brokers_required():
                    pytest.fail(f"ORDERBUS_REQUIRE_BROKERS=1 but {found.reason}")
                pytest.skip(found.reason)
            return found

        yield get


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    """Every test that takes `backend` runs once per backend, the name in its test id."""
    return str(request.param)


@pytest.fixture
def backend_url(backend: str, broker_url: Callable[[Kind], str]) -> str:
    kind = BACKEND_KIND[backend]
    if kind is None:
        return f"memory://{uuid.uuid4().hex[:8]}"  # a hub of its own per test
    return broker_url(kind)
