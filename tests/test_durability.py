"""A 201 means committed: ``kill -9`` of a real server (SQLite or PostgreSQL) loses no
acknowledged message and leaves the store consistent, and a client's event stream resumes
across the restart without gaps."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from directo.client import AsyncDirecto, DirectoAPIError
from directo.conversations.store import conversations, messages, participants
from directo.events.store import account_streams, events
from tests.conftest import PASSWORD, Server

pytestmark = pytest.mark.slow

HANDLES = [f"user{n}" for n in range(8)]
# Pairs that talk; user0 and user2 are in two conversations, so their streams interleave.
PAIRS = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2)]
SENDERS_PER_CONVERSATION = 3  # both sides write, one of them from two devices
ACKS_BEFORE_KILL = 250


@dataclass
class Send:
    """One send and what its sender was told: the 201's message, or nothing (in doubt)."""

    device: AsyncDirecto
    conversation_id: str
    client_id: str
    text: str
    acked: dict[str, Any] | None = None

    async def post(self, device: AsyncDirecto | None = None) -> httpx.Response:
        return await (device or self.device).request(
            "POST", f"/conversations/{self.conversation_id}/messages",
            {"client_id": self.client_id, "text": self.text})


async def _accounts(server: Server) -> dict[str, AsyncDirecto]:
    sdks = {}
    for handle in HANDLES:
        sdk = AsyncDirecto(server.url)
        await sdk.signup(handle, PASSWORD, handle.title())
        sdks[handle] = sdk
    for a, b in PAIRS:
        await sdks[HANDLES[a]].follow(HANDLES[b])
        await sdks[HANDLES[b]].follow(HANDLES[a])
    return sdks


def _device(server: Server, sdk: AsyncDirecto) -> AsyncDirecto:
    """Another client for the same account, with its own connections."""
    return AsyncDirecto(server.url, token=sdk.token)


async def _send_until_refused(device: AsyncDirecto, conversation_id: str, name: str,
                              sends: list[Send]) -> None:
    for n in range(100_000):
        send = Send(device, conversation_id, f"{name}-{n}", f"durable {name} #{n} "
                    f"{uuid.uuid4().hex}")
        sends.append(send)
        try:
            response = await send.post()
        except (httpx.HTTPError, DirectoAPIError):
            return
        assert response.status_code == 201, response.text
        send.acked = response.json()
        assert send.acked["text"] == send.text


async def _all_messages(sdk: AsyncDirecto, conversation_id: str) -> list[dict[str, Any]]:
    """Every message of a conversation, oldest first, paging back from the newest."""
    found: list[dict[str, Any]] = []
    before = None
    while True:
        page = await sdk.messages(conversation_id, before=before, limit=200)
        found[:0] = page["items"]
        if not page["has_more"]:
            return found
        before = page["items"][0]["id"]


