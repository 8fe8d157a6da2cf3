"""Presence: who may see whether someone is online, and that an open stream is what makes them
online (embedded default: one process, in-process broker). Across processes, with Redis, see
tests/test_scale_out.py."""

from __future__ import annotations

import asyncio

import pytest

from directo.client import AsyncDirecto
from tests.conftest import PASSWORD
from tests.helpers import Signup, friends, presence, refused, until_online

WAIT = 20.0


async def test_someone_you_talk_with_shows_offline_until_they_connect(signup: Signup) -> None:
    ana, ben, conversation = await friends(signup)
    await ana.send(conversation, "hola")

    assert await presence(ana, "ben") == {"online": False, "last_seen_at": None}
    assert await presence(ben, "ana") == {"online": False, "last_seen_at": None}
    assert (await presence(ana, "ana"))["online"] is False  # one's own, too


async def test_presence_is_hidden_from_everyone_they_have_not_accepted(signup: Signup) -> None:
    ana, ben, conversation = await friends(signup)
    await ana.send(conversation, "hi")
    stranger = await signup("cyd")
    requester = await signup("dora")
    await requester.send((await requester.start_conversation("ben"))["id"], "hello?")

    unknown = await refused(presence(ana, "nobody_here"), 404, "not_found")
    for viewer in (stranger, requester):  # no conversation / ben never accepted theirs
        hidden = await refused(presence(viewer, "ben"), 404, "not_found")
        assert hidden.message == unknown.message  # no hint that the account exists
    await refused(presence(ana, "no"), 404, "not_found")  # not even a valid handle

    await ben.block("ana")
    await refused(presence(ana, "ben"), 404, "not_found")
    await refused(presence(ben, "ana"), 404, "not_found")


async def test_presence_needs_a_session(signup: Signup, client) -> None:
    await signup("ana")
    anonymous = client()
    await refused(presence(anonymous, "ana"), 401, "unauthorized")


async def test_brand_team_members_see_the_customers_of_their_brand(signup: Signup) -> None:
    acme, agent = await signup("acme", kind="brand"), await signup("agt")
    await acme.add_member("acme", "agt", "agent")
    customer, outsider = await signup("carla"), await signup("otto")
    await customer.send((await customer.start_conversation("acme"))["id"], "my order?")

    assert (await presence(agent, "carla"))["online"] is False
    await refused(presence(outsider, "carla"), 404, "not_found")


@pytest.mark.slow
async def test_an_open_stream_is_online_and_closing_it_records_last_seen(server_factory) -> None:
    server = server_factory()
    async with AsyncDirecto(server.url) as ana, AsyncDirecto(server.url) as ben:
        await ana.signup("ana", PASSWORD, "Ana")
        await ben.signup("ben", PASSWORD, "Ben")
        await ana.follow("ben")
        await ben.follow("ana")
        await ana.send((await ana.start_conversation("ben"))["id"], "hola")

        stream = ben.stream()
        assert (await asyncio.wait_for(anext(stream), WAIT))["type"] == "ready"
        seen = await until_online(ana, "ben", online=True)
        assert seen["last_seen_at"] is not None

        second = AsyncDirecto(server.url, token=ben.token)  # a second device stays connected
        second_stream = second.stream()
        assert (await asyncio.wait_for(anext(second_stream), WAIT))["type"] == "ready"
        await stream.aclose()
        assert (await presence(ana, "ben"))["online"] is True

        await second_stream.aclose()
        await second.close()
        gone = await until_online(ana, "ben", online=False)
        assert gone["last_seen_at"] is not None
        assert gone["last_seen_at"] >= seen["last_seen_at"]
