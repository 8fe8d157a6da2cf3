"""Use cases for conversations and messages. Each runs in one transaction and appends the
events it causes to the streams of everyone concerned, in that same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from limits import RateLimitItemPerMinute
from sqlalchemy import Connection, Row

from directo.accounts import store as account_store
from directo.accounts.rules import normalise_handle
from directo.brands import store as brand_store
from directo.brands.service import audience, audience_of
from directo.conversations import rules, store
from directo.conversations.views import Renderer
from directo.core import cursors, metrics, ratelimit
from directo.core.db import Tx
from directo.core.errors import Conflict, Forbidden, Invalid, NotFound, TooMany
from directo.core.ids import new_id
from directo.core.timeutil import from_text, now_text, utcnow
from directo.events import store as event_store

if TYPE_CHECKING:
    from directo.app import App


@dataclass(slots=True)
class Access:
    """A conversation as one actor reaches it: the side they act for, and both participants."""

    conversation: Row
    side: str
    me: Row
    peer: Row


def _access(conn: Connection, actor_id: str, conversation_id: str) -> Access:
    """Participants, and members of a participating brand, reach a conversation; to everyone
    else it does not exist."""
    return _access_to(conn, actor_id, store.by_id(conn, conversation_id))


def _access_to(conn: Connection, actor_id: str, conversation: Row | None) -> Access:
    """``_access`` for a conversation row already read (None: not found)."""
    if conversation is None:
        raise NotFound("conversation")
    pair = (conversation.a_id, conversation.b_id)
    if actor_id in pair:
        side = actor_id
    else:
        brands = set(brand_store.brand_ids_of(conn, actor_id)) & set(pair)
        if not brands:
            raise NotFound("conversation")
        side = brands.pop()
    peer_id = conversation.b_id if side == conversation.a_id else conversation.a_id
    both = store.participants_of(conn, conversation.id)
    return Access(conversation, side, both[side], both[peer_id])


def _acting_side(conn: Connection, actor_id: str, as_handle: str | None) -> Row:
    """The account an actor acts for: themself, or a brand whose team they are in."""
    if as_handle is None:
        row = account_store.by_id(conn, actor_id)
    else:
        try:
            row = account_store.by_handle(conn, normalise_handle(as_handle))
        except Invalid:
            row = None
        if row is not None and row.id != actor_id \
                and brand_store.role_of(conn, row.id, actor_id) is None:
            row = None
    if row is None:
        raise NotFound("brand")
    return row


def _peer_audience(conn: Connection, peer: Row) -> list[str]:
    """Whoever sees the peer's side: nobody while they have nothing, or after they declined."""
    if peer.state in ("none", "declined"):
        return []
    return audience_of(conn, peer)


def _facts(app: App, conn: Connection, side_id: str, peer_account: Row, peer_state: str,
           sent_while_pending: int) -> rules.SendFacts:
    sender_blocked, recipient_blocked, recipient_follows = account_store.relations(
        conn, side_id, peer_account.id)
    return rules.SendFacts(
        recipient_state=peer_state,  # type: ignore[arg-type]
        recipient_blocked_sender=recipient_blocked,
        sender_blocked_recipient=sender_blocked,
        recipient_policy=peer_account.dm_policy,
        recipient_follows_sender=recipient_follows,
        recipient_is_brand=peer_account.kind == "brand",
        sent_while_pending=sent_while_pending,
        request_limit=app.settings.request_message_limit,
    )


def _message_in(conn: Connection, actor_id: str, message_id: str) -> tuple[Row, Access]:
    message = store.message_by_id(conn, message_id)
    if message is None:
        raise NotFound("message")
    try:
        return message, _access(conn, actor_id, message.conversation_id)
    except NotFound:
        raise NotFound("message") from None


def _view(app: App, conn: Connection, side: str, conversation_id: str) -> dict[str, Any]:
    part = store.participant(conn, conversation_id, side)
    assert part is not None
    return Renderer(conn, app.keyring).conversation(part)


def _both(tx: Tx, access: Access, type_: str, data: dict[str, Any]) -> None:
    """Append an event to both sides' streams, each told which side it is about."""
    event_store.append_all(tx, [
        (audience_of(tx.conn, access.me), type_, {**data, "as": access.side}),
        (_peer_audience(tx.conn, access.peer), type_, {**data, "as": access.peer.account_id})])


def _own(tx: Tx, access: Access, type_: str, data: dict[str, Any]) -> None:
    event_store.append(tx, audience_of(tx.conn, access.me), type_, {**data, "as": access.side})