def _check_store(url: str) -> dict[str, int]:
    """Invariants of the stored state; returns the number of messages per conversation."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if url.startswith("sqlite"):
                assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
                assert list(conn.execute(text("PRAGMA foreign_key_check"))) == []
            counts = {}
            for conversation in conn.execute(select(conversations)):
                seqs = list(conn.execute(
                    select(messages.c.seq).where(messages.c.conversation_id == conversation.id)
                    .order_by(messages.c.seq)).scalars())
                assert seqs == list(range(1, conversation.last_seq + 1)), conversation.id
                newest = conn.execute(select(messages.c.id).where(
                    messages.c.conversation_id == conversation.id,
                    messages.c.seq == conversation.last_seq)).scalar()
                for side in conn.execute(select(participants).where(
                        participants.c.conversation_id == conversation.id)):
                    assert side.last_message_id == newest, (conversation.id, side.account_id)
                counts[conversation.id] = len(seqs)
            for stream in conn.execute(select(account_streams)):
                seqs = list(conn.execute(select(events.c.seq).where(
                    events.c.account_id == stream.account_id).order_by(events.c.seq)).scalars())
                assert seqs == list(range(stream.pruned_seq + 1, stream.last_seq + 1))
            assert conn.execute(select(func.count()).select_from(messages)).scalar() == \
                sum(counts.values())
            return counts
    finally:
        engine.dispose()


async def _close(sdks: list[AsyncDirecto]) -> None:
    for sdk in sdks:
        await sdk.close()


@pytest.fixture
def postgres_database(backend: str, request: pytest.FixtureRequest) -> str | None:
    """An emptied PostgreSQL database for the server under test; None: SQLite."""
    if backend == "sqlite":
        return None
    url = request.getfixturevalue("settings_factory")().database_url
    assert url is not None
    return str(url)


async def test_kill_9_mid_stream_loses_no_acknowledged_message(
        server_factory: Callable[..., Server], postgres_database: str | None) -> None:
    if postgres_database is None:
        server = server_factory()
        database_url = f"sqlite:///{server.data_dir / 'directo.db'}"
    else:
        server = server_factory(DIRECTO_DATABASE_URL=postgres_database)
        database_url = postgres_database
    sdks = await _accounts(server)
    sends: list[Send] = []
    senders = []
    readers = {}
    for a, b in PAIRS:
        first, second = sdks[HANDLES[a]], sdks[HANDLES[b]]
        conversation_id = (await first.start_conversation(HANDLES[b]))["id"]
        readers[conversation_id] = first
        devices = [first, second, _device(server, first)][:SENDERS_PER_CONVERSATION]
        for number, device in enumerate(devices):
            senders.append(_send_until_refused(device, conversation_id,
                                               f"{conversation_id}-{number}", sends))
    assert len(senders) >= 10
    tasks = [asyncio.create_task(sender) for sender in senders]
    while sum(s.acked is not None for s in sends) < ACKS_BEFORE_KILL \
            and not all(t.done() for t in tasks):
        await asyncio.sleep(0.005)
    server.kill()  # SIGKILL, with sends in flight
    await asyncio.gather(*tasks)
    acked = [s for s in sends if s.acked is not None]
    in_doubt = [s for s in sends if s.acked is None]
    assert len(acked) >= ACKS_BEFORE_KILL
    assert in_doubt, "the kill should have caught sends in flight"

    server.start()  # the same data directory and port
    counts = _check_store(database_url)
    stored = {message["id"]: message for conversation_id, reader in readers.items()
              for message in await _all_messages(reader, conversation_id)}
    for send in acked:
        assert send.acked is not None
        assert send.acked["id"] in stored, f"acknowledged {send.client_id} was lost"
        assert stored[send.acked["id"]]["text"] == send.text
    assert len(stored) == sum(counts.values()) <= len(sends)

    # Retrying an acknowledged send answers 200 with the original and creates nothing; a
    # send whose answer was lost is retried safely and then exists exactly once.
    for send in acked:
        retry = await send.post()
        assert retry.status_code == 200
        assert retry.json() == send.acked
    for send in in_doubt:
        retry = await send.post()
        assert retry.status_code in (200, 201)
        assert retry.json()["text"] == send.text
    after_retries = _check_store(database_url)
    assert sum(after_retries.values()) == len(sends)
    await _close(list(dict.fromkeys(s.device for s in sends)))


async def _message_frames(sdk: AsyncDirecto, into: list[dict[str, Any]],
                          stop_after: int | None = None) -> None:
    """Collect ``message.created`` frames from ``sdk.stream()`` (resuming at its cursor)."""
    stream: AsyncIterator[dict[str, Any]] = sdk.stream()
    try:
        async for frame in stream:
            if frame["type"] == "resync_required":
                raise AssertionError("the stream lost its place")
            if frame["type"] == "message.created":
                into.append(frame)
                if stop_after is not None and len(into) >= stop_after:
                    return
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def _wait_for(frames: list[dict[str, Any]], count: int) -> None:
    async with asyncio.timeout(30):
        while len(frames) < count:
            await asyncio.sleep(0.02)


async def test_stream_resumes_across_a_restart_with_every_event_once(
        server_factory: Callable[..., Server]) -> None:
    server = server_factory()
    ana, ben = AsyncDirecto(server.url), AsyncDirecto(server.url)
    await ana.signup("ana", PASSWORD, "Ana")
    await ben.signup("ben", PASSWORD, "Ben")
    await ana.follow("ben")
    await ben.follow("ana")
    conversation_id = (await ana.start_conversation("ben"))["id"]
    await ben.poll(timeout=0)  # ben's cursor: now
    phone = AsyncDirecto(server.url, token=ben.token)
    phone.cursor = ben.cursor
    on_phone: list[dict[str, Any]] = []
    phone_task = asyncio.create_task(_message_frames(phone, on_phone))  # stays connected
    sent = [await ana.send(conversation_id, f"before the crash {n}") for n in range(3)]
    on_laptop: list[dict[str, Any]] = []
    await _message_frames(ben, on_laptop, stop_after=3)
    await _wait_for(on_phone, 3)

    server.kill()
    server.start()
    sent += [await ana.send(conversation_id, f"while ben was away {n}") for n in range(3)]
    resumed = asyncio.create_task(_message_frames(ben, on_laptop))
    await _wait_for(on_laptop, 6)
    sent.append(await ana.send(conversation_id, "live again"))
    await _wait_for(on_laptop, 7)
    await _wait_for(on_phone, 7)
    for task in (resumed, phone_task):
        task.cancel()
    await asyncio.gather(resumed, phone_task, return_exceptions=True)

    expected = [message["id"] for message in sent]
    for frames in (on_laptop, on_phone):
        assert [frame["data"]["message_id"] for frame in frames] == expected
        assert [frame["data"]["message"]["text"] for frame in frames] == \
            [message["text"] for message in sent]
    await _close([ana, ben, phone])


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_restarted_postgresql_costs_no_request(app: Any, signup: Any) -> None:
    """Every pooled connection dropped (as by a PostgreSQL restart): the next requests, the
    token lookup and the send transaction alike, reconnect and succeed; none is refused."""
    from tests.helpers import friends

    ana, _ben, conversation_id = await friends(signup)
    await ana.send(conversation_id, "before")
    admin = create_engine(app.settings.effective_database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        dropped = conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    admin.dispose()
    assert dropped, "the app held no connection to drop"
    await ana.send(conversation_id, "after")
    page = await ana.messages(conversation_id)
    assert [message["text"] for message in page["items"]] == ["before", "after"]
