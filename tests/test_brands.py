"""Brand teams through the API: who manages the team, members answering as the brand, and
who receives the brand's events."""

from __future__ import annotations

from directo.client import AsyncDirecto
from tests.helpers import Signup, drain, refused


async def _team(signup: Signup) -> dict[str, AsyncDirecto]:
    """Acme with an owner, an admin and two agents; every member logged in."""
    team = {"acme": await signup("acme", kind="brand")}
    for handle, role in (("olga", "owner"), ("adam", "admin"), ("ana", "agent"),
                         ("aga", "agent")):
        team[handle] = await signup(handle)
        await team["acme"].add_member("acme", handle, role)
    return team


def _roles(members: list[dict]) -> dict[str, str]:
    return {m["account"]["handle"]: m["role"] for m in members}


async def test_brand_and_owners_manage_everyone(signup) -> None:
    team = await _team(signup)
    nora = await signup("nora")
    owner = team["olga"]
    await owner.add_member("acme", "nora", "owner")
    await owner.add_member("acme", "nora", "agent")
    await team["acme"].remove_member("acme", "adam")
    assert _roles(await owner.members("acme")) == {"olga": "owner", "ana": "agent",
                                                   "aga": "agent", "nora": "agent"}
    assert [(b["brand"]["handle"], b["role"]) for b in (await nora.me())["brands"]] \
        == [("acme", "agent")]


async def test_admins_cannot_touch_owners(signup) -> None:
    team = await _team(signup)
    await signup("nora")
    admin = team["adam"]
    await admin.add_member("acme", "nora", "admin")
    await admin.add_member("acme", "ana", "admin")
    await admin.remove_member("acme", "aga")
    await refused(admin.add_member("acme", "nora", "owner"), 403, "insufficient_role")
    await refused(admin.add_member("acme", "olga", "agent"), 403, "insufficient_role")
    await refused(admin.remove_member("acme", "olga"), 403, "insufficient_role")
    assert _roles(await admin.members("acme")) == {"olga": "owner", "adam": "admin",
                                                   "ana": "admin", "nora": "admin"}


async def test_agents_cannot_manage(signup) -> None:
    team = await _team(signup)
    await signup("nora")
    agent = team["ana"]
    await refused(agent.add_member("acme", "nora", "agent"), 403, "insufficient_role")
    await refused(agent.remove_member("acme", "aga"), 403, "insufficient_role")
    await refused(agent.add_member("acme", "ana", "owner"), 403, "insufficient_role")
    assert _roles(await agent.members("acme"))["ana"] == "agent"
    assert "nora" not in _roles(await agent.members("acme"))


async def test_outsiders_cannot_see_or_change_the_team(signup) -> None:
    team = await _team(signup)
    stranger = await signup("sam")
    missing = await refused(stranger.members("acme"), 404, "not_found")
    assert missing.message == (await refused(stranger.members("no_such_brand"), 404,
                                             "not_found")).message
    await refused(stranger.add_member("acme", "sam", "owner"), 404, "not_found")
    await refused(stranger.remove_member("acme", "olga"), 404, "not_found")
    await refused(team["olga"].members("sam"), 404, "not_found")  # a person is no brand
    other_brand = await signup("globex", kind="brand")
    await refused(team["olga"].add_member("acme", "globex", "agent"), 422, "invalid_member")
    await refused(team["olga"].remove_member("acme", "sam"), 404, "not_found")
    await refused(other_brand.members("acme"), 404, "not_found")
    assert set(_roles(await team["acme"].members("acme"))) == {"olga", "adam", "ana", "aga"}


async def test_member_answers_as_the_brand(signup) -> None:
    team = await _team(signup)
    customer = await signup("cus")
    conversation = (await customer.start_conversation("acme"))["id"]
    await customer.send(conversation, "my order never arrived")
    inbox = await team["ana"].conversations(as_brand="acme")
    assert [c["id"] for c in inbox["items"]] == [conversation]
    assert inbox["items"][0]["as"]["handle"] == "acme"
    answer = await team["ana"].send(conversation, "sorry! sending a new one today")
    seen = (await customer.messages(conversation))["items"][-1]
    for message in (answer, seen):
        assert message["sender"]["handle"] == "acme"
        assert message["author"]["handle"] == "ana"
        assert message["sender_label"] == "Ana · Acme"
    assert (await customer.conversation(conversation))["with"]["handle"] == "acme"
    # a colleague reads it in the shared inbox, but cannot change Ana's words
    assert (await team["aga"].messages(conversation))["items"][-1]["author"]["handle"] == "ana"
    await refused(team["aga"].edit(answer["id"], "changed"), 403, "not_your_message")
    await refused(team["aga"].unsend(answer["id"]), 403, "not_your_message")
    assert (await team["ana"].edit(answer["id"], "sorry! new one ships today"))["text"] \
        == "sorry! new one ships today"


async def test_member_starts_a_conversation_as_the_brand(signup) -> None:
    team = await _team(signup)
    customer = await signup("cus")
    await customer.follow("acme")
    started = await team["adam"].start_conversation("cus", as_brand="acme")
    assert started["as"]["handle"] == "acme"
    await team["adam"].send(started["id"], "your parcel is on its way")
    view = await customer.conversation(started["id"])
    assert view["with"]["handle"] == "acme"
    assert view["last_message"]["sender_label"] == "Adam · Acme"
    outsider = await signup("sam")
    await refused(outsider.start_conversation("cus", as_brand="acme"), 404, "not_found")


async def test_every_member_and_the_brand_receive_its_events(signup) -> None:
    team = await _team(signup)
    customer = await signup("cus")
    conversation = (await customer.start_conversation("acme"))["id"]
    for sdk in team.values():
        await sdk.poll(timeout=0)
    question = await customer.send(conversation, "do you ship to Lisbon?")
    await team["aga"].react(question["id"], "👍")
    for handle, sdk in team.items():
        events = await drain(sdk)
        assert [e["type"] for e in events] == ["message.created", "reaction.added"], handle
        created = events[0]["data"]
        assert created["as"]["handle"] == "acme"
        assert created["message"]["text"] == "do you ship to Lisbon?"
        assert events[1]["data"]["by"]["handle"] == "acme"


async def test_a_removed_member_loses_access(signup) -> None:
    team = await _team(signup)
    customer = await signup("cus")
    conversation = (await customer.start_conversation("acme"))["id"]
    before = (await team["ana"].poll(timeout=0))["cursor"]
    message = await customer.send(conversation, "hello acme")
    await team["olga"].remove_member("acme", "ana")
    replay = await team["ana"].poll(after=before, timeout=0)  # replaying reopens nothing
    assert [e["type"] for e in replay["events"]] == ["brand.member_removed"]
    assert "hello acme" not in str(replay) and conversation not in str(replay)
    ana = team["ana"]
    await refused(ana.conversation(conversation), 404, "not_found")
    await refused(ana.messages(conversation), 404, "not_found")
    await refused(ana.send(conversation, "still here?"), 404, "not_found")
    await refused(ana.react(message["id"], "👍"), 404, "not_found")
    await refused(ana.conversations(as_brand="acme"), 404, "not_found")
    await refused(ana.members("acme"), 404, "not_found")
    assert "acme" not in await ana.unread()
    await customer.send(conversation, "anyone?")
    assert await drain(ana) == []
