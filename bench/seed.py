"""Bulk seeding straight into a benchmark's database, before its server starts, through
SQLAlchemy Core with the project's own tables: accounts with sessions (so no login or
password hashing is needed), accepted conversations, encrypted messages and their events.

Rows are what the service itself would have written (sealed text, sort keys, stream
sequence numbers), only inserted thousands at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import Connection, create_engine, insert, update

from directo.accounts.service import token_hash
from directo.accounts.store import accounts, sessions
from directo.conversations.store import conversations, messages, pair_key, participants
from directo.core.crypto import Keyring
from directo.core.ids import new_id, new_token
from directo.core.timeutil import to_text, utcnow
from directo.events.store import account_streams, events

CHUNK = 20_000
TEXT = "seeded message text of about one hundred bytes, " * 2
PASSWORD_HASH = PasswordHasher(memory_cost=1024, time_cost=1).hash("bench password 1")


@dataclass(slots=True)
class SeededConversation:
    id: str
    a_id: str
    b_id: str
    key_id: str
    wrapped_key: bytes
    last_seq: int = 0


class Seeder:
    """One seeding session on one database. Times start an hour ago and move forward by a
    microsecond per row, so sort keys are distinct and nothing is old enough to be pruned."""

    def __init__(self, database_url: str, keyring: Keyring) -> None:
        self.engine = create_engine(database_url)
        self.keyring = keyring
        self._clock = utcnow() - timedelta(hours=1)
        self._stream_seq: dict[str, int] = {}

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A transaction for the whole seeding; on SQLite without fsyncs (only the seeding
        is unsafe on power loss, never the server that runs afterwards). Afterwards the
        planner's statistics are brought up to date, as they would be in a database that
        grew to this size over time (PostgreSQL's autovacuum analyses a table a while after
        bulk changes, and a measurement must not depend on whether it has yet)."""
        sqlite = self.engine.dialect.name == "sqlite"
        with self.engine.begin() as conn:
            if sqlite:
                conn.exec_driver_sql("PRAGMA synchronous=OFF")
            yield conn
            self._close_streams(conn)
        with self.engine.connect() as conn:
            if sqlite:  # fold the seeding's WAL into the file now, not during a measurement
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            else:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
        self.engine.dispose()

    def _now(self) -> str:
        self._clock += timedelta(microseconds=1)
        return to_text(self._clock)

    def accounts(self, conn: Connection, handles: list[str], kind: str = "person") -> list[str]:
        ids = []
        for start in range(0, len(handles), CHUNK):
            rows = []
            for handle in handles[start:start + CHUNK]:
                ids.append(new_id("acc"))
                rows.append({"id": ids[-1], "handle": handle, "display_name": handle.title(),
                             "kind": kind, "password_hash": PASSWORD_HASH,
                             "dm_policy": "everyone", "created_at": self._now()})
            conn.execute(insert(accounts), rows)
            conn.execute(insert(account_streams), [
                {"account_id": row["id"], "last_seq": 0, "pruned_seq": 0} for row in rows])
        return ids

    def sessions(self, conn: Connection, account_ids: list[str]) -> dict[str, str]:
        """A bearer token for each account."""
        tokens = {account_id: new_token() for account_id in account_ids}
        conn.execute(insert(sessions), [
            {"token_hash": token_hash(token), "account_id": account_id, "created_at": self._now()}
            for account_id, token in tokens.items()])
        return tokens

    def conversations(self, conn: Connection, pairs: list[tuple[str, str]],
                      with_message: bool = False) -> list[SeededConversation]:
        """Accepted conversations between ``(a, b)`` pairs; with ``with_message`` each holds
        one message from ``a``, unread by ``b`` (no events: nobody was online)."""
        made = []
        for start in range(0, len(pairs), CHUNK):
            chunk = [self._conversation(a, b) for a, b in pairs[start:start + CHUNK]]
            made += chunk
            rows: dict[str, list[dict[str, Any]]] = {"conversations": [], "participants": [],
                                                     "messages": []}
            for conversation in chunk:
                last_id, at = None, None
                if with_message:
                    conversation.last_seq = 1
                    message = self._message_row(conversation, conversation.a_id, 1)
                    last_id, at = message["id"], message["created_at"]
                    rows["messages"].append(message)
                rows["conversations"].append({
                    "id": conversation.id, "pair_key": pair_key(conversation.a_id,
                                                                conversation.b_id),
                    "a_id": conversation.a_id, "b_id": conversation.b_id,
                    "key_id": conversation.key_id, "wrapped_key": conversation.wrapped_key,
                    "last_seq": conversation.last_seq, "created_at": self._now()})
                for me, peer, unread in ((conversation.a_id, conversation.b_id, 0),
                                         (conversation.b_id, conversation.a_id, int(with_message))):
                    rows["participants"].append({
                        "conversation_id": conversation.id, "account_id": me, "peer_id": peer,
                        "state": "accepted", "archived": False, "muted": False, "pinned": False,
                        "last_read_seq": conversation.last_seq - unread,
                        "last_read_message_id": None, "unread": unread,
                        "sent_while_pending": 0, "last_message_id": last_id,
                        "sort_at": at or self._now()})
            conn.execute(insert(conversations), rows["conversations"])
            conn.execute(insert(participants), rows["participants"])
            if rows["messages"]:
                conn.execute(insert(messages), rows["messages"])
        return made

    def messages(self, conn: Connection, seeded: list[SeededConversation], count: int) -> None:
        """``count`` messages spread round-robin over the conversations, alternating senders,
        each with its ``message.created`` event on both participants' streams."""
        last: dict[str, dict[str, Any]] = {}
        for start in range(0, count, CHUNK):
            message_rows, event_rows = [], []
            for number in range(start, min(count, start + CHUNK)):
                conversation = seeded[number % len(seeded)]
                conversation.last_seq += 1
                sender = conversation.a_id if conversation.last_seq % 2 else conversation.b_id
                message = self._message_row(conversation, sender, conversation.last_seq)
                message_rows.append(message)
                last[conversation.id] = message
                for side in (conversation.a_id, conversation.b_id):
                    event_rows.append(self._event_row(side, message, notify=side != sender))
            conn.execute(insert(messages), message_rows)
            conn.execute(insert(events), event_rows)
        for conversation in seeded:
            if conversation.id not in last:
                continue
            message = last[conversation.id]
            conn.execute(update(conversations).where(conversations.c.id == conversation.id)
                         .values(last_seq=conversation.last_seq))
            conn.execute(update(participants)
                         .where(participants.c.conversation_id == conversation.id)
                         .values(last_message_id=message["id"], sort_at=message["created_at"],
                                 last_read_seq=conversation.last_seq, unread=0))

    def _conversation(self, a_id: str, b_id: str) -> SeededConversation:
        key_id, wrapped = self.keyring.new_data_key()
        return SeededConversation(new_id("cnv"), a_id, b_id, key_id, wrapped)

    def _message_row(self, conversation: SeededConversation, sender: str,
                     seq: int) -> dict[str, Any]:
        message_id = new_id("msg")
        body = self.keyring.seal(conversation.key_id, conversation.wrapped_key, TEXT, message_id)
        return {"id": message_id, "conversation_id": conversation.id, "seq": seq,
                "sender_id": sender, "author_id": sender, "client_id": message_id,
                "reply_to_id": None, "body": body, "created_at": self._now(),
                "edited_at": None, "deleted_at": None}

    def _event_row(self, account_id: str, message: dict[str, Any],
                   notify: bool) -> dict[str, Any]:
        seq = self._stream_seq.get(account_id, 0) + 1
        self._stream_seq[account_id] = seq
        data = {"conversation_id": message["conversation_id"], "message_id": message["id"],
                "as": account_id, "notify": notify}
        return {"account_id": account_id, "seq": seq, "type": "message.created",
                "data": json.dumps(data, separators=(",", ":")),
                "created_at": message["created_at"]}

    def _close_streams(self, conn: Connection) -> None:
        for account_id, seq in self._stream_seq.items():
            conn.execute(update(account_streams)
                         .where(account_streams.c.account_id == account_id)
                         .values(last_seq=seq))


@dataclass
class Pairs:
    """Accounts paired one to one in accepted conversations, with their bearer tokens."""

    senders: list[str]
    receivers: list[str]
    tokens: dict[str, str]
    conversations: list[SeededConversation]


def seed_pairs(seeder: Seeder, conn: Connection, count: int, prefix: str = "p") -> Pairs:
    senders = seeder.accounts(conn, [f"{prefix}s{n}" for n in range(count)])
    receivers = seeder.accounts(conn, [f"{prefix}r{n}" for n in range(count)])
    tokens = seeder.sessions(conn, senders + receivers)
    seeded = seeder.conversations(conn, list(zip(senders, receivers, strict=True)))
    return Pairs(senders, receivers, tokens, seeded)
