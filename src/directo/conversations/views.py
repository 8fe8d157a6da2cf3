"""What clients see: rows turned into API dicts, text decrypted, in batches per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row

from directo.accounts import store as account_store
from directo.conversations import rules, store
from directo.core.crypto import Keyring, MasterKeyError

SNIPPET = 200


def account_dict(row: Row | ErasedAccount) -> dict[str, Any]:
    return {"id": row.id, "handle": row.handle, "display_name": row.display_name,
            "kind": row.kind}


@dataclass(frozen=True, slots=True)
class ErasedAccount:
    """Stands in for an erased account that old messages and events still name."""

    id: str
    handle: str = "deleted"
    display_name: str = "Deleted account"
    kind: str = "person"


class Renderer:
    """Renders for one viewer side within one connection, caching what it loads."""

    def __init__(self, conn: Connection, keyring: Keyring) -> None:
        self.conn = conn
        self.keyring = keyring
        self._accounts: dict[str, Row | ErasedAccount] = {}
        self._account_views: dict[str, dict[str, Any]] = {}
        self._conversations: dict[str, Row] = {}
        self._texts: dict[str, str] = {}

    # -- loading -------------------------------------------------------------------------------

    def load_accounts(self, ids: set[str]) -> None:
        missing = ids - self._accounts.keys()
        if missing:
            self._accounts.update(account_store.by_ids(self.conn, missing))
            for account_id in missing - self._accounts.keys():  # erased since
                self._accounts[account_id] = ErasedAccount(account_id)

    def remember_accounts(self, *rows: Row) -> None:
        """Accounts already loaded (participant rows carry their account's fields)."""
        for row in rows:
            self._accounts[row.id] = row

    def account(self, account_id: str) -> dict[str, Any]:
        view = self._account_views.get(account_id)
        if view is None:  # an event page names the same few accounts hundreds of times
            self.load_accounts({account_id})
            view = self._account_views[account_id] = account_dict(self._accounts[account_id])
        return view

    def remember_conversation(self, row: Row) -> None:
        self._conversations[row.id] = row

    def _conversation(self, conversation_id: str) -> Row:
        row = self._conversations.get(conversation_id)
        if row is None:
            row = store.by_id(self.conn, conversation_id)
            assert row is not None
            self._conversations[conversation_id] = row
        return row

    def _load_conversations(self, ids: set[str]) -> None:
        missing = ids - self._conversations.keys()
        if missing:
            self._conversations.update(store.by_ids(self.conn, missing))

    def remember_text(self, message_id: str, text: str) -> None:
        """A message's text already in hand (one this transaction has just sealed), so it is
        not decrypted again."""
        self._texts[message_id] = text

    def text_of(self, message: Row) -> str | None:
        if message.body is None:
            return None
        known = self._texts.get(message.id)
        if known is not None:
            return known
        conversation = self._conversation(message.conversation_id)
        if conversation.wrapped_key is None:
            return None  # the keys were destroyed with an erased account
        try:
            return self.keyring.open(conversation.key_id, conversation.wrapped_key,
                                     message.body, message.id)
        except MasterKeyError:
            return None

    # -- messages ------------------------------------------------------------------------------

    def messages(self, rows: list[Row], viewer_side: str,
                 fresh: bool = False) -> list[dict[str, Any]]:
        """``fresh``: rows written by this very transaction, which have no reactions yet."""
        if not rows:
            return []
        reply_ids = {row.reply_to_id for row in rows if row.reply_to_id}
        replies = store.messages_by_ids(self.conn, reply_ids)
        reactions = {} if fresh else store.reactions_for(self.conn, [row.id for row in rows])
        self._load_conversations({row.conversation_id for row in rows})
        self.load_accounts({row.sender_id for row in rows} | {row.author_id for row in rows}
                           | {r.sender_id for r in replies.values()}
                           | {r.account_id for found in reactions.values() for r in found})
        return [self._message(row, viewer_side, replies, reactions.get(row.id, []))
                for row in rows]

    def message(self, row: Row, viewer_side: str, fresh: bool = False) -> dict[str, Any]:
        return self.messages([row], viewer_side, fresh)[0]

    def _message(self, row: Row, viewer_side: str, replies: dict[str, Row],
                 reactions: list[Row]) -> dict[str, Any]:
        sender = self._accounts[row.sender_id]
        author = self._accounts[row.author_id]
        label = sender.display_name
        if author.id != sender.id:
            label = f"{author.display_name} · {sender.display_name}"
        reply = replies.get(row.reply_to_id) if row.reply_to_id else None
        by_emoji: dict[str, list[str]] = {}
        for reaction in reactions:
            by_emoji.setdefault(reaction.emoji, []).append(
                self._accounts[reaction.account_id].handle)
        return {
            "id": row.id,
            "conversation_id": row.conversation_id,
            "client_id": row.client_id if row.sender_id == viewer_side else None,
            "sender": self.account(sender.id),
            "author": self.account(author.id) if author.id != sender.id else None,
            "sender_label": label,
            "text": self.text_of(row),
            "reply_to": None if reply is None else {
                "id": reply.id,
                "sender": self.account(reply.sender_id),
                "text": (self.text_of(reply) or "")[:SNIPPET] or None,
                "deleted": reply.deleted_at is not None,
            },
            "reactions": [{"emoji": e, "by": handles} for e, handles in by_emoji.items()],
            "created_at": row.created_at,
            "edited_at": row.edited_at,
            "deleted_at": row.deleted_at,
        }

    # -- conversations -------------------------------------------------------------------------

    def conversations(self, parts: list[Row]) -> list[dict[str, Any]]:
        if not parts:
            return []
        ids = {p.conversation_id for p in parts}
        self._load_conversations(ids)
        sides = store.both_sides(self.conn, ids)
        peers = {p.conversation_id: sides[(p.conversation_id, p.peer_id)] for p in parts}
        last = store.messages_by_ids(self.conn, {p.last_message_id for p in parts
                                                 if p.last_message_id})
        rendered = {row["id"]: row for row in self.messages(list(last.values()),
                                                             parts[0].account_id)}
        self.load_accounts({p.peer_id for p in parts} | {p.account_id for p in parts})
        out = []
        for p in parts:
            peer = peers[p.conversation_id]
            conversation = self._conversations[p.conversation_id]
            last_message = rendered.get(p.last_message_id) if p.last_message_id else None
            out.append({
                "id": p.conversation_id,
                "with": self.account(p.peer_id),
                "as": self.account(p.account_id),
                "folder": rules.folder_of(p.state, p.archived),
                "state": p.state,
                "archived": p.archived,
                "muted": p.muted,
                "pinned": p.pinned,
                "unread_count": p.unread,
                "last_message": last_message,
                "last_activity_at": p.sort_at,
                # a request read by its recipient shows no receipt until it is accepted
                "peer_last_read_message_id": (peer.last_read_message_id
                                              if peer.state == "accepted" else None),
                "awaiting_acceptance": peer.state != "accepted",
                "created_at": conversation.created_at,
            })
        return out

    def conversation(self, part: Row) -> dict[str, Any]:
        return self.conversations([part])[0]