# -- conversations ----------------------------------------------------------------------------

async def start(app: App, actor_id: str, with_handle: str, as_handle: str | None,
                ) -> tuple[dict[str, Any], bool]:
    """Get or create the 1:1 conversation between the acting side and ``with_handle``."""
    def tx(tx: Tx) -> tuple[dict[str, Any], bool]:
        side = _acting_side(tx.conn, actor_id, as_handle)
        try:
            peer = account_store.by_handle(tx.conn, normalise_handle(with_handle))
        except Invalid:
            peer = None
        if peer is None:
            raise NotFound("account")
        if peer.id == side.id:
            raise Invalid("invalid_target", "you cannot message yourself")
        existing = store.by_pair(tx.conn, side.id, peer.id)
        if existing is not None:
            return _view(app, tx.conn, side.id, existing.id), False
        rules.decide_delivery(_facts(app, tx.conn, side.id, peer, "none", 0), sending=False)
        key_id, wrapped = app.keyring.new_data_key()
        conversation_id = new_id("cnv")
        store.insert_conversation(tx.conn, conversation_id, side.id, peer.id, key_id, wrapped,
                                  now_text())
        return _view(app, tx.conn, side.id, conversation_id), True

    return await app.db.write(tx)


async def get(app: App, actor_id: str, conversation_id: str) -> dict[str, Any]:
    def read(conn: Connection) -> dict[str, Any]:
        access = _access(conn, actor_id, conversation_id)
        return Renderer(conn, app.keyring).conversation(access.me)

    return await app.db.read(read)


def _list_position(cursor: str) -> tuple[bool, str, str]:
    """Where a page of conversations resumes: (pinned, sort_at, conversation id)."""
    try:
        pinned, sort_at, conversation_id = cursors.decode("conversations", cursor)
        from_text(sort_at)
        well_formed = isinstance(pinned, bool) and store.is_id(conversation_id)
    except (TypeError, ValueError, AttributeError):
        well_formed = False
    if not well_formed:
        raise cursors.BadCursor()
    return pinned, sort_at, conversation_id


