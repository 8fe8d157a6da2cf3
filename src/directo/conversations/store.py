"""Tables and queries for conversations, participants, messages, reactions and reports."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Row,
    String,
    Table,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)

from directo.accounts.store import accounts
from directo.core.db import Tx, metadata
from directo.core.prepared import Prepared, PreparedIn

_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,40}")

conversations = Table(
    "conversations", metadata,
    Column("id", String(32), primary_key=True),
    Column("pair_key", String(66), nullable=False, unique=True),
    Column("a_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("b_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("last_seq", Integer, nullable=False),
    Column("created_at", String(32), nullable=False),
)

participants = Table(
    "participants", metadata,
    Column("conversation_id", String(32), ForeignKey("conversations.id", ondelete="CASCADE"),
           primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("peer_id", String(32), nullable=False),
    Column("state", String(10), nullable=False),
    Column("archived", Boolean, nullable=False),
    Column("muted", Boolean, nullable=False),
    Column("pinned", Boolean, nullable=False),
    Column("last_read_seq", Integer, nullable=False),
    Column("last_read_message_id", String(32), nullable=True),
    Column("unread", Integer, nullable=False),
    Column("sent_while_pending", Integer, nullable=False),
    Column("last_message_id", String(32), nullable=True),
    Column("sort_at", String(32), nullable=True),
    # one index range per page of a folder, however deep the cursor (see list_participations)
    Index("ix_participants_folder", "account_id", "state", "archived", "pinned", "sort_at",
          "conversation_id"),
)

messages = Table(
    "messages", metadata,
    Column("id", String(32), primary_key=True),
    Column("conversation_id", String(32), ForeignKey("conversations.id", ondelete="CASCADE"),
           nullable=False),
    Column("seq", Integer, nullable=False),
    Column("sender_id", String(32), nullable=False),
    Column("author_id", String(32), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("reply_to_id", String(32), nullable=True),
    Column("body", LargeBinary, nullable=True),
    Column("created_at", String(32), nullable=False),
    Column("edited_at", String(32), nullable=True),
    Column("deleted_at", String(32), nullable=True),
    UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
    UniqueConstraint("author_id", "client_id", name="uq_messages_author_client"),
)

reactions = Table(
    "reactions", metadata,
    Column("message_id", String(32), ForeignKey("messages.id", ondelete="CASCADE"),
           primary_key=True),
    Column("account_id", String(32), primary_key=True),
    Column("emoji", String(64), primary_key=True),
    Column("author_id", String(32), nullable=False),
    Column("created_at", String(32), nullable=False),
)

reports = Table(
    "reports", metadata,
    Column("id", String(32), primary_key=True),
    Column("reporter_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"),
           nullable=False),
    Column("conversation_id", String(32), ForeignKey("conversations.id", ondelete="CASCADE"),
           nullable=False),
    Column("message_id", String(32), nullable=True),
    Column("reason", String(1000), nullable=False),
    Column("created_at", String(32), nullable=False),
)


def pair_key(a_id: str, b_id: str) -> str:
    return ":".join(sorted((a_id, b_id)))


def by_pair(conn: Connection, a_id: str, b_id: str) -> Row | None:
    query = select(conversations).where(conversations.c.pair_key == pair_key(a_id, b_id))
    return conn.execute(query).first()


_BY_ID = Prepared(select(conversations).where(conversations.c.id == bindparam("id")))


def is_id(value: str) -> bool:
    """Whether ``value`` is shaped like an id we issue. Anything else is simply not found,
    without asking the database (PostgreSQL refuses text with NUL bytes)."""
    return _ID_SHAPE.fullmatch(value) is not None


def by_id(conn: Connection, conversation_id: str) -> Row | None:
    return _BY_ID.first(conn, id=conversation_id) if is_id(conversation_id) else None


_BY_IDS = PreparedIn(lambda ids: select(conversations).where(conversations.c.id.in_(ids)))
_BOTH_SIDES = PreparedIn(lambda ids: select(participants)
                         .where(participants.c.conversation_id.in_(ids)))


def by_ids(conn: Connection, conversation_ids: Iterable[str]) -> dict[str, Row]:
    return {row.id: row for row in _BY_IDS.all(conn, list(conversation_ids))}


def both_sides(conn: Connection, conversation_ids: Iterable[str]) -> dict[tuple[str, str], Row]:
    """Both participants of each conversation, by (conversation id, account id)."""
    return {(row.conversation_id, row.account_id): row
            for row in _BOTH_SIDES.all(conn, list(conversation_ids))}


def insert_conversation(conn: Connection, conversation_id: str, a_id: str, b_id: str,
                        key_id: str, wrapped_key: bytes, created_at: str) -> None:
    conn.execute(insert(conversations).values(
        id=conversation_id, pair_key=pair_key(a_id, b_id), a_id=a_id, b_id=b_id, key_id=key_id,
        wrapped_key=wrapped_key, last_seq=0, created_at=created_at))
    for me, peer, state in ((a_id, b_id, "accepted"), (b_id, a_id, "none")):
        conn.execute(insert(participants).values(
            conversation_id=conversation_id, account_id=me, peer_id=peer, state=state,
            archived=False, muted=False, pinned=False, last_read_seq=0, unread=0,
            sent_while_pending=0))


_PARTICIPANT = Prepared(select(participants).where(
    participants.c.conversation_id == bindparam("conversation_id"),
    participants.c.account_id == bindparam("account_id")))


_PARTICIPANTS = Prepared(
    select(participants, accounts.c.id, accounts.c.handle, accounts.c.display_name,
           accounts.c.kind, accounts.c.dm_policy)
    .join(accounts, accounts.c.id == participants.c.account_id)
    .where(participants.c.conversation_id == bindparam("conversation_id")))


def participants_of(conn: Connection, conversation_id: str) -> dict[str, Row]:
    """Both sides of a conversation, by account id, in one query; each row also carries its
    account's public fields and ``kind`` and ``dm_policy`` (so it renders as an account)."""
    return {row.account_id: row
            for row in _PARTICIPANTS.all(conn, conversation_id=conversation_id)}


