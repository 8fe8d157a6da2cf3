"""Logs never hold message text, passwords or tokens, even at log level debug."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import pytest
import websockets

from directo.client import AsyncDirecto, DirectoAPIError
from tests.conftest import Server

pytestmark = pytest.mark.slow


def _marker(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


async def _receive_message_frame(url: str, token: str | None = None) -> dict[str, object]:
    """The first ``message.created`` frame, authenticated by the query (no ``token``) or by
    an Authorization header."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
        async with asyncio.timeout(10):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "message.created":
                    return dict(frame)


async def test_debug_logs_hold_no_text_password_or_token(
        server_factory: Callable[..., Server]) -> None:
    server = server_factory(DIRECTO_LOG_LEVEL="debug")
    password, wrong_password = _marker("password"), _marker("wrong")
    text, edited, refused_text = _marker("text"), _marker("edited"), _marker("refused")
    ana, ben = AsyncDirecto(server.url), AsyncDirecto(server.url)
    await ana.signup("ana", password, "Ana")
    await ben.signup("ben", password, "Ben")
    await ana.follow("ben")
    await ben.follow("ana")
    conversation_id = (await ana.start_conversation("ben"))["id"]
    await ben.poll(timeout=0)
    # Two streams resume from before the send, so the text goes out over both of them.
    stream_url = server.url.replace("http", "ws", 1) + f"/api/v1/stream?after={ben.cursor}"
    frame_tasks = [asyncio.create_task(_receive_message_frame(f"{stream_url}&token={ben.token}")),
                   asyncio.create_task(_receive_message_frame(stream_url, ben.token))]
    message = await ana.send(conversation_id, text)
    for frame in await asyncio.gather(*frame_tasks):
        assert text in json.dumps(frame)
    await ana.edit(message["id"], edited)
    assert [m["text"] for m in (await ben.messages(conversation_id))["items"]] == [edited]
    await ana.typing(conversation_id)
    await ana.poll(timeout=0)

    stranger = AsyncDirecto(server.url)
    with pytest.raises(DirectoAPIError):
        await stranger.login("ana", wrong_password)
    bad_requests = [
        ("POST", f"/conversations/{conversation_id}/messages",
         {"client_id": "x", "text": refused_text, "unexpected": 1}),
        ("POST", f"/conversations/{conversation_id}/messages",
         {"client_id": "y", "text": refused_text * 300}),
        ("POST", "/conversations/cnv_nope/messages", {"client_id": "z", "text": refused_text}),
        ("PATCH", f"/messages/{message['id']}", {"text": [refused_text]}),
        ("POST", "/sessions", {"handle": "ana", "password": refused_text, "token": ana.token}),
    ]
    for method, path, body in bad_requests:
        with pytest.raises(DirectoAPIError) as error:
            await ana.request(method, path, body)
        assert 400 <= error.value.status < 500
    raw = await ana.http.post("/api/v1/conversations", content=f'{{"with": "{refused_text}',
                              headers={"Authorization": f"Bearer {ana.token}",
                                       "Content-Type": "application/json"})
    assert raw.status_code == 422
    tokens = [ana.token, ben.token]
    await ana.logout()
    for sdk in (ana, ben, stranger):
        await sdk.close()
    server.stop()

    log = server.log()
    assert "/api/v1/conversations/{conversation_id}/messages 201" in log, log[-2000:]
    for secret in (password, wrong_password, text, edited, refused_text, *tokens):
        assert secret is not None
        assert secret not in log, f"{secret.split('-')[0]} leaked into the log"


async def test_access_lines_are_written_together_within_half_a_second(capsys) -> None:
    """The access log keeps the other lines' format, and leaves the event loop one write
    per half second instead of one per request."""
    import re

    from directo.core.http import ACCESS_FLUSH_SECONDS, AccessLines

    lines = AccessLines()
    lines.add("POST", "/api/v1/conversations/{conversation_id}/messages", 201, 0.0008)
    lines.add("GET", "unmatched", 404, 0.0121)
    assert capsys.readouterr().err == ""  # not yet
    await asyncio.sleep(ACCESS_FLUSH_SECONDS + 0.2)
    written = capsys.readouterr().err.splitlines()
    pattern = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO directo.access "
    assert [re.sub(pattern, "", line) for line in written] == [
        "POST /api/v1/conversations/{conversation_id}/messages 201 0.8ms",
        "GET unmatched 404 12.1ms"]
    assert all(re.match(pattern, line) for line in written)


def test_workers_write_the_access_log(server_factory: Callable[..., Server]) -> None:
    """``--workers N`` spawns its workers afresh: each sets up its own logging (they used to
    write no access log, nor any other line of Directo's below a warning)."""
    import httpx

    server = server_factory(DIRECTO_WORKERS="2", DIRECTO_LOG_LEVEL="info")
    for _ in range(8):  # a connection each, spread over the workers
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    server.stop()
    lines = server.log().count("INFO directo.access GET /healthz 200")
    assert lines >= 8, server.log()[-2000:]  # and the start-up probe's
