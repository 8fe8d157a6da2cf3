"""The web app's pages without a browser: languages, security headers, cookies, CSRF, inline
form errors and escaping of what people type."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from directo.app import App
from directo.config import Settings
from directo.web.security import CONTENT_SECURITY_POLICY
from tests.conftest import PASSWORD

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
async def browser_like(app: App) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """HTTP clients that keep cookies, as a browser would, talking to the app in-process."""
    asgi = app.asgi()
    made: list[httpx.AsyncClient] = []

    def make(language: str = "en") -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url="http://testserver",
                                   transport=httpx.ASGITransport(app=asgi),
                                   headers={"Accept-Language": language})
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


def form_csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def page_config(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="directo-config">(.*?)</script>',
                      page, re.S)
    assert found, "the page has no script configuration"
    return json.loads(found.group(1))


async def sign_up(client: httpx.AsyncClient, handle: str,
                  display_name: str | None = None) -> httpx.Response:
    token = form_csrf((await client.get("/signup")).text)
    return await client.post("/signup", data={
        "csrf_token": token, "handle": handle, "password": PASSWORD,
        "display_name": display_name or handle.title()})


async def test_pages_follow_the_browser_language(browser_like) -> None:
    spanish = await browser_like("es-ES,es;q=0.9,en;q=0.5").get("/login")
    assert '<html lang="es">' in spanish.text and "Iniciar sesión" in spanish.text
    english = await browser_like("fr-FR,en;q=0.8,es;q=0.5").get("/login")
    assert '<html lang="en">' in english.text and "Log in" in english.text
    fallback = await browser_like("de-DE").get("/signup")
    assert "Create your account" in fallback.text


async def test_settings_switch_the_language_and_save_profile(browser_like) -> None:
    client = browser_like("en-US")
    await sign_up(client, "ana")
    settings = await client.get("/settings")
    saved = await client.post("/settings", data={
        "csrf_token": form_csrf(settings.text), "display_name": "Ana Costa",
        "dm_policy": "following", "language": "es"})
    assert saved.status_code == 200
    assert "Guardado." in saved.text and '<html lang="es">' in saved.text
    me = (await client.get("/api/v1/me")).json()
    assert (me["display_name"], me["dm_policy"]) == ("Ana Costa", "following")
    assert "Mensajes" in (await client.get("/")).text  # the cookie now wins over the browser


async def test_security_headers_on_pages_and_api(browser_like) -> None:
    client = browser_like()
    for path in ("/login", "/static/app.js", "/api/v1/me"):
        response = await client.get(path)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
    docs = await client.get("/docs")  # Swagger UI brings its own scripts
    assert "content-security-policy" not in docs.headers
    assert docs.headers["x-content-type-options"] == "nosniff"
    page = (await client.get("/login")).text
    assert "<script>" not in page and "style=" not in page  # nothing inline for CSP to allow


async def test_session_cookie_is_httponly_lax_and_secure_when_configured(
        settings_factory: Callable[..., Settings]) -> None:
    for secure in (False, True):
        app = App(settings_factory(cookie_secure=secure))
        await app.start()
        try:
            async with httpx.AsyncClient(base_url="https://testserver",
                                         transport=httpx.ASGITransport(app=app.asgi())) as c:
                response = await sign_up(c, f"ana{int(secure)}")
        finally:
            await app.stop()
        assert response.status_code == 303 and response.headers["location"] == "/"
        cookie = next(v for v in response.headers.get_list("set-cookie")
                      if v.startswith("directo_session="))
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=lax", "path=/"} <= flags
        assert ("secure" in flags) is secure


async def test_login_errors_are_shown_inline_and_keep_the_handle(browser_like) -> None:
    await sign_up(browser_like(), "ana")
    client = browser_like()
    token = form_csrf((await client.get("/login")).text)
    wrong = await client.post("/login", data={"csrf_token": token, "handle": "ana",
                                              "password": "not the password at all"})
    assert wrong.status_code == 401
    assert 'role="alert"' in wrong.text and "Wrong username or password." in wrong.text
    assert 'value="ana"' in wrong.text and "not the password" not in wrong.text
    assert "directo_session" not in wrong.headers.get("set-cookie", "")
    right = await client.post("/login", data={"csrf_token": token, "handle": "ana",
                                              "password": PASSWORD})
    assert right.status_code == 303
    assert (await client.get("/api/v1/me")).json()["handle"] == "ana"


async def test_signup_errors_point_at_the_field(browser_like) -> None:
    client = browser_like("es")
    token = form_csrf((await client.get("/signup")).text)
    refused = await client.post("/signup", data={"csrf_token": token, "handle": "a b",
                                                 "password": PASSWORD, "display_name": "Ana"})
    assert refused.status_code == 422
    field = re.search(r'<input id="f-handle"[^>]*>', refused.text)
    assert field and 'aria-invalid="true"' in field.group(0)
    assert 'id="e-handle">Un nombre de usuario tiene' in refused.text
    short = await client.post("/signup", data={"csrf_token": token, "handle": "ana",
                                               "password": "short", "display_name": "Ana"})
    assert short.status_code == 422 and 'id="e-password"' in short.text
    assert (await client.get("/api/v1/me")).status_code == 401  # nobody was logged in


async def test_forms_without_the_csrf_token_are_refused(browser_like) -> None:
    client = browser_like()
    await client.get("/login")  # gets the pre-login CSRF cookie
    for path in ("/signup", "/login"):
        refused = await client.post(path, data={"handle": "ana", "password": PASSWORD,
                                                "display_name": "Ana"})
        assert refused.status_code == 403
        assert "Your session form expired. Please try again." in refused.text
        assert "directo_session" not in refused.headers.get("set-cookie", "")
    assert (await client.get("/api/v1/accounts/ana")).status_code == 401
    assert (await sign_up(client, "ben")).status_code == 303
    assert (await client.get("/api/v1/accounts/ana")).status_code == 404  # never created
    forged = await client.post("/settings", data={"csrf_token": "forged", "display_name": "X",
                                                  "dm_policy": "nobody", "language": "en"})
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf_failed"
    assert (await client.get("/api/v1/me")).json()["dm_policy"] == "everyone"
    assert (await client.post("/logout")).status_code == 403
    assert (await client.get("/api/v1/me")).status_code == 200


async def test_cookie_session_needs_the_csrf_header_for_changes(browser_like, signup) -> None:
    await signup("ben")
    client = browser_like()
    await sign_up(client, "ana")
    csrf = page_config((await client.get("/")).text)["csrf"]
    assert (await client.get("/api/v1/me")).status_code == 200  # reading needs no token
    for headers in ({}, {"X-CSRF-Token": "0" * 64}):
        refused = await client.post("/api/v1/conversations", json={"with": "ben"},
                                    headers=headers)
        assert refused.status_code == 403
        assert refused.json() == {"error": {"code": "csrf_failed", "message": refused.json()[
            "error"]["message"]}}
    listed = await client.get("/api/v1/conversations", params={"folder": "inbox"})
    assert listed.json()["items"] == []
    started = await client.post("/api/v1/conversations", json={"with": "ben"},
                                headers={"X-CSRF-Token": csrf})
    assert started.status_code == 201


async def test_malformed_forms_get_a_clear_error(browser_like) -> None:
    client = browser_like()
    token = form_csrf((await client.get("/login")).text)
    flood = "&".join(f"f{n}=x" for n in range(50))
    response = await client.post("/login", content=f"csrf_token={token}&{flood}",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_form"


async def test_logout_ends_the_session_on_the_server(browser_like) -> None:
    client = browser_like()
    await sign_up(client, "ana")
    token = client.cookies["directo_session"]
    page = (await client.get("/")).text
    out = await client.post("/logout", data={"csrf_token": form_csrf(page)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    stolen = await browser_like().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert stolen.status_code == 401
    assert (await client.get("/")).headers["location"] == "/login"


async def test_typed_markup_is_escaped_in_pages(browser_like, signup) -> None:
    ben = await signup("ben")
    await ben.update_me(display_name=XSS)
    client = browser_like()
    await sign_up(client, "ana", display_name=XSS)
    csrf = page_config((await client.get("/")).text)["csrf"]
    started = await client.post("/api/v1/conversations", json={"with": "ben"},
                                headers={"X-CSRF-Token": csrf})
    for path in ("/", "/settings", f"/c/{started.json()['id']}"):
        page = (await client.get(path)).text
        assert XSS not in page, path
    thread = (await client.get(f"/c/{started.json()['id']}")).text
    assert f"<h2 id=\"thread-title\">{html.escape(XSS)}</h2>" in thread
    assert page_config(thread)["me"]["display_name"] == XSS  # JSON in the page, inert


async def test_other_peoples_conversations_are_not_found(browser_like, signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    await signup("eve")
    conversation = await ana.start_conversation("ben")
    await ben.send(conversation["id"], "private")
    eve = browser_like()
    token = form_csrf((await eve.get("/login")).text)
    await eve.post("/login", data={"csrf_token": token, "handle": "eve", "password": PASSWORD})
    response = await eve.get(f"/c/{conversation['id']}")
    assert response.status_code == 404 and "private" not in response.text


async def test_pages_ask_for_login_first(browser_like) -> None:
    client = browser_like()
    for path in ("/", "/settings", "/c/cnv_x"):
        response = await client.get(path)
        assert (response.status_code, response.headers["location"]) == (303, "/login")


@pytest.mark.slow
def test_stream_takes_the_cookie_only_from_our_own_origin(server_factory) -> None:
    server = server_factory()
    with httpx.Client(base_url=server.url) as client:
        token = form_csrf(client.get("/signup").text)
        client.post("/signup", data={"csrf_token": token, "handle": "ana",
                                     "password": PASSWORD, "display_name": "Ana"})
        cookie = f"directo_session={client.cookies['directo_session']}"
    url = server.url.replace("http", "ws") + "/api/v1/stream"

    async def first_frame(origin: str) -> dict | int:
        headers = {"Cookie": cookie, "Origin": origin}
        try:
            async with websockets.connect(url, additional_headers=headers) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 10))
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else 0
        except InvalidStatus as refused:
            return refused.response.status_code

    assert asyncio.run(first_frame(server.url))["type"] == "ready"
    assert asyncio.run(first_frame("http://evil.example")) in (4401, 403)
