"""The send route's hot path (``core/http.HotRoutes``) answers as its FastAPI route would:
the same statuses, bodies and headers; and everything it does not answer still reaches the
FastAPI route. A bearer token with ``application/json`` takes the hot path; the same request
sent as ``application/vnd.directo+json`` (JSON to FastAPI, not to the hot path) takes the
FastAPI route, which is how these tests compare the two."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.responses import PlainTextResponse

from directo.app import App
from directo.core.http import HotRoutes
from directo.events.service import encode_cursor
from tests.helpers import Signup, friends

HOT = "application/json"
FRAMEWORK = "application/vnd.directo+json"
ROUTE = "/api/v1/conversations/{conversation_id}/messages"
COMPARED_HEADERS = ("content-type", "content-security-policy", "x-content-type-options",
                    "x-frame-options", "referrer-policy", "retry-after")


@pytest.fixture
async def http(app: App) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url="http://directo.test",
                                 transport=httpx.ASGITransport(app=app.asgi())) as client:
        yield client


async def post(http: httpx.AsyncClient, path: str, token: str | None, media_type: str,
               content: bytes) -> httpx.Response:
    headers = {"Content-Type": media_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await http.post(path, content=content, headers=headers)


def answer(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    """What a client sees, without what differs between two sends (ids, times)."""
    body = response.json()
    if "id" in body:
        body = {key: value for key, value in body.items()
                if key not in ("id", "client_id", "created_at")}
    return (response.status_code, body,
            {name: response.headers[name] for name in COMPARED_HEADERS
             if name in response.headers})


async def both_ways(http: httpx.AsyncClient, path: str, token: str | None,
                    content: bytes | None = None, *, fresh_client_ids: bool = False,
                    ) -> tuple[Any, Any]:
    hot_body = framework_body = content
    if fresh_client_ids:
        hot_body, framework_body = (content.replace(b"CID", tag)  # type: ignore[union-attr]
                                    for tag in (b"hot", b"framework"))
    hot = await post(http, path, token, HOT, hot_body or b"")
    framework = await post(http, path, token, FRAMEWORK, framework_body or b"")
    return answer(hot), answer(framework)


async def test_the_hot_path_answers_like_the_fastapi_route(http: httpx.AsyncClient,
                                                           signup: Signup) -> None:
    ana, _ben, conversation_id = await friends(signup)
    path = f"/api/v1/conversations/{conversation_id}/messages"
    sent = b'{"client_id": "CID", "text": "hola"}'
    hot, framework = await both_ways(http, path, ana.token, sent, fresh_client_ids=True)
    assert hot[0] == 201 and hot[1]["text"] == "hola"
    assert hot == framework

    retried = await both_ways(http, path, ana.token, b'{"client_id": "hot", "text": "hola"}')
    assert retried[0][0] == 200 and retried[0] == retried[1]

    await signup("cyd")
    other = await ana.start_conversation("cyd")
    cases = {
        "a token that is not one": (path, "not-a-token", sent),
        "no token at all": (path, None, sent),
        "a conversation that does not exist": (
            "/api/v1/conversations/cnv_nothere/messages", ana.token, sent),
        "an id longer than the route allows": (
            f"/api/v1/conversations/{'x' * 65}/messages", ana.token, sent),
        "a client_id used in another conversation": (
            f"/api/v1/conversations/{other['id']}/messages", ana.token,
            b'{"client_id": "hot", "text": "other text"}'),
        "malformed JSON": (path, ana.token, b'{"client_id": '),
        "a missing field": (path, ana.token, b'{"client_id": "CID"}'),
        "an unknown field": (path, ana.token, b'{"client_id": "CID", "text": "x", "y": 1}'),
        "a reply to nothing": (path, ana.token,
                               b'{"client_id": "CID", "text": "x", "reply_to": "msg_no"}'),
    }
    for number, (what, (where, token, content)) in enumerate(cases.items()):
        content = content.replace(b"CID", f"CID{number}".encode())
        hot, framework = await both_ways(http, where, token, content, fresh_client_ids=True)
        assert hot[0] >= 400, what
        assert hot == framework, what


async def test_a_hot_send_is_logged_and_counted_under_its_route(http: httpx.AsyncClient,
                                                                signup: Signup) -> None:
    ana, _ben, conversation_id = await friends(signup)

    async def count() -> float:
        text = (await http.get("/metrics")).text
        found = re.search(r'directo_http_request_seconds_count\{method="POST",route="'
                          + re.escape(ROUTE) + r'",status="201"\} (\S+)', text)
        return float(found.group(1)) if found else 0.0

    before = await count()
    response = await post(http, f"/api/v1/conversations/{conversation_id}/messages", ana.token,
                          HOT, b'{"client_id": "counted", "text": "hi"}')
    assert response.status_code == 201
    assert await count() == before + 1


async def test_the_body_limit_holds_on_the_hot_path(http: httpx.AsyncClient, app: App,
                                                    signup: Signup) -> None:
    ana, _ben, conversation_id = await friends(signup)
    too_big = b'{"client_id": "big", "text": "' + b"x" * app.settings.max_body_bytes + b'"}'
    response = await post(http, f"/api/v1/conversations/{conversation_id}/messages",
                          ana.token, HOT, too_big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert (await ana.messages(conversation_id))["items"] == []


async def test_an_error_nobody_expected_is_answered_alike_both_ways(
        app: App, signup: Signup, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    ana, _ben, conversation_id = await friends(signup)

    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr("directo.conversations.service.send", broken)
    # FastAPI's error middleware answers, then raises the error on for the server to see
    transport = httpx.ASGITransport(app=app.asgi(), raise_app_exceptions=False)
    async with httpx.AsyncClient(base_url="http://directo.test", transport=transport) as http:
        hot, framework = await both_ways(http, f"/api/v1/conversations/{conversation_id}/messages",
                                         ana.token, b'{"client_id": "CID", "text": "secret"}',
                                         fresh_client_ids=True)
    assert hot[0] == 500 and hot[1]["error"]["code"] == "internal_error"
    assert hot[2]["content-security-policy"]
    assert hot == framework
    assert "unhandled RuntimeError" in caplog.text and "secret" not in caplog.text


async def poll(http: httpx.AsyncClient, token: str | None,
               params: dict[str, str]) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return await http.get("/api/v1/events", params=params, headers=headers)


async def test_a_long_poll_answers_like_the_fastapi_route(http: httpx.AsyncClient,
                                                         signup: Signup) -> None:
    """A timeout written plainly (``0``) takes the hot path; the same timeout written as
    ``0e0`` (a number to FastAPI, not to the hot path) takes the FastAPI route."""
    ana, _ben, conversation_id = await friends(signup)
    await ana.send(conversation_id, "hola")
    start = encode_cursor(0)
    first = await poll(http, ana.token, {"after": start, "timeout": "0"})
    assert first.status_code == 200 and first.json()["events"]
    cases = {
        "events after a cursor": (ana.token, {"after": start}),
        "nothing after the last cursor": (ana.token, {"after": first.json()["cursor"]}),
        "from now": (ana.token, {}),
        "a cursor that is not one": (ana.token, {"after": "not-a-cursor"}),
        "a token that is not one": ("not-a-token", {"after": start}),
        "no token at all": (None, {"after": start}),
    }
    for what, (token, params) in cases.items():
        hot = await poll(http, token, {**params, "timeout": "0"})
        framework = await poll(http, token, {**params, "timeout": "0e0"})
        assert answer(hot) == answer(framework), what
    # what the hot path leaves to the route, which refuses it
    for params in ({"timeout": "61"}, {"timeout": "-1"}, {"after": "c" * 129, "timeout": "0"}):
        assert (await poll(http, ana.token, params)).status_code == 422, params


async def test_a_plain_long_poll_never_reaches_fastapi(app: App, signup: Signup,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """What the hot path is for: a waiting long poll holds none of FastAPI's layers."""
    ana = await signup("ana")
    served: Any = app.asgi()
    while not isinstance(served, HotRoutes):
        served = served.app

    async def not_fastapi(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("FastAPI", status_code=599)(scope, receive, send)

    monkeypatch.setattr(served, "app", not_fastapi)
    async with httpx.AsyncClient(base_url="http://directo.test",
                                 transport=httpx.ASGITransport(app=app.asgi())) as http:
        assert (await poll(http, ana.token, {"timeout": "0.2"})).status_code == 200
        assert (await poll(http, ana.token, {"timeout": "0e0"})).status_code == 599
