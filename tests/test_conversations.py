"""Conversations and message requests: who lands where, and who may write."""

from __future__ import annotations

import pytest

from directo.client import DirectoAPIError


async def refused(call, status: int, code: str) -> None:
    with pytest.raises(DirectoAPIError) as error:
        await call
    assert (error.value.status, error.value.code) == (status, code)


async def test_start_is_get_or_create(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    response = await ana.request("POST", "/conversations", {"with": "ben"})
    assert response.status_code == 201
    again = await ana.request("POST", "/conversations", {"with": "ben"})
    assert again.status_code == 200 and again.json()["id"] == response.json()["id"]
    from_ben = await ben.request("POST", "/conversations", {"with": "ana"})
    assert from_ben.status_code == 200 and from_ben.json()["id"] == response.json()["id"]
    await refused(ana.start_conversation("ana"), 422, "invalid_target")
    await refused(ana.start_conversation("nobody_here"), 404, "not_found")


async def test_empty_conversation_is_in_nobodys_list(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    await ana.start_conversation("ben")
    assert (await ana.conversations())["items"] == []
    assert (await ben.conversations(folder="requests"))["items"] == []


async def test_stranger_message_is_a_request_limited_to_three(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    conversation = await ana.start_conversation("ben")
    for n in range(3):
        await ana.send(conversation["id"], f"hello {n}")
    await refused(ana.send(conversation["id"], "one more"), 403, "request_pending")
    assert (await ben.conversations())["items"] == []
    requests = (await ben.conversations(folder="requests"))["items"]
    assert [c["id"] for c in requests] == [conversation["id"]]
    assert requests[0]["unread_count"] == 3
    assert requests[0]["last_message"]["text"] == "hello 2"
    mine = (await ana.conversations())["items"][0]
    assert mine["awaiting_acceptance"] is True
    accepted = await ben.accept(conversation["id"])
    assert accepted["folder"] == "inbox"
    assert [c["id"] for c in (await ben.conversations())["items"]] == [conversation["id"]]
    await ana.send(conversation["id"], "thanks for accepting")
    assert (await ana.conversation(conversation["id"]))["awaiting_acceptance"] is False


async def test_replying_accepts_a_request(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    conversation = await ana.start_conversation("ben")
    await ana.send(conversation["id"], "hi")
    await ben.send(conversation["id"], "hi back")
    assert (await ben.conversation(conversation["id"]))["folder"] == "inbox"
    for n in range(5):
        await ana.send(conversation["id"], f"more {n}")


async def test_followers_land_in_the_inbox(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    await ben.follow("ana")
    conversation = await ana.start_conversation("ben")
    await ana.send(conversation["id"], "hi")
    assert (await ben.conversation(conversation["id"]))["folder"] == "inbox"


async def test_messages_to_a_brand_are_never_requests(signup) -> None:
    ana, acme = await signup("ana"), await signup("acme", kind="brand")
    conversation = await ana.start_conversation("acme")
    for n in range(5):
        await ana.send(conversation["id"], f"question {n}")
    assert (await acme.conversation(conversation["id"]))["folder"] == "inbox"


async def test_decline_hides_and_silences(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    conversation = await ana.start_conversation("ben")
    await ana.send(conversation["id"], "hi")
    declined = await ben.decline(conversation["id"])
    assert declined["folder"] is None
    assert (await ben.conversations(folder="requests"))["items"] == []
    await refused(ana.send(conversation["id"], "hello?"), 403, "cannot_message")
    await ben.send(conversation["id"], "actually, hi")  # writing to them ends the decline
    await ana.send(conversation["id"], "great")
    assert (await ben.conversation(conversation["id"]))["folder"] == "inbox"


async def test_every_refusal_looks_the_same(signup) -> None:
    """Blocked, declined, dm_policy nobody and dm_policy following give one identical answer."""
    sender = await signup("sender")
    answers = []
    for handle, setup in [("blocker", "block"), ("decliner", "decline"),
                          ("closed", "nobody"), ("picky", "following")]:
        target = await signup(handle)
        conversation = await sender.start_conversation(handle)
        if setup == "block":
            await target.block("sender")
        elif setup == "decline":
            await sender.send(conversation["id"], "hi")
            await target.decline(conversation["id"])
        else:
            await target.update_me(dm_policy=setup)
        response = await sender.http.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"client_id": f"try-{handle}", "text": "hello"},
            headers={"Authorization": f"Bearer {sender.token}"})
        answers.append((response.status_code, response.json()))
    assert answers[0][0] == 403
    assert all(answer == answers[0] for answer in answers)
    assert answers[0][1]["error"]["code"] == "cannot_message"


async def test_policy_following_admits_those_i_follow(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    await ben.update_me(dm_policy="following")
    await refused(ana.start_conversation("ben"), 403, "cannot_message")
    await ben.follow("ana")
    conversation = await ana.start_conversation("ben")
    await ana.send(conversation["id"], "hi")
    assert (await ben.conversation(conversation["id"]))["folder"] == "inbox"


async def test_blocking_a_requester_removes_the_request(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    conversation = await ana.start_conversation("ben")
    await ana.send(conversation["id"], "hi")
    await ben.block("ana")
    assert (await ben.conversations(folder="requests"))["items"] == []
    await refused(ana.send(conversation["id"], "hi again"), 403, "cannot_message")
    await refused(ben.send(conversation["id"], "you are blocked"), 403, "you_blocked")


async def test_flags_folders_and_order(signup) -> None:
    ana = await signup("ana")
    ids = {}
    for handle in ("ben", "cai", "dee"):
        friend = await signup(handle)
        await friend.follow("ana")
        conversation = await ana.start_conversation(handle)
        await ana.send(conversation["id"], f"hi {handle}")
        ids[handle] = conversation["id"]
    listed = [c["with"]["handle"] for c in (await ana.conversations())["items"]]
    assert listed == ["dee", "cai", "ben"]  # most recent first
    pinned = await ana.update_conversation(ids["ben"], pinned=True, muted=True)
    assert pinned["pinned"] and pinned["muted"]
    listed = [c["with"]["handle"] for c in (await ana.conversations())["items"]]
    assert listed == ["ben", "dee", "cai"]  # pinned first
    await ana.update_conversation(ids["cai"], archived=True)
    assert [c["with"]["handle"] for c in (await ana.conversations(folder="archived"))["items"]] \
        == ["cai"]
    page = await ana.conversations(limit=1)
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = await ana.conversations(limit=1, cursor=page["next_cursor"])
    assert rest["items"][0]["with"]["handle"] == "dee"
    assert rest["next_cursor"] is None
    await refused(ana.update_conversation(ids["ben"], colour=True), 422, "invalid_request")


async def test_read_receipts_and_unread_counts(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    await ben.follow("ana")
    conversation = await ana.start_conversation("ben")
    first = await ana.send(conversation["id"], "one")
    second = await ana.send(conversation["id"], "two")
    assert (await ben.unread())["ben"]["inbox"] == 1
    assert (await ben.conversation(conversation["id"]))["unread_count"] == 2
    view = await ben.mark_read(conversation["id"], first["id"])
    assert view["unread_count"] == 1
    assert (await ana.conversation(conversation["id"]))["peer_last_read_message_id"] \
        == first["id"]
    await ben.mark_read(conversation["id"], second["id"])
    await ben.mark_read(conversation["id"], first["id"])  # never goes backwards
    assert (await ana.conversation(conversation["id"]))["peer_last_read_message_id"] \
        == second["id"]
    assert (await ben.unread())["ben"]["inbox"] == 0


async def test_report_is_stored(signup, app) -> None:
    from directo.conversations.service import moderation_reports

    ana, ben = await signup("ana"), await signup("ben")
    conversation = await ana.start_conversation("ben")
    message = await ana.send(conversation["id"], "buy cheap followers")
    report = await ben.report(conversation["id"], "spam", message["id"])
    assert report["id"]
    found = moderation_reports(app)
    assert [(r["reason"], r["message_text"]) for r in found] == [("spam",
                                                                  "buy cheap followers")]
    await refused(ben.report(conversation["id"], "   "), 422, "invalid_reason")


async def test_reading_a_request_is_private_until_accepted(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    conversation = await ana.start_conversation("ben")
    message = await ana.send(conversation["id"], "hi, a stranger here")
    cursor = (await ana.poll(timeout=0))["cursor"]
    await ben.mark_read(conversation["id"], message["id"])
    assert (await ana.conversation(conversation["id"]))["peer_last_read_message_id"] is None
    assert (await ana.poll(after=cursor, timeout=0))["events"] == []
    await ben.accept(conversation["id"])
    assert (await ana.conversation(conversation["id"]))["peer_last_read_message_id"] \
        == message["id"]


async def test_declining_twice_tells_nobody_twice(signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    conversation = await ana.start_conversation("ben")
    await ana.send(conversation["id"], "hi")
    await ben.decline(conversation["id"])
    cursor = (await ben.poll(timeout=0))["cursor"]
    again = await ben.decline(conversation["id"])
    assert again["folder"] is None
    assert (await ben.poll(after=cursor, timeout=0))["events"] == []


async def test_paging_walks_every_conversation_once_in_order(signup, app) -> None:
    """Pinned first, newest first, ties broken by id: page by page, nothing lost or repeated,
    across the pinned/unpinned boundary and through identical activity times."""
    from sqlalchemy import update

    from directo.conversations.store import participants

    ana = await signup("ana")
    ids = []
    for n in range(7):
        friend = await signup(f"friend{n}")
        await friend.follow("ana")
        conversation = await ana.start_conversation(f"friend{n}")
        await ana.send(conversation["id"], f"hi {n}")
        ids.append(conversation["id"])
    for conversation_id in ids[1], ids[4]:
        await ana.update_conversation(conversation_id, pinned=True)

    def same_time(tx) -> None:  # three conversations with one identical activity time
        tx.conn.execute(update(participants).where(participants.c.conversation_id.in_(ids[2:5]))
                        .values(sort_at="2026-01-01T00:00:00.000000Z"))

    await app.db.write(same_time)
    everything = [c["id"] for c in (await ana.conversations(limit=100))["items"]]
    assert sorted(everything) == sorted(ids)
    assert set(everything[:2]) == {ids[1], ids[4]}
    walked, cursor = [], None
    while True:
        page = await ana.conversations(limit=2, cursor=cursor)
        walked += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == everything
