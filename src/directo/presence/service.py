"""Presence: marked by the event stream, read by the people an account talks with.

The broker holds it (in process by default, Redis across processes); this module decides who
may see it: someone the account has accepted a conversation with (directly, or with a brand
whose team the viewer is in), and neither blocks the other. Anyone else gets 404, as for an
account that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from directo.accounts import store as account_store
from directo.accounts.rules import normalise_handle
from directo.brands import store as brand_store
from directo.conversations import store as conversation_store
from directo.core.errors import Invalid, NotFound
from directo.core.timeutil import to_text

if TYPE_CHECKING:
    from directo.app import App


def stream_opened(app: App, account_id: str) -> None:
    app.broker.stream_opened(account_id)


def stream_closed(app: App, account_id: str) -> None:
    app.broker.stream_closed(account_id)


async def of_handle(app: App, viewer_id: str, handle: str) -> tuple[bool, str | None]:
    """Whether the account behind ``handle`` is online, and when it was last seen."""
    account_id = await app.db.read(_visible_account, viewer_id, handle)
    online, last_seen = await app.broker.presence(account_id)
    if last_seen is None:
        return online, None
    return online, to_text(datetime.fromtimestamp(last_seen, UTC))


def _visible_account(conn: Connection, viewer_id: str, handle: str) -> str:
    try:
        account = account_store.by_handle(conn, normalise_handle(handle))
    except Invalid:
        account = None
    if account is None:
        raise NotFound("account")
    if account.id == viewer_id:
        return viewer_id
    for side in (viewer_id, *brand_store.brand_ids_of(conn, viewer_id)):
        conversation = conversation_store.by_pair(conn, side, account.id)
        if conversation is None or any(account_store.blocked_either_way(conn, side, account.id)):
            continue
        theirs = conversation_store.participant(conn, conversation.id, account.id)
        if theirs is not None and theirs.state == "accepted":
            return str(account.id)
    raise NotFound("account")