def participant(conn: Connection, conversation_id: str, account_id: str) -> Row | None:
    return _PARTICIPANT.first(
        conn, conversation_id=conversation_id, account_id=account_id)


def update_participant(conn: Connection, conversation_id: str, account_id: str,
                       **values: Any) -> None:
    conn.execute(update(participants).where(
        participants.c.conversation_id == conversation_id,
        participants.c.account_id == account_id).values(**values))


_TAKE_SEQ = Prepared(update(conversations).where(conversations.c.id == bindparam("id"))
                     .values(last_seq=conversations.c.last_seq + 1)
                     .returning(*conversations.c))


def _for_sender(sender: Any, otherwise: Any) -> Any:
    return case((participants.c.account_id == bindparam("sender_id"), sender), else_=otherwise)


# Both sides after a send, in one statement: the sender has read everything up to its own
# message; the recipient has one more unread, in the state the send's rules decided.
_RECORD_MESSAGE = Prepared(update(participants).where(
    participants.c.conversation_id == bindparam("conversation_id")).values(
    state=_for_sender("accepted", bindparam("recipient_state")),
    unread=_for_sender(0, participants.c.unread + 1),
    last_read_seq=_for_sender(bindparam("seq"), participants.c.last_read_seq),
    last_read_message_id=_for_sender(bindparam("message_id"),
                                     participants.c.last_read_message_id),
    sent_while_pending=_for_sender(bindparam("sent_while_pending"),
                                   participants.c.sent_while_pending),
    last_message_id=bindparam("message_id"), sort_at=bindparam("at")))


