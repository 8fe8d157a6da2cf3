"""The API's own documentation: /openapi.json and a Swagger UI that loads nothing from
elsewhere."""

from __future__ import annotations

import re

import httpx

from directo.app import App


async def test_openapi_document_lists_the_contract(app: App) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app.asgi()),
                                 base_url="http://directo.test") as http:
        document = (await http.get("/openapi.json")).json()
    assert document["info"]["title"] == "Directo"
    for path in ("/api/v1/accounts", "/api/v1/sessions", "/api/v1/conversations/{conversation_id}"
                 "/messages", "/api/v1/events", "/healthz"):
        assert path in document["paths"], path


async def test_swagger_ui_is_served_from_this_server(app: App) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app.asgi()),
                                 base_url="http://directo.test") as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources and all(s.startswith(("/", "data:")) for s in sources), sources
        assert "url: '/openapi.json'" in page.text or '"/openapi.json"' in page.text
        for source in sources:
            if source.startswith("/"):
                asset = await http.get(source)
                assert asset.status_code == 200 and asset.content, source