async def list_page(app: App, actor_id: str, as_handle: str | None, folder: str, limit: int,
                    cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    after = _list_position(cursor) if cursor else None

    def read(conn: Connection) -> tuple[list[dict[str, Any]], str | None]:
        side = _acting_side(conn, actor_id, as_handle)
        parts = store.list_participations(conn, side.id, folder, limit + 1, after)
        more = len(parts) > limit
        parts = parts[:limit]
        following = None
        if more:
            last = parts[-1]
            following = cursors.encode("conversations",
                                       [last.pinned, last.sort_at, last.conversation_id])
        return Renderer(conn, app.keyring).conversations(parts), following

    return await app.db.read(read)


async def update_flags(app: App, actor_id: str, conversation_id: str,
                       flags: dict[str, bool]) -> dict[str, Any]:
    def tx(tx: Tx) -> dict[str, Any]:
        access = _access(tx.conn, actor_id, conversation_id)
        if flags:
            store.update_participant(tx.conn, conversation_id, access.side, **flags)
            _own(tx, access, "conversation.updated", {"conversation_id": conversation_id})
        return _view(app, tx.conn, access.side, conversation_id)

    return await app.db.write(tx)


async def accept(app: App, actor_id: str, conversation_id: str) -> dict[str, Any]:
    def tx(tx: Tx) -> dict[str, Any]:
        access = _access(tx.conn, actor_id, conversation_id)
        if access.me.state == "request":
            _accept(tx, access)
        elif access.me.state != "accepted":
            raise Conflict("not_a_request", "there is no request to accept")
        return _view(app, tx.conn, access.side, conversation_id)

    return await app.db.write(tx)


def _accept(tx: Tx, access: Access) -> None:
    store.update_participant(tx.conn, access.conversation.id, access.side, state="accepted")
    store.update_participant(tx.conn, access.conversation.id, access.peer.account_id,
                             sent_while_pending=0)
    _both(tx, access, "conversation.accepted", {"conversation_id": access.conversation.id})


async def decline(app: App, actor_id: str, conversation_id: str) -> dict[str, Any]:
    """The request leaves the decliner's view; the sender is not told, and cannot write again
    until the decliner writes to them."""
    def tx(tx: Tx) -> dict[str, Any]:
        access = _access(tx.conn, actor_id, conversation_id)
        if access.me.state not in ("request", "declined"):
            raise Conflict("not_a_request", "there is no request to decline")
        if access.me.state == "request":  # declining again changes nothing, tells nobody
            store.update_participant(tx.conn, conversation_id, access.side, state="declined")
            _own(tx, access, "conversation.declined", {"conversation_id": conversation_id})
        return _view(app, tx.conn, access.side, conversation_id)

    return await app.db.write(tx)


def on_block(tx: Tx, blocker_id: str, blocked_id: str) -> None:
    """A request from someone I block leaves my view, as if declined."""
    conversation = store.by_pair(tx.conn, blocker_id, blocked_id)
    if conversation is None:
        return
    mine = store.participant(tx.conn, conversation.id, blocker_id)
    if mine is not None and mine.state == "request":
        store.update_participant(tx.conn, conversation.id, blocker_id, state="declined")
        event_store.append(tx, audience(tx.conn, blocker_id), "conversation.declined",
                           {"conversation_id": conversation.id, "as": blocker_id})


def on_erase(tx: Tx, account_id: str) -> list[bytes]:
    """Before an account is erased: destroy the data key and message bodies of each of its
    conversations and tell the peer's side; the destroyed wrapped keys (to drop from the
    key cache)."""
    destroyed = []
    for conversation in store.conversations_of(tx.conn, account_id):
        store.shred(tx.conn, conversation.id)
        if conversation.wrapped_key is not None:
            destroyed.append(conversation.wrapped_key)
        peer_id = conversation.b_id if conversation.a_id == account_id else conversation.a_id
        event_store.append(tx, audience(tx.conn, peer_id), "conversation.removed",
                           {"conversation_id": conversation.id, "as": peer_id})
    return destroyed


async def mark_read(app: App, actor_id: str, conversation_id: str,
                    message_id: str) -> dict[str, Any]:
    def tx(tx: Tx) -> dict[str, Any]:
        access = _access(tx.conn, actor_id, conversation_id)
        message = store.message_by_id(tx.conn, message_id)
        if message is None or message.conversation_id != conversation_id:
            raise NotFound("message")
        if message.seq > access.me.last_read_seq:
            unread = store.count_unread(tx.conn, conversation_id, access.side, message.seq)
            store.update_participant(tx.conn, conversation_id, access.side,
                                     last_read_seq=message.seq,
                                     last_read_message_id=message.id, unread=unread)
            # reading a request is private: the sender learns nothing until it is accepted
            tell = _both if access.me.state == "accepted" else _own
            tell(tx, access, "conversation.read", {"conversation_id": conversation_id,
                                                   "by": access.side, "message_id": message.id})
        return _view(app, tx.conn, access.side, conversation_id)

    return await app.db.write(tx)


async def report(app: App, actor_id: str, conversation_id: str, reason: str,
                 message_id: str | None) -> str:
    reason = rules.normalise_reason(reason)

    def tx(tx: Tx) -> str:
        _access(tx.conn, actor_id, conversation_id)
        if message_id is not None:
            message = store.message_by_id(tx.conn, message_id)
            if message is None or message.conversation_id != conversation_id:
                raise NotFound("message")
        report_id = new_id("rep")
        store.insert_report(tx.conn, id=report_id, reporter_id=actor_id,
                            conversation_id=conversation_id, message_id=message_id,
                            reason=reason, created_at=now_text())
        return report_id

    return await app.db.write(tx)


async def typing(app: App, actor_id: str, conversation_id: str) -> None:
    """Live only, never stored: the peer's connected devices are told, nobody else."""
    def read(conn: Connection) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
        access = _access(conn, actor_id, conversation_id)
        if access.peer.state != "accepted":
            return [], {}, {}
        renderer = Renderer(conn, app.keyring)
        return (audience_of(conn, access.peer), renderer.account(access.side),
                renderer.account(actor_id))

    targets, side, author = await app.db.read(read)
    if targets:
        app.broker.publish_ephemeral(set(targets), {
            "cursor": None, "type": "typing", "at": now_text(),
            "data": {"conversation_id": conversation_id, "by": side,
                     "author": author if author["id"] != side["id"] else None}})


async def unread_counts(app: App, actor_id: str) -> dict[str, dict[str, int]]:
    def read(conn: Connection) -> dict[str, dict[str, int]]:
        sides = [actor_id, *brand_store.brand_ids_of(conn, actor_id)]
        summary = store.unread_summary(conn, sides)
        handles = account_store.by_ids(conn, set(sides))
        return {handles[side].handle: counts for side, counts in summary.items()}

    return await app.db.read(read)


# -- messages ---------------------------------------------------------------------------------

async def send(app: App, actor_id: str, conversation_id: str, client_id: str, text: str,
               reply_to: str | None) -> tuple[dict[str, Any], bool]:
    """Send a message; a repeated ``client_id`` answers with the original (``False``)."""
    text = rules.normalise_text(text)
    try:
        await ratelimit.spend(app.send_limiter,
                              RateLimitItemPerMinute(app.settings.sends_per_minute),
                              ("send", actor_id), "you are sending messages too fast")
    except TooMany:
        # a retry of a stored message is answered whatever the budget says (looked up only
        # here: a lookup on every send cost more than the budget itself)
        if await app.db.lookup(store.message_by_client_id, actor_id, client_id) is None:
            raise

    def tx(tx: Tx) -> tuple[dict[str, Any], bool]:
        conn = tx.conn
        original = store.message_by_client_id(conn, actor_id, client_id)
        # A new message takes the next seq first: on PostgreSQL that locks the row. A retry
        # takes none, so seqs stay contiguous (a racing duplicate fails the unique key and
        # its retried transaction finds the original).
        access = _access_to(conn, actor_id, store.take_seq(conn, conversation_id)
                            if original is None else store.by_id(conn, conversation_id))
        conversation, me, peer = access.conversation, access.me, access.peer
        renderer = Renderer(conn, app.keyring)
        renderer.remember_conversation(conversation)
        renderer.remember_accounts(me, peer)
        if original is not None:
            if original.conversation_id != conversation_id:
                raise Conflict("client_id_reused",
                               "this client_id was used for a message in another conversation")
            return renderer.message(original, access.side), False
        delivery = rules.decide_delivery(_facts(app, conn, access.side, peer, peer.state,
                                                me.sent_while_pending))
        if reply_to is not None:
            quoted = store.message_by_id(conn, reply_to)
            if quoted is None or quoted.conversation_id != conversation_id:
                raise Invalid("invalid_reply_to", "reply_to must be a message of this conversation")
        if me.state in ("request", "declined"):
            _accept(tx, access)  # replying accepts a request (and ends a decline)
        seq, message_id, now = conversation.last_seq, new_id("msg"), now_text()
        message = store.insert_message(
            tx, id=message_id, conversation_id=conversation_id, seq=seq,
            sender_id=access.side, author_id=actor_id, client_id=client_id,
            reply_to_id=reply_to, created_at=now,
            body=app.keyring.seal(conversation.key_id, conversation.wrapped_key, text,
                                  message_id))
        store.record_message(
            conn, conversation_id, access.side,
            "request" if delivery == "request" else "accepted", seq, message_id, now,
            sent_while_pending=me.sent_while_pending + 1 if delivery == "request" else 0)
        data = {"conversation_id": conversation_id, "message_id": message_id}
        peer_audience = audience_of(conn, peer)
        events: list[event_store.Entry] = [
            (audience_of(conn, me), "message.created",
             {**data, "as": access.side, "notify": False})]
        if delivery == "request" and peer.state == "none":
            events.append((peer_audience, "conversation.request",
                           {"conversation_id": conversation_id, "as": peer.account_id}))
        events.append((peer_audience, "message.created",
                       {**data, "as": peer.account_id,
                        "notify": delivery == "inbox" and not peer.muted}))
        event_store.append_all(tx, events)
        renderer.remember_text(message_id, text)
        return renderer.message(message, access.side, fresh=True), True

    result = await app.db.write(tx, batch_inserts=True)
    if result[1]:
        metrics.messages_sent.inc()
    return result


async def list_messages(app: App, actor_id: str, conversation_id: str, before: str | None,
                        after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
    if before is not None and after is not None:
        raise Invalid("invalid_request", "give before or after, not both")

    def read(conn: Connection) -> tuple[list[dict[str, Any]], bool]:
        access = _access(conn, actor_id, conversation_id)
        seqs: dict[str, int | None] = {"before": None, "after": None}
        for name, anchor_id in (("before", before), ("after", after)):
            if anchor_id is not None:
                anchor = store.message_by_id(conn, anchor_id)
                if anchor is None or anchor.conversation_id != conversation_id:
                    raise Invalid("invalid_anchor", f"{name} must be a message of this "
                                  "conversation")
                seqs[name] = anchor.seq
        rows, more = store.page_of_messages(conn, conversation_id, seqs["before"],
                                            seqs["after"], limit)
        renderer = Renderer(conn, app.keyring)
        renderer.remember_conversation(access.conversation)
        return renderer.messages(rows, access.side), more

    return await app.db.read(read)


def _own_message(message: Row, access: Access, actor_id: str) -> None:
    """Its author may change a message, and so may the brand account a member wrote it for."""
    if message.sender_id != access.side or actor_id not in (message.author_id, access.side):
        raise Forbidden("not_your_message", "only its author, or for a brand's message the "
                        "brand's own account, can change a message")


async def edit(app: App, actor_id: str, message_id: str, text: str) -> dict[str, Any]:
    text = rules.normalise_text(text)

    def tx(tx: Tx) -> dict[str, Any]:
        message, access = _message_in(tx.conn, actor_id, message_id)
        _own_message(message, access, actor_id)
        if message.deleted_at is not None:
            raise Conflict("message_deleted", "this message was unsent")
        rules.check_edit_window(from_text(message.created_at), utcnow(),
                                app.settings.edit_window_seconds)
        conversation = access.conversation
        store.update_message(tx.conn, message_id, edited_at=now_text(),
                             body=app.keyring.seal(conversation.key_id,
                                                   conversation.wrapped_key, text, message_id))
        _both(tx, access, "message.edited", {"conversation_id": conversation.id,
                                             "message_id": message_id})
        updated = store.message_by_id(tx.conn, message_id)
        assert updated is not None
        return Renderer(tx.conn, app.keyring).message(updated, access.side)

    return await app.db.write(tx)


async def unsend(app: App, actor_id: str, message_id: str) -> None:
    """Destroy the text for everyone; a tombstone stays in its place."""
    def tx(tx: Tx) -> None:
        message, access = _message_in(tx.conn, actor_id, message_id)
        _own_message(message, access, actor_id)
        if message.deleted_at is not None:
            return
        store.update_message(tx.conn, message_id, body=None, deleted_at=now_text())
        store.delete_reactions(tx.conn, message_id)
        peer = access.peer
        if message.seq > peer.last_read_seq:
            store.update_participant(tx.conn, access.conversation.id, peer.account_id,
                                     unread=store.count_unread(tx.conn, access.conversation.id,
                                                               peer.account_id,
                                                               peer.last_read_seq))
        _both(tx, access, "message.deleted", {"conversation_id": access.conversation.id,
                                              "message_id": message_id})

    await app.db.write(tx)


async def react(app: App, actor_id: str, message_id: str, emoji: str, present: bool) -> None:
    emoji = rules.check_emoji(emoji)

    def tx(tx: Tx) -> None:
        message, access = _message_in(tx.conn, actor_id, message_id)
        if message.deleted_at is not None:
            raise Conflict("message_deleted", "this message was unsent")
        if store.set_reaction(tx.conn, message_id, access.side, emoji, actor_id, now_text(),
                              present):
            _both(tx, access, "reaction.added" if present else "reaction.removed",
                  {"conversation_id": access.conversation.id, "message_id": message_id,
                   "emoji": emoji, "by": access.side})

    await app.db.write(tx)




# -- operations -------------------------------------------------------------------------------

def rewrap_keys(app: App, batch: int = 500) -> int:
    """Re-wrap every conversation data key under the primary master key (``keys rotate``)."""
    def tx(tx: Tx) -> int:
        rows = store.keys_not_under(tx.conn, app.keyring.primary_id, batch)
        for row in rows:
            data_key = app.keyring.unwrap(row.key_id, row.wrapped_key)
            key_id, wrapped = app.keyring.wrap(data_key)
            store.set_key(tx.conn, row.id, key_id, wrapped)
        return len(rows)

    total = 0
    while done := app.db.write_sync(tx):
        total += done
    return total


def moderation_reports(app: App) -> list[dict[str, Any]]:
    """Reports with the reported message's text, for moderators (``directo reports``)."""
    def read(conn: Connection) -> list[dict[str, Any]]:
        renderer = Renderer(conn, app.keyring)
        out = []
        for report in store.all_reports(conn):
            message = store.message_by_id(conn, report.message_id) if report.message_id \
                else None
            out.append({
                "id": report.id, "created_at": report.created_at,
                "reporter": renderer.account(report.reporter_id)["handle"],
                "conversation_id": report.conversation_id, "message_id": report.message_id,
                "reason": report.reason,
                "message_text": renderer.text_of(message) if message is not None else None,
            })
        return out

    return app.db.read_sync(read)
