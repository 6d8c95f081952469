"""`/docs` and `/redoc` load nothing from outside the service (no CDN)."""

from __future__ import annotations

import re

import httpx


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
