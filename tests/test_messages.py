"""Messages through the API: sending and its retries, text rules, replies, edits, unsending,
reactions and paging."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from directo.app import App
from directo.conversations import store
from directo.conversations.rules import TEXT_MAX
from directo.core.db import Tx
from directo.core.timeutil import to_text, utcnow
from tests.helpers import database_snapshot, drain, friends, refused


def _age_message(app: App, message_id: str, seconds: int) -> None:
    """Pretend a message was sent ``seconds`` ago."""
    def tx(tx: Tx) -> None:
        store.update_message(tx.conn, message_id,
                             created_at=to_text(utcnow() - timedelta(seconds=seconds)))

    app.db.write_sync(tx)


async def test_send_then_retry_returns_the_original_and_stores_nothing(signup) -> None:
    ana, ben, conversation = await friends(signup)
    await ben.poll(timeout=0)
    body = {"client_id": "phone-1", "text": "hola"}
    first = await ana.request("POST", f"/conversations/{conversation}/messages", body)
    assert first.status_code == 201
    sent = first.json()
    assert (sent["text"], sent["client_id"], sent["sender"]["handle"]) == ("hola", "phone-1", "ana")
    await ana.send(conversation, "something in between")
    retry = await ana.request("POST", f"/conversations/{conversation}/messages",
                              {"client_id": "phone-1", "text": "hola, edited in the retry"})
    assert retry.status_code == 200
    assert retry.json() == sent
    texts = [m["text"] for m in (await ana.messages(conversation))["items"]]
    assert texts == ["hola", "something in between"]
    created = [e["data"]["message_id"] for e in await drain(ben)
               if e["type"] == "message.created"]
    assert created.count(sent["id"]) == 1 and len(created) == 2
    seen_by_ben = (await ben.messages(conversation))["items"][0]
    assert seen_by_ben["client_id"] is None  # the sender's own handle on a message stays theirs


async def test_a_retry_gets_its_message_even_when_the_rules_would_now_refuse_it(signup) -> None:
    """The answer to a send was lost; by the time the client tries again, the message it
    stored has used up the request's allowance, or the recipient has blocked the sender."""
    ana, ben = await signup("ana"), await signup("ben")
    conversation = (await ana.start_conversation("ben"))["id"]
    sent = [await ana.send(conversation, f"hello {n}", client_id=f"c{n}") for n in range(3)]
    await refused(ana.send(conversation, "one more"), 403, "request_pending")
    path = f"/conversations/{conversation}/messages"
    retry = await ana.request("POST", path, {"client_id": "c2", "text": "hello 2"})
    assert (retry.status_code, retry.json()) == (200, sent[2])
    await ben.block("ana")
    await refused(ana.send(conversation, "are you there?"), 403, "cannot_message")
    retry = await ana.request("POST", path, {"client_id": "c1", "text": "hello 1"})
    assert (retry.status_code, retry.json()) == (200, sent[1])
    assert [m["text"] for m in (await ana.messages(conversation))["items"]] == [
        "hello 0", "hello 1", "hello 2"]


async def test_client_id_reused_in_another_conversation_conflicts(signup) -> None:
    ana, _ben, conversation = await friends(signup)
    await signup("cai")
    other = await ana.start_conversation("cai")
    await ana.send(conversation, "first", client_id="same-id")
    await refused(ana.send(other["id"], "second", client_id="same-id"), 409, "client_id_reused")
    assert (await ana.messages(other["id"]))["items"] == []


async def test_text_is_normalised(signup) -> None:
    ana, ben, conversation = await friends(signup)
    cases = {
        "cafe\u0301": "caf\u00e9",  # NFC
        "a\x00b\x07c\x1bd\x7f": "abcd",  # control characters dropped
        "one\r\ntwo\rthree\n\tfour": "one\ntwo\nthree\n\tfour",  # CRLF and CR become LF
    }
    for raw, expected in cases.items():
        assert (await ana.send(conversation, raw))["text"] == expected
    assert [m["text"] for m in (await ben.messages(conversation))["items"]] \
        == list(cases.values())


async def test_empty_and_oversized_texts_are_refused_and_store_nothing(signup, app) -> None:
    ana, _ben, conversation = await friends(signup)
    before = database_snapshot(app)
    for blank in ("", "   ", "\n\t \r\n", "\x00\x01\x02"):
        await refused(ana.send(conversation, blank), 422, "empty_message")
    await refused(ana.send(conversation, "x" * (TEXT_MAX + 1)), 413, "message_too_long")
    assert database_snapshot(app) == before
    longest = await ana.send(conversation, "x" * TEXT_MAX)
    assert len(longest["text"]) == TEXT_MAX
    # the limit counts characters after NFC: 10,001 code points that compose to 10,000 pass
    composed = await ana.send(conversation, "e\u0301" + "x" * (TEXT_MAX - 1))
    assert len(composed["text"]) == TEXT_MAX
    emoji_text = await ana.send(conversation, "🙂" * TEXT_MAX)
    assert emoji_text["text"] == "🙂" * TEXT_MAX


