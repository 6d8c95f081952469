"""`/docs` renders in a real headless Chromium with every request outside the service
refused: Swagger UI and the OpenAPI document come from the service itself."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from tests.browser.chromium import chromium_page
from tests.e2e.system import orderbus_up

if TYPE_CHECKING:
    from playwright.sync_api import Request, Route

pytestmark = pytest.mark.timeout(120)


def test_swagger_ui_renders_with_nothing_from_outside(tmp_path: Path) -> None:
    with orderbus_up("memory", f"memory://{uuid.uuid4().hex[:8]}", tmp_path) as system:
        base = system.url("order-1")
        own = urlsplit(base).netloc
        outside: list[str] = []
        with chromium_page() as (page, errors):

            def only_the_service(route: Route, request: Request) -> None:
                if urlsplit(request.url).netloc == own:
                    route.continue_()
                else:
                    outside.append(request.url)
                    route.abort()

            page.route("**/*", only_the_service)
            page.goto(f"{base}/docs")
            page.wait_for_selector(".swagger-ui .info .title")
            assert "orderbus order" in page.inner_text(".swagger-ui .info .title")
            page.wait_for_selector('.opblock-summary-path[data-path="/orders"]')
            assert outside == []
            assert errors == []