def record_message(conn: Connection, conversation_id: str, sender_id: str,
                   recipient_state: str, seq: int, message_id: str, at: str,
                   sent_while_pending: int) -> None:
    """Both participants after a message from ``sender_id``."""
    _RECORD_MESSAGE.run(conn, conversation_id=conversation_id, sender_id=sender_id,
                        recipient_state=recipient_state, seq=seq, message_id=message_id,
                        at=at, sent_while_pending=sent_while_pending)


def take_seq(conn: Connection, conversation_id: str) -> Row | None:
    """The conversation, having taken its next sequence number (``last_seq``); on
    PostgreSQL this locks its row, so sequence order is commit order. None if there is no
    such conversation."""
    return _TAKE_SEQ.first(conn, id=conversation_id) if is_id(conversation_id) else None


_MESSAGE = Prepared(select(messages).where(messages.c.id == bindparam("id")))


def message_by_id(conn: Connection, message_id: str) -> Row | None:
    return _MESSAGE.first(conn, id=message_id) if is_id(message_id) else None


_MESSAGES = PreparedIn(lambda ids: select(messages).where(messages.c.id.in_(ids)))


def messages_by_ids(conn: Connection, message_ids: Iterable[str]) -> dict[str, Row]:
    return {row.id: row for row in _MESSAGES.all(conn, list(message_ids))}


_BY_CLIENT_ID = Prepared(select(messages).where(messages.c.author_id == bindparam("author_id"),
                                                messages.c.client_id == bindparam("client_id")))
_INSERT_MESSAGE = Prepared(insert(messages))


def message_by_client_id(conn: Connection, author_id: str, client_id: str) -> Row | None:
    return _BY_CLIENT_ID.first(
        conn, author_id=author_id, client_id=client_id)


def insert_message(tx: Tx, **values: Any) -> Row:
    """Insert a message (``Tx.insert``); the row as stored, without reading it back."""
    tx.insert(_INSERT_MESSAGE, [values])
    return _MESSAGE.row(**values)


def update_message(conn: Connection, message_id: str, **values: Any) -> None:
    conn.execute(update(messages).where(messages.c.id == message_id).values(**values))