async def test_reply_shows_the_quote_and_must_stay_in_the_conversation(signup) -> None:
    ana, ben, conversation = await friends(signup)
    question = await ana.send(conversation, "lunch tomorrow?")
    answer = await ben.send(conversation, "yes!", reply_to=question["id"])
    quote = answer["reply_to"]
    assert (quote["id"], quote["text"], quote["sender"]["handle"], quote["deleted"]) \
        == (question["id"], "lunch tomorrow?", "ana", False)
    assert (await ana.messages(conversation))["items"][-1]["reply_to"]["id"] == question["id"]
    await signup("cai")
    elsewhere = await ana.start_conversation("cai")
    foreign = await ana.send(elsewhere["id"], "a message of another conversation")
    await refused(ben.send(conversation, "sneaky", reply_to=foreign["id"]), 422,
                  "invalid_reply_to")
    await refused(ben.send(conversation, "typo", reply_to="msg_doesnotexist"), 422,
                  "invalid_reply_to")
    assert len((await ana.messages(conversation))["items"]) == 2


async def test_edit_inside_the_window_and_refused_after_it(signup, app) -> None:
    ana, ben, conversation = await friends(signup)
    message = await ana.send(conversation, "see you at 5")
    _age_message(app, message["id"], 14 * 60)
    edited = await ana.edit(message["id"], "see you at 6")
    assert edited["text"] == "see you at 6" and edited["edited_at"] is not None
    assert (await ben.messages(conversation))["items"][0]["text"] == "see you at 6"
    _age_message(app, message["id"], 16 * 60)
    await refused(ana.edit(message["id"], "see you at 7"), 403, "edit_window_closed")
    assert (await ben.messages(conversation))["items"][0]["text"] == "see you at 6"


async def test_edit_window_is_configurable(signup, app) -> None:
    app.settings.edit_window_seconds = 60
    ana, _ben, conversation = await friends(signup)
    message = await ana.send(conversation, "typo")
    _age_message(app, message["id"], 90)
    await refused(ana.edit(message["id"], "fixed"), 403, "edit_window_closed")


async def test_only_the_author_edits_or_unsends(signup) -> None:
    ana, ben, conversation = await friends(signup)
    message = await ana.send(conversation, "mine")
    await refused(ben.edit(message["id"], "yours now"), 403, "not_your_message")
    await refused(ben.unsend(message["id"]), 403, "not_your_message")
    assert (await ana.messages(conversation))["items"][0]["text"] == "mine"
    await refused(ana.edit(message["id"], "   "), 422, "empty_message")
    assert (await ana.messages(conversation))["items"][0]["edited_at"] is None


async def test_unsend_leaves_a_tombstone_for_both_sides(signup, app) -> None:
    ana, ben, conversation = await friends(signup)
    secret = await ana.send(conversation, "my address is 1 Secret Lane")
    await ben.react(secret["id"], "❤️")
    reply = await ben.send(conversation, "noted", reply_to=secret["id"])
    await ana.unsend(secret["id"])
    await ana.unsend(secret["id"])  # again: already gone, still fine
    for side in (ana, ben):
        tombstone, answer = (await side.messages(conversation))["items"]
        assert tombstone["id"] == secret["id"]
        assert tombstone["text"] is None and tombstone["deleted_at"] is not None
        assert tombstone["reactions"] == []
        assert answer["id"] == reply["id"]
        assert answer["reply_to"]["deleted"] is True and answer["reply_to"]["text"] is None
    stored = app.db.read_sync(store.message_by_id, secret["id"])
    assert stored.body is None
    await refused(ana.edit(secret["id"], "again"), 409, "message_deleted")
    await refused(ben.react(secret["id"], "👍"), 409, "message_deleted")


async def test_unsending_an_unread_message_lowers_the_unread_count(signup) -> None:
    ana, ben, conversation = await friends(signup)
    await ana.send(conversation, "one")
    oops = await ana.send(conversation, "wrong chat")
    assert (await ben.conversation(conversation))["unread_count"] == 2
    await ana.unsend(oops["id"])
    assert (await ben.conversation(conversation))["unread_count"] == 1


