"""Fixtures every test layer shares: brokers, per the order in `tests.brokers`."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

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


def reset_tracer_provider() -> None:
    # The API lets a process set its tracer provider once; tests need one each, then none.
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test only, every finished span kept in memory."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reset_tracer_provider()
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    reset_tracer_provider()
