"""`/docs` and `/redoc` load nothing from outside the service (no CDN)."""

from __future__ import annotations

import re

import httpx

from orderbus.specs import create_app
from services.runtime.settings import ServiceSettings


async def test_docs_pages_reference_only_the_services_own_files(
    order_client: httpx.AsyncClient,
) -> None:
    for page in ("/docs", "/redoc"):
        answer = await order_client.get(page)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        referenced = re.findall(r'(?:src|href)=["\']([^"\']+)', answer.text)
        referenced += re.findall(r"url: ?['\"]([^'\"]+)", answer.text)  # Swagger UI's spec
        assert referenced, page
        assert not [url for url in referenced if "://" in url or url.startswith("//")], page
        for url in referenced:
            fetched = await order_client.get(url)
            assert fetched.status_code == 200, url
            assert fetched.content, url


async def test_behind_a_path_prefix_the_pages_link_under_it(settings: ServiceSettings) -> None:
    app = create_app("billing", settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path="/billing")
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            page = (await client.get("/docs")).text
    assert "/billing/docs-assets/swagger-ui-bundle.js" in page
    assert "url: '/billing/openapi.json'" in page