def page_of_messages(conn: Connection, conversation_id: str, before_seq: int | None,
                     after_seq: int | None, limit: int) -> tuple[list[Row], bool]:
    """Up to ``limit`` messages, oldest first, and whether more lie beyond the page."""
    query = select(messages).where(messages.c.conversation_id == conversation_id)
    if after_seq is not None:
        query = query.where(messages.c.seq > after_seq).order_by(messages.c.seq)
    else:
        if before_seq is not None:
            query = query.where(messages.c.seq < before_seq)
        query = query.order_by(messages.c.seq.desc())
    rows = list(conn.execute(query.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    if after_seq is None:
        rows.reverse()
    return rows, more


def count_unread(conn: Connection, conversation_id: str, reader_id: str, after_seq: int) -> int:
    query = select(func.count()).select_from(messages).where(
        messages.c.conversation_id == conversation_id, messages.c.seq > after_seq,
        messages.c.sender_id != reader_id, messages.c.deleted_at.is_(None))
    return int(conn.execute(query).scalar_one())


_REACTIONS = PreparedIn(lambda ids: select(reactions).where(reactions.c.message_id.in_(ids))
                       .order_by(reactions.c.created_at))


def reactions_for(conn: Connection, message_ids: Iterable[str]) -> dict[str, list[Row]]:
    """Each message's reactions, oldest first."""
    found: dict[str, list[Row]] = {}
    for row in _REACTIONS.all(conn, list(message_ids)):
        found.setdefault(row.message_id, []).append(row)
    return found


def set_reaction(conn: Connection, message_id: str, account_id: str, emoji: str,
                 author_id: str, created_at: str, present: bool) -> bool:
    where = and_(reactions.c.message_id == message_id, reactions.c.account_id == account_id,
                 reactions.c.emoji == emoji)
    there = conn.execute(select(func.count()).select_from(reactions).where(where)).scalar_one()
    if present and not there:
        conn.execute(insert(reactions).values(message_id=message_id, account_id=account_id,
                                              emoji=emoji, author_id=author_id,
                                              created_at=created_at))
        return True
    if not present and there:
        conn.execute(delete(reactions).where(where))
        return True
    return False


def delete_reactions(conn: Connection, message_id: str) -> None:
    conn.execute(delete(reactions).where(reactions.c.message_id == message_id))


def list_participations(conn: Connection, account_id: str, folder: str, limit: int,
                        after: tuple[bool, str, str] | None) -> list[Row]:
    """A page of an account's conversations: pinned first, then most recent activity.

    Pinned and unpinned conversations are read as two ranges of the folder index, each with a
    row-value keyset condition, so a page deep in a million conversations costs what the
    first page costs (an ``OR`` of conditions made SQLite scan instead)."""
    rows: list[Row] = []
    for pinned in (True, False):
        if after is not None and pinned and not after[0]:
            continue  # the cursor is already past the pinned ones
        position = after[1:] if after is not None and after[0] == pinned else None
        rows += _folder_range(conn, account_id, folder, pinned, position, limit - len(rows))
        if len(rows) == limit:
            break
    return rows


def _folder_range(conn: Connection, account_id: str, folder: str, pinned: bool,
                  position: tuple[str, str] | None, limit: int) -> list[Row]:
    p = participants
    query = select(p).where(p.c.account_id == account_id, p.c.pinned == pinned,
                            p.c.sort_at.is_not(None))
    if folder == "requests":
        query = query.where(p.c.state == "request")
    else:
        query = query.where(p.c.state == "accepted", p.c.archived == (folder == "archived"))
    if position is not None:
        query = query.where(tuple_(p.c.sort_at, p.c.conversation_id) < tuple_(*position))
    query = query.order_by(p.c.sort_at.desc(), p.c.conversation_id.desc())
    return list(conn.execute(query.limit(limit)))


def unread_summary(conn: Connection, account_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per account: how many conversations with unread messages, per folder."""
    p = participants
    query = (select(p.c.account_id, p.c.state, p.c.archived, func.count())
             .where(p.c.account_id.in_(account_ids), p.c.unread > 0, p.c.sort_at.is_not(None))
             .group_by(p.c.account_id, p.c.state, p.c.archived))
    summary = {account_id: {"inbox": 0, "requests": 0, "archived": 0}
               for account_id in account_ids}
    for account_id, state, archived, count in conn.execute(query):
        folder = "requests" if state == "request" else ("archived" if archived else "inbox")
        if state in ("request", "accepted"):
            summary[account_id][folder] += count
    return summary


def insert_report(conn: Connection, **values: Any) -> None:
    conn.execute(insert(reports).values(**values))


def all_reports(conn: Connection) -> list[Row]:
    return list(conn.execute(select(reports).order_by(reports.c.created_at)))


def conversations_of(conn: Connection, account_id: str) -> list[Row]:
    query = select(conversations).where(or_(conversations.c.a_id == account_id,
                                            conversations.c.b_id == account_id))
    return list(conn.execute(query))


def keys_not_under(conn: Connection, key_id: str, limit: int) -> list[Row]:
    query = (select(conversations.c.id, conversations.c.key_id, conversations.c.wrapped_key)
             .where(conversations.c.key_id != key_id, conversations.c.wrapped_key.is_not(None))
             .limit(limit))
    return list(conn.execute(query))


def set_key(conn: Connection, conversation_id: str, key_id: str,
            wrapped_key: bytes | None) -> None:
    conn.execute(update(conversations).where(conversations.c.id == conversation_id)
                 .values(key_id=key_id, wrapped_key=wrapped_key))


def shred(conn: Connection, conversation_id: str) -> None:
    """Crypto-shred a conversation: drop its wrapped data key and every message body."""
    conn.execute(update(conversations).where(conversations.c.id == conversation_id)
                 .values(wrapped_key=None))
    conn.execute(update(messages).where(messages.c.conversation_id == conversation_id)
                 .values(body=None))
