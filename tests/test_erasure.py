"""Account erasure: re-authenticated, crypto-shredding, and harmless to the peer's client."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Row, select
from websockets.exceptions import ConnectionClosed, InvalidStatus

from directo.app import App
from directo.client import AsyncDirecto, DirectoAPIError
from directo.conversations.store import conversations, messages
from directo.core.crypto import NONCE_BYTES
from tests.conftest import PASSWORD
from tests.helpers import friends


def _message_row(app: App, message_id: str) -> Row | None:
    def read(conn: Connection) -> Row | None:
        return conn.execute(select(messages).where(messages.c.id == message_id)).first()

    return app.db.read_sync(read)


def _wrapped_keys(app: App) -> list[tuple[str, bytes | None]]:
    def read(conn: Connection) -> list[tuple[str, bytes | None]]:
        query = select(conversations.c.key_id, conversations.c.wrapped_key)
        return [(row.key_id, row.wrapped_key) for row in conn.execute(query)]

    return app.db.read_sync(read)


async def test_wrong_password_refuses_and_changes_nothing(signup) -> None:
    ana, ben, conversation_id = await friends(signup)
    await ana.send(conversation_id, "still here")
    with pytest.raises(DirectoAPIError) as refused:
        await ana.erase_account("not my password")
    assert (refused.value.status, refused.value.code) == (401, "invalid_credentials")
    assert (await ana.me())["handle"] == "ana"
    page = await ben.messages(conversation_id)
    assert [m["text"] for m in page["items"]] == ["still here"]


async def test_erasure_needs_a_session_and_a_password(client, signup) -> None:
    ana = await signup("ana")
    bearer = {"Authorization": f"Bearer {ana.token}"}
    for body in ({}, {"password": 12}, {"password": PASSWORD, "extra": 1}):
        response = await ana.http.request("DELETE", "/api/v1/me", json=body, headers=bearer)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_request"
    anonymous = await client().http.request("DELETE", "/api/v1/me", json={"password": PASSWORD})
    assert anonymous.status_code == 401
    assert (await ana.me())["handle"] == "ana"


async def test_erasure_ends_sessions_and_frees_the_handle(signup, client) -> None:
    ana, _ben, conversation_id = await friends(signup)
    other_device = client()
    await other_device.login("ana", PASSWORD)
    await other_device.send(conversation_id, "sent from the other device")
    await ana.erase_account(PASSWORD)
    with pytest.raises(DirectoAPIError) as gone:
        await other_device.me()
    assert gone.value.status == 401
    # the send path, which remembers tokens it has resolved, has forgotten this one too
    with pytest.raises(DirectoAPIError) as no_send:
        await other_device.send(conversation_id, "after erasure")
    assert no_send.value.status == 401
    with pytest.raises(DirectoAPIError) as no_login:
        await client().login("ana", PASSWORD)
    assert no_login.value.status == 401
    again = await signup("ana")
    assert (await again.me())["handle"] == "ana"


async def test_peer_sees_the_conversation_disappear(signup) -> None:
    ana, ben, conversation_id = await friends(signup)
    await ben.poll(timeout=0)
    before = ben.cursor
    await ana.send(conversation_id, "hola ben")
    sent = await ben.send(conversation_id, "hola ana")
    await ana.react(sent["id"], "👍")
    await ana.mark_read(conversation_id, sent["id"])
    await ana.erase_account(PASSWORD)

    assert (await ben.conversations())["items"] == []
    with pytest.raises(DirectoAPIError) as gone:
        await ben.conversation(conversation_id)
    assert gone.value.status == 404
    with pytest.raises(DirectoAPIError) as gone:
        await ben.send(conversation_id, "are you there?")
    assert gone.value.status == 404

    # The peer's stream still replays from an old cursor, and ends telling it to drop the
    # conversation; events about it no longer carry any text.
    events = (await ben.poll(after=before, timeout=0))["events"]
    assert events[-1]["type"] == "conversation.removed"
    assert events[-1]["data"]["conversation_id"] == conversation_id
    for event in events[:-1]:
        assert event["data"].get("message") is None
        assert event["data"].get("conversation") is None
    assert "hola" not in str(events)


async def test_brand_keeps_what_an_erased_agent_wrote(signup) -> None:
    brand, agent, customer = await signup("shop", "brand"), await signup("sara"), \
        await signup("carl")
    await brand.add_member("shop", "sara", "agent")
    conversation_id = (await customer.start_conversation("shop"))["id"]
    await customer.send(conversation_id, "where is my order?")
    await agent.send(conversation_id, "on its way")
    await agent.erase_account(PASSWORD)

    texts = [(m["text"], m["author"]) for m in (await customer.messages(conversation_id))["items"]]
    assert texts[0] == ("where is my order?", None)
    assert texts[1][0] == "on its way"
    assert texts[1][1]["display_name"] == "Deleted account"
    assert [m["handle"] for m in await brand.members("shop")] == []


async def test_erased_ciphertext_cannot_be_decrypted(app: App, signup) -> None:
    ana, ben, conversation_id = await friends(signup)
    carla = await signup("carla")
    kept = (await carla.start_conversation("ben"))["id"]
    await carla.send(kept, "this one stays")
    sent = await ana.send(conversation_id, "secret recipe: saffron")
    row = _message_row(app, sent["id"])
    assert row is not None and row.body is not None
    ciphertext = row.body
    assert len(_wrapped_keys(app)) == 2

    await ana.erase_account(PASSWORD)

    assert _message_row(app, sent["id"]) is None
    left = _wrapped_keys(app)
    assert len(left) == 1
    # Every data key left in the database, unwrapped with the master key, fails to open it.
    for key_id, wrapped in left:
        assert wrapped is not None
        data_key = AESGCM(app.keyring.unwrap(key_id, wrapped))
        with pytest.raises(InvalidTag):
            data_key.decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:],
                             sent["id"].encode())
    assert [m["text"] for m in (await ben.messages(kept))["items"]] == ["this one stays"]


async def _refused_or_closed(url: str, token: str) -> None:
    """Check that a stream for ``token`` is refused, or closed before it sends anything."""
    try:
        async with websockets.connect(url, open_timeout=10,
                                      additional_headers={"Authorization": f"Bearer {token}"},
                                      ) as ws, asyncio.timeout(30):
            frame = await ws.recv()
    except (ConnectionClosed, InvalidStatus):
        return
    raise AssertionError(f"the stream accepted an erased account's token: {frame!r}")


@pytest.mark.slow
async def test_erasure_cuts_off_the_accounts_open_stream(server_factory) -> None:
    server = server_factory()
    ana = AsyncDirecto(server.url)
    await ana.signup("ana", PASSWORD, "Ana")
    token = ana.token
    assert token is not None
    url = server.url.replace("http", "ws", 1) + "/api/v1/stream"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                  open_timeout=10) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ana.erase_account(PASSWORD)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(30):
                while True:
                    assert json.loads(await ws.recv())["type"] != "message.created"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    await _refused_or_closed(url, token)
    await ana.close()


async def test_guessing_the_password_to_erase_is_rate_limited(signup) -> None:
    ana = await signup("ana")
    for _ in range(5):
        with pytest.raises(DirectoAPIError) as wrong:
            await ana.erase_account("a guess at it")
        assert wrong.value.status == 401
    with pytest.raises(DirectoAPIError) as limited:
        await ana.erase_account(PASSWORD)
    assert (limited.value.status, limited.value.code) == (429, "rate_limited")
    assert (await ana.me())["handle"] == "ana"


async def test_erasing_a_brand_leaves_its_team_and_customers_working(signup) -> None:
    brand, agent, customer = await signup("shop", "brand"), await signup("sara"), \
        await signup("carl")
    await brand.add_member("shop", "sara", "agent")
    await agent.poll(timeout=0)
    before = agent.cursor
    conversation_id = (await customer.start_conversation("shop"))["id"]
    await customer.send(conversation_id, "hello shop")
    await agent.send(conversation_id, "hello carl")
    await customer.poll(timeout=0)
    await brand.erase_account(PASSWORD)

    assert (await agent.me())["brands"] == []
    assert "hello" not in str(await agent.poll(after=before, timeout=0))
    assert (await customer.conversations())["items"] == []
    [removed] = (await customer.poll(timeout=0))["events"]
    assert removed["type"] == "conversation.removed"
    assert removed["data"]["conversation_id"] == conversation_id
    with pytest.raises(DirectoAPIError) as gone:
        await customer.messages(conversation_id)
    assert gone.value.status == 404


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # files of the embedded default
async def test_erased_keys_and_texts_leave_no_bytes_in_the_files(app: App, signup) -> None:
    """On SQLite: the database, its WAL and shared memory hold neither the erased
    conversation's wrapped key nor its ciphertext once erasure has answered."""
    ana, _ben, conversation_id = await friends(signup)
    sent = await ana.send(conversation_id, "to be forgotten")
    row = _message_row(app, sent["id"])
    assert row is not None and row.body is not None
    ((_key_id, wrapped),) = _wrapped_keys(app)
    assert wrapped is not None

    await ana.erase_account(PASSWORD)

    files = [path for path in app.settings.data_dir.iterdir()
             if path.name.startswith("directo.db")]
    assert files
    for path in files:
        content = path.read_bytes()
        assert wrapped not in content, path.name
        assert row.body not in content, path.name