async def test_reactions_one_of_each_emoji_per_account(signup) -> None:
    ana, ben, conversation = await friends(signup)
    message = await ana.send(conversation, "we won!")
    await ana.react(message["id"], "🎉")
    await ana.react(message["id"], "🎉")  # adding twice keeps one
    await ben.react(message["id"], "🎉")
    await ben.react(message["id"], "👍")
    shown = (await ana.messages(conversation))["items"][0]["reactions"]
    assert {r["emoji"]: sorted(r["by"]) for r in shown} == {"🎉": ["ana", "ben"], "👍": ["ben"]}
    await ben.unreact(message["id"], "🎉")
    await ben.unreact(message["id"], "🎉")  # removing twice is fine
    await ben.unreact(message["id"], "😀")  # never added: fine too
    shown = (await ben.messages(conversation))["items"][0]["reactions"]
    assert {r["emoji"]: r["by"] for r in shown} == {"🎉": ["ana"], "👍": ["ben"]}
    await ana.react(message["id"], "\u2764")  # a heart without its emoji presentation mark
    await ana.react(message["id"], "\u2764\ufe0f")  # and with it: the same reaction
    hearts = [r for r in (await ben.messages(conversation))["items"][0]["reactions"]
              if r["emoji"].startswith("\u2764")]
    assert hearts == [{"emoji": "\u2764\ufe0f", "by": ["ana"]}]
    await ana.unreact(message["id"], "\u2764")
    for not_one_emoji in ("a", "lol", "🎉🎉", ":tada:"):
        await refused(ben.react(message["id"], not_one_emoji), 422, "invalid_emoji")
    shown = (await ben.messages(conversation))["items"][0]["reactions"]
    assert {r["emoji"]: r["by"] for r in shown} == {"🎉": ["ana"], "👍": ["ben"]}


async def test_paging_before_and_after(signup) -> None:
    ana, ben, conversation = await friends(signup)
    sent = [(await ana.send(conversation, f"m{n}"))["id"] for n in range(7)]
    latest = await ben.messages(conversation, limit=3)
    assert [m["id"] for m in latest["items"]] == sent[4:] and latest["has_more"] is True
    older = await ben.messages(conversation, before=sent[4], limit=3)
    assert [m["id"] for m in older["items"]] == sent[1:4] and older["has_more"] is True
    oldest = await ben.messages(conversation, before=sent[1], limit=3)
    assert [m["id"] for m in oldest["items"]] == sent[:1] and oldest["has_more"] is False
    newer = await ben.messages(conversation, after=sent[0], limit=4)
    assert [m["id"] for m in newer["items"]] == sent[1:5] and newer["has_more"] is True
    newest = await ben.messages(conversation, after=sent[4], limit=4)
    assert [m["id"] for m in newest["items"]] == sent[5:] and newest["has_more"] is False
    everything = await ben.messages(conversation)
    assert [m["id"] for m in everything["items"]] == sent and everything["has_more"] is False
    await refused(ben.messages(conversation, before=sent[3], after=sent[1]), 422,
                  "invalid_request")
    await signup("cai")
    elsewhere = await ana.start_conversation("cai")
    foreign = await ana.send(elsewhere["id"], "elsewhere")
    await refused(ben.messages(conversation, before=foreign["id"]), 422, "invalid_anchor")


async def test_concurrent_sends_keep_one_order_for_everyone(signup) -> None:
    """Many sends at once from both sides: each stored once, and the message list and both
    event streams show them in one and the same order."""
    ana, ben, conversation = await friends(signup)
    await ana.poll(timeout=0)
    await ben.poll(timeout=0)
    count = 20
    results = await asyncio.gather(
        *(side.send(conversation, f"{name}{n}", client_id=f"{name}-{n}")
          for n in range(count) for side, name in ((ana, "a"), (ben, "b"))))
    listed = (await ana.messages(conversation, limit=200))["items"]
    order = [m["id"] for m in listed]
    assert sorted(order) == sorted(m["id"] for m in results) and len(set(order)) == 2 * count
    assert [m["id"] for m in (await ben.messages(conversation, limit=200))["items"]] == order
    for sdk in (ana, ben):
        streamed = [e["data"]["message_id"] for e in await drain(sdk)
                    if e["type"] == "message.created"]
        assert streamed == order


async def test_simultaneous_retries_store_one_message(signup) -> None:
    """A client that fires the same send several times at once (a flaky network) gets one
    201, the rest are answered with that same message, and one message exists."""
    ana, _ben, conversation = await friends(signup)
    body = {"client_id": "burst-1", "text": "only once"}
    responses = await asyncio.gather(*(
        ana.request("POST", f"/conversations/{conversation}/messages", body) for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert [m["text"] for m in (await ana.messages(conversation))["items"]] == ["only once"]
