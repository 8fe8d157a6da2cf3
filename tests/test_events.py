"""Each account's event stream: long-poll, cursors, every event type seen from both sides,
typing, resync after pruning, and WebSocket delivery against a real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import websockets

from directo.app import App
from directo.client import AsyncDirecto, DirectoAPIError
from directo.config import Settings
from directo.core import cursors
from directo.core.timeutil import to_text, utcnow
from directo.events import service as events
from tests.conftest import PASSWORD
from tests.helpers import drain, friends, refused

WAIT = 15  # seconds before a test gives up waiting for something that should arrive


def _types(page: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in page]


# -- long-poll ---------------------------------------------------------------------------------

async def test_long_poll_returns_new_events_and_the_next_cursor(signup) -> None:
    ana, ben, conversation = await friends(signup)
    start = (await ben.poll(timeout=0))["cursor"]
    message = await ana.send(conversation, "hola")
    page = await ben.poll(after=start, timeout=0)
    assert _types(page["events"]) == ["message.created"]
    assert page["events"][0]["data"]["message"]["id"] == message["id"]
    assert page["cursor"] == page["events"][-1]["cursor"] != start
    empty = await ben.poll(after=page["cursor"], timeout=0)
    assert (empty["events"], empty["cursor"]) == ([], page["cursor"])
    again = await ben.poll(after=start, timeout=0)  # a cursor can be replayed
    assert again["events"] == page["events"]


async def test_long_poll_waits_and_wakes_on_a_send(signup) -> None:
    ana, ben, conversation = await friends(signup)
    await ben.poll(timeout=0)
    waiting = asyncio.create_task(ben.poll(timeout=30))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # nothing happened yet: the poll is still waiting
    await ana.send(conversation, "wake up")
    page = await asyncio.wait_for(waiting, WAIT)
    assert [e["data"]["message"]["text"] for e in page["events"]] == ["wake up"]


async def test_every_event_type_reaches_both_sides(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    await ana.poll(timeout=0)
    await ben.poll(timeout=0)
    conversation = (await ana.start_conversation("ben"))["id"]
    hello = await ana.send(conversation, "hello, stranger")
    ana_events, ben_events = await drain(ana), await drain(ben)
    assert _types(ana_events) == ["message.created"]
    assert ana_events[0]["data"]["as"]["handle"] == "ana"
    assert ana_events[0]["data"]["notify"] is False
    assert _types(ben_events) == ["conversation.request", "message.created"]
    assert ben_events[0]["data"]["conversation"]["folder"] == "requests"
    assert ben_events[1]["data"]["message"]["text"] == "hello, stranger"
    assert ben_events[1]["data"]["notify"] is False  # requests arrive quietly

    await ben.accept(conversation)
    for sdk in (ana, ben):
        (accepted,) = await drain(sdk)
        assert accepted["type"] == "conversation.accepted"
        assert accepted["data"]["conversation_id"] == conversation
    assert accepted["data"]["conversation"]["folder"] == "inbox"

    await ben.mark_read(conversation, hello["id"])
    await ana.edit(hello["id"], "hello, friend")
    await ben.react(hello["id"], "👋")
    await ben.unreact(hello["id"], "👋")
    await ana.unsend(hello["id"])
    expected = ["conversation.read", "message.edited", "reaction.added", "reaction.removed",
                "message.deleted"]
    for sdk, side in ((ana, "ana"), (ben, "ben")):
        page = await drain(sdk)
        assert _types(page) == expected
        read, edited, added, removed, deleted = (e["data"] for e in page)
        assert all(data["as"]["handle"] == side for data in (read, edited, added, deleted))
        assert (read["by"]["handle"], read["message_id"]) == ("ben", hello["id"])
        assert edited["message_id"] == hello["id"]
        assert (added["emoji"], added["by"]["handle"]) == ("👋", "ben")
        assert (removed["emoji"], removed["by"]["handle"]) == ("👋", "ben")
        assert deleted["message"]["text"] is None and deleted["message"]["deleted_at"]

    answer = await ben.send(conversation, "hi!")
    (created,) = await drain(ana)
    assert created["data"]["message"]["id"] == answer["id"]
    assert _types(await drain(ben)) == ["message.created"]  # his own, for his other devices
    assert created["data"]["notify"] is True
    await ana.update_conversation(conversation, muted=True)
    assert _types(await drain(ana)) == ["conversation.updated"]
    assert await drain(ben) == []  # ben is not told
    await ben.send(conversation, "are you there?")
    (quiet,) = await drain(ana)
    assert quiet["data"]["notify"] is False  # muted


async def test_events_carry_current_state_not_text_at_the_time(signup) -> None:
    """Stored events hold references: an unsent message's text is gone from old events too."""
    ana, ben, conversation = await friends(signup)
    start = (await ben.poll(timeout=0))["cursor"]
    secret = await ana.send(conversation, "my pin is 1234")
    await ana.unsend(secret["id"])
    replay = await ben.poll(after=start, timeout=0)
    assert "1234" not in str(replay)
    assert replay["events"][0]["data"]["message"]["text"] is None


async def test_declining_is_only_told_to_the_decliner(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    conversation = (await ana.start_conversation("ben"))["id"]
    await ana.send(conversation, "hi")
    await ana.poll(timeout=0)
    await ben.poll(timeout=0)
    await ben.decline(conversation)
    assert _types(await drain(ben)) == ["conversation.declined"]
    assert await drain(ana) == []


async def test_two_sessions_of_one_account_both_get_every_event(signup, client) -> None:
    ana, ben, conversation = await friends(signup)
    phone = client()
    await phone.login("ben", PASSWORD)
    await ben.poll(timeout=0)
    await phone.poll(timeout=0)
    waiting = [asyncio.create_task(sdk.poll(timeout=30)) for sdk in (ben, phone)]
    await ana.send(conversation, "one")
    woken = await asyncio.wait_for(asyncio.gather(*waiting), WAIT)
    assert woken[0]["events"] == woken[1]["events"]
    await ana.send(conversation, "two")
    await ana.react((await ana.send(conversation, "three"))["id"], "👍")
    laptop, mobile = await drain(ben), await drain(phone)
    assert laptop == mobile and _types(laptop) == ["message.created"] * 2 + ["reaction.added"]


async def test_typing_is_live_and_never_stored(signup) -> None:
    ana, ben, conversation = await friends(signup)
    await ana.send(conversation, "hi")
    await ana.poll(timeout=0)
    start = (await ben.poll(timeout=0))["cursor"]
    peer_waiting = asyncio.create_task(ben.poll(timeout=30))
    typist_waiting = asyncio.create_task(ana.poll(timeout=1))
    await asyncio.sleep(0.1)
    await ana.typing(conversation)
    page = await asyncio.wait_for(peer_waiting, WAIT)
    (typing,) = page["events"]
    assert typing["type"] == "typing" and typing["cursor"] is None
    assert typing["data"]["conversation_id"] == conversation
    assert typing["data"]["by"]["handle"] == "ana"
    assert page["cursor"] == start  # nothing was added to the stream
    assert (await typist_waiting)["events"] == []  # the typist is not told of their own typing
    await ana.send(conversation, "typed it")
    replay = await ben.poll(after=start, timeout=0)
    assert _types(replay["events"]) == ["message.created"]


async def test_typing_is_not_shown_to_someone_who_has_not_accepted(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    conversation = (await ana.start_conversation("ben"))["id"]
    await ana.send(conversation, "hi")
    await ben.poll(timeout=0)
    await ana.typing(conversation)
    assert (await ben.poll(timeout=0.3))["events"] == []


async def test_a_pruned_cursor_must_resync(signup, app: App) -> None:
    ana, ben, conversation = await friends(signup)
    old = (await ben.poll(timeout=0))["cursor"]
    await ana.send(conversation, "soon forgotten")
    future = to_text(utcnow() + timedelta(days=1))
    while await app.db.write(events._prune, future):
        pass
    await refused(ben.poll(after=old, timeout=0), 410, "resync_required")
    ben.cursor = None  # starting over from now works
    fresh = await ben.poll(timeout=0)
    await ana.send(conversation, "after the resync")
    page = await ben.poll(after=fresh["cursor"], timeout=0)
    assert [e["data"]["message"]["text"] for e in page["events"]] == ["after the resync"]


@pytest.mark.parametrize("cursor", [
    "not-a-cursor", "%%%", cursors.encode("conversations", 1), cursors.encode("events", -1),
    cursors.encode("events", "7"), cursors.encode("events", True), events.encode_cursor(10**9),
])
async def test_bad_cursors_are_refused(signup, cursor: str) -> None:
    ana = await signup("ana")
    await refused(ana.poll(after=cursor, timeout=0), 400, "invalid_cursor")


async def test_someone_elses_cursor_means_nothing_here(signup) -> None:
    """A cursor is a position in one's own stream: ahead of mine, it is refused."""
    ana, ben, conversation = await friends(signup)
    await ben.poll(timeout=0)
    for n in range(3):
        await ana.send(conversation, f"n{n}")
    ahead = (await ben.poll(timeout=0))["cursor"]
    await signup("cai")
    newcomer = await signup("dee")
    await refused(newcomer.poll(after=ahead, timeout=0), 400, "invalid_cursor")


# -- WebSocket, against a real server ----------------------------------------------------------

async def _frames_until(stream: AsyncIterator[dict[str, Any]], kind: str,
                        ) -> list[dict[str, Any]]:
    """Frames up to and including the first of type ``kind``."""
    frames: list[dict[str, Any]] = []

    async def collect() -> None:
        async for frame in stream:
            frames.append(frame)
            if frame["type"] == kind:
                return

    await asyncio.wait_for(collect(), WAIT)
    return frames


async def _next_frame(stream: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return await asyncio.wait_for(anext(stream), WAIT)


@pytest.fixture
async def live(server_factory) -> AsyncIterator[tuple[Any, AsyncDirecto, AsyncDirecto, str]]:
    """A real server, two friends logged in over HTTP, and their conversation."""
    server = server_factory()
    ana, ben = AsyncDirecto(server.url), AsyncDirecto(server.url)
    for sdk, handle in ((ana, "ana"), (ben, "ben")):
        await sdk.signup(handle, PASSWORD, handle.title())
    await ana.follow("ben")
    await ben.follow("ana")
    conversation = (await ana.start_conversation("ben"))["id"]
    yield server, ana, ben, conversation
    await ana.close()
    await ben.close()


@pytest.mark.slow
async def test_websocket_ready_then_live_delivery(live) -> None:
    _server, ana, ben, conversation = live
    stream = ben.stream()
    (ready,) = await _frames_until(stream, "ready")
    assert ready["cursor"]
    await ana.send(conversation, "over the socket")
    frame = await _next_frame(stream)
    assert frame["type"] == "message.created"
    assert frame["data"]["message"]["text"] == "over the socket"
    await ana.typing(conversation)
    typing = await _next_frame(stream)
    assert typing["type"] == "typing" and typing["cursor"] is None
    url = ana.base_url.replace("http", "ws", 1) + f"/api/v1/stream?token={ana.token}"
    async with websockets.connect(url) as ana_socket:  # typing sent as a frame on the socket
        await ana_socket.send(json.dumps({"type": "typing", "conversation_id": conversation}))
        typing = await _next_frame(stream)
        assert (typing["type"], typing["data"]["by"]["handle"]) == ("typing", "ana")
        await ana_socket.send(json.dumps({"type": "ping"}))
        replies = [json.loads(await asyncio.wait_for(ana_socket.recv(), WAIT))["type"]
                   for _ in range(2)]
        assert sorted(replies) == ["pong", "ready"]
    await stream.aclose()


@pytest.mark.slow
async def test_websocket_every_session_of_an_account_gets_every_event(live) -> None:
    server, ana, ben, conversation = live
    async with AsyncDirecto(server.url) as phone:
        await phone.login("ben", PASSWORD)
        streams = [ben.stream(), phone.stream()]
        for stream in streams:
            await _frames_until(stream, "ready")
        sent = [(await ana.send(conversation, f"to every device {n}"))["id"] for n in range(3)]
        for stream in streams:
            frames = [await _next_frame(stream) for _ in sent]
            assert [f["data"]["message"]["id"] for f in frames] == sent
            await stream.aclose()


@pytest.mark.slow
async def test_websocket_resume_gets_what_was_missed_once_and_in_order(live) -> None:
    _server, ana, ben, conversation = live
    stream = ben.stream()
    await _frames_until(stream, "ready")
    await ana.send(conversation, "before the drop")
    await _next_frame(stream)
    await stream.aclose()  # the socket closes; the SDK keeps its cursor
    missed = [(await ana.send(conversation, f"missed {n}"))["id"] for n in range(5)]
    resumed = ben.stream()
    frames = await _frames_until(resumed, "ready")
    assert [f["data"]["message"]["id"] for f in frames[:-1]] == missed
    await ana.send(conversation, "live again")
    frame = await _next_frame(resumed)
    assert frame["data"]["message"]["text"] == "live again"
    await resumed.aclose()


@pytest.mark.slow
async def test_websocket_reconnects_by_itself_after_a_server_restart(live) -> None:
    server, ana, ben, conversation = live
    stream = ben.stream()
    await _frames_until(stream, "ready")
    server.kill()
    server.start()
    missed = [(await ana.send(conversation, f"while away {n}"))["id"] for n in range(3)]
    frames = await _frames_until(stream, "ready")
    assert [f["data"]["message"]["id"] for f in frames if f["type"] == "message.created"] \
        == missed
    await stream.aclose()


@pytest.mark.slow
async def test_websocket_resync_frame_after_pruning(live) -> None:
    server, ana, ben, conversation = live
    old = (await ben.poll(timeout=0))["cursor"]
    await ana.send(conversation, "soon forgotten")
    server.stop()
    pruner = App(Settings(data_dir=server.data_dir, master_key=server.env["DIRECTO_MASTER_KEY"]))
    pruner.db.start()
    try:
        while await pruner.db.write(events._prune, to_text(utcnow() + timedelta(days=1))):
            pass
    finally:
        pruner.db.close()
    server.start()
    stream = ben.stream(after=old)
    frame = await _next_frame(stream)
    assert frame["type"] == "resync_required" and frame["cursor"]
    assert (await _next_frame(stream))["type"] == "ready"
    await stream.aclose()


@pytest.mark.slow
async def test_websocket_refuses_a_bad_token_or_cursor(live) -> None:
    server, _ana, ben, _conversation = live
    url = server.url.replace("http", "ws", 1) + "/api/v1/stream"
    for headers, query in (({"Authorization": "Bearer not-a-token"}, ""), ({}, ""),
                           ({}, "?token=not-a-token")):
        async with websockets.connect(url + query, additional_headers=headers) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), WAIT)
            assert ws.close_code == 4401
    async with websockets.connect(f"{url}?token={ben.token}") as ws:
        assert '"ready"' in await asyncio.wait_for(ws.recv(), WAIT)
    with pytest.raises(DirectoAPIError) as bad_cursor:  # the SDK stops instead of retrying
        await asyncio.wait_for(anext(ben.stream(after="not-a-cursor")), WAIT)
    assert (bad_cursor.value.status, bad_cursor.value.code) == (400, "invalid_cursor")
    ben.token = "not-a-token"
    with pytest.raises(DirectoAPIError) as bad_token:
        await asyncio.wait_for(anext(ben.stream()), WAIT)
    assert bad_token.value.status == 401


@pytest.mark.slow
async def test_websocket_frames_stay_uncompressed_when_the_client_offers_compression(
        live) -> None:
    """Browsers offer permessage-deflate. A stream that took it would hold zlib's state for
    as long as it is open (68 KiB per idle stream instead of 29), so the server declines."""
    server, _ana, ben, _conversation = live
    url = server.url.replace("http", "ws", 1) + "/api/v1/stream"
    async with websockets.connect(url, compression="deflate",
                                  additional_headers={"Authorization": f"Bearer {ben.token}"},
                                  ) as ws:
        assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert '"ready"' in await asyncio.wait_for(ws.recv(), WAIT)


async def test_reaction_events_carry_the_message_as_it_now_is(signup) -> None:
    ana, ben, conversation = await friends(signup)
    hello = await ana.send(conversation, "hello")
    await drain(ana)
    await ben.react(hello["id"], "🎉")
    (added,) = await drain(ana)
    assert added["type"] == "reaction.added"
    message = added["data"]["message"]
    assert message["id"] == hello["id"] and message["text"] == "hello"
    assert message["reactions"] == [{"emoji": "🎉", "by": ["ben"]}]


async def test_pruning_drops_only_what_is_past_retention(signup, app: App) -> None:
    """Old events go, in small batches; newer ones stay; a cursor into the pruned part must
    resync, one past it still reads on."""
    from sqlalchemy import select, update

    from directo.events.store import account_streams, prune_before
    from directo.events.store import events as events_table

    ana, _ben, conversation = await friends(signup)
    for n in range(6):
        await ana.send(conversation, f"old {n}")
    old_cursor = (await ana.poll(timeout=0))["cursor"]

    def age_everything(tx) -> None:
        tx.conn.execute(update(events_table).values(created_at="2020-01-01T00:00:00.000000Z"))

    await app.db.write(age_everything)
    kept = await ana.send(conversation, "new")

    def prune_in_batches_of_two(tx) -> int:
        return prune_before(tx.conn, "2021-01-01T00:00:00.000000Z", batch=2)

    passes = 0
    while await app.db.write(prune_in_batches_of_two):
        passes += 1
    assert passes > 2  # it went in small steps

    def left(conn):
        remaining = conn.execute(select(events_table.c.created_at)).scalars().all()
        streams = conn.execute(select(account_streams.c.pruned_seq,
                                      account_streams.c.last_seq)).all()
        return remaining, streams

    remaining, streams = app.db.read_sync(left)
    assert remaining and all(not at.startswith("2020") for at in remaining)
    assert all(pruned == last - 1 for pruned, last in streams if last > 0)
    await refused(ana.poll(after=cursors.encode("events", 1), timeout=0), 410,
                  "resync_required")
    page = await ana.poll(after=old_cursor, timeout=0)
    assert [e["data"]["message_id"] for e in page["events"]] == [kept["id"]]


async def test_the_catch_up_repairs_a_lost_wake_up(signup, app: App) -> None:
    """A notification lost on its way (as Redis pub/sub may lose one) delays an event until
    the next catch-up round, which finds the subscriber behind its stream and wakes it."""
    ana, ben, conversation = await friends(signup)
    await drain(ben)
    waiting = asyncio.create_task(ben.poll(timeout=30))
    await asyncio.sleep(0.3)  # ben's long-poll is now waiting for a wake-up
    app.db.on_commit = lambda accounts: None  # the wake-up of the next commit is lost
    try:
        sent = await ana.send(conversation, "are you there?")
    finally:
        app.db.on_commit = app.broker.publish
    await asyncio.sleep(0.3)
    assert not waiting.done(), "nothing told ben's long-poll yet"
    await events.catch_up_once(app)
    page = await asyncio.wait_for(waiting, 5)
    assert [e["data"]["message_id"] for e in page["events"]] == [sent["id"]]
