"""Reading an account's event stream: catch-up from a cursor, waiting for more, and turning
stored references into what clients see."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, Row

from directo.brands import store as brand_store
from directo.conversations import store as conversation_store
from directo.conversations.views import Renderer
from directo.core import cursors
from directo.core.broker import Subscription
from directo.core.db import Tx
from directo.core.errors import DirectoError, Unauthorized
from directo.core.timeutil import to_text, utcnow
from directo.events import store

if TYPE_CHECKING:
    from directo.app import App

log = logging.getLogger("directo.events")
BATCH = 500
MAX_WAIT_SECONDS = 60
IDLE_RECHECK_SECONDS = 60.0  # a subscriber re-reads its stream at least this often
CATCH_UP_CHUNK = 500  # accounts per catch-up query


class ResyncRequired(DirectoError):
    status = 410

    def __init__(self) -> None:
        super().__init__("resync_required", "the cursor is older than the retention period; "
                         "reload state and continue from a new cursor")


def encode_cursor(seq: int) -> str:
    return cursors.encode("events", seq)


def decode_cursor(text: str) -> int:
    seq = cursors.decode("events", text)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise cursors.BadCursor()
    return seq


def _page(conn: Connection, app: App, account_id: str, after: int | None,
          limit: int) -> tuple[list[dict[str, Any]], int]:
    """Events after ``after`` (None: from now), rendered, and the cursor past them."""
    rows: list[Row] = []
    if after is None:
        stream = store.stream(conn, account_id)
    else:
        stream, rows = store.page_after(conn, account_id, after, limit)
    if stream is None:  # erased while a client was still connected
        raise Unauthorized("this account no longer exists")
    if after is None:
        return [], stream.last_seq
    if after > stream.last_seq:
        raise cursors.BadCursor()
    if after < stream.pruned_seq:
        raise ResyncRequired()
    return render(conn, app, rows, account_id), (rows[-1].seq if rows else after)


async def page(app: App, account_id: str, after: int | None,
               limit: int = BATCH) -> tuple[list[dict[str, Any]], int]:
    return await app.db.read(_page, app, account_id, after, limit)


async def long_poll(app: App, account_id: str, after: str | None,
                    timeout: float) -> tuple[list[dict[str, Any]], int]:
    """Answer as soon as there is anything after the cursor, or after ``timeout``."""
    seq = decode_cursor(after) if after is not None else None
    sub = app.broker.subscribe([account_id])
    try:
        deadline = time.monotonic() + min(timeout, MAX_WAIT_SECONDS)
        while True:
            _, ephemeral = sub.take()
            events, seq = await page(app, account_id, seq)
            sub.position = seq
            if events or ephemeral:
                return [*events, *ephemeral], seq
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return [], seq
            await sub.wait(min(remaining, IDLE_RECHECK_SECONDS))
    finally:
        sub.close()


async def catch_up_forever(app: App) -> None:
    """Where wake-ups can be lost (Redis pub/sub), find the subscribers that missed one,
    every ``catch_up_seconds``, with one query for all of this process's streams."""
    while await app.rest(app.settings.catch_up_seconds):
        try:
            await catch_up_once(app)
        except Exception as error:  # try again next round; live wake-ups go on meanwhile
            log.warning("stream catch-up failed: %s", type(error).__name__)


async def catch_up_once(app: App) -> None:
    watched = app.broker.positions()
    accounts = list(watched)
    for start in range(0, len(accounts), CATCH_UP_CHUNK):
        chunk = accounts[start:start + CATCH_UP_CHUNK]
        latest = await app.db.read(store.last_seqs, chunk)
        app.broker.deliver_wake([account_id for account_id in chunk
                                 if latest.get(account_id, -1) > watched[account_id]])


def subscribe(app: App, account_id: str) -> Subscription:
    return app.broker.subscribe([account_id])


def render(conn: Connection, app: App, rows: list[Row],
           reader_id: str) -> list[dict[str, Any]]:
    """Stored events hold references; clients get the current state of what they point to.
    Events about a side the reader no longer acts for (a brand that removed them) are left
    out: replaying an old cursor must not reopen a conversation they lost access to."""
    renderer = Renderer(conn, app.keyring)
    parsed = [(row, orjson.loads(row.data)) for row in rows]
    sides = {reader_id}
    if any(data.get("as", reader_id) != reader_id for _, data in parsed):  # as a brand
        sides.update(brand_store.brand_ids_of(conn, reader_id))
    parsed = [(row, data) for row, data in parsed if data.get("as", reader_id) in sides]
    message_ids = {data["message_id"] for row, data in parsed if _about_a_message(row.type)}
    found = conversation_store.messages_by_ids(conn, message_ids)
    # the accounts the events and their messages name, in one query before any rendering
    renderer.load_accounts({value for _, data in parsed for key, value in data.items()
                            if key in ("as", "by", "brand_id", "member_id")}
                           | {m.sender_id for m in found.values()}
                           | {m.author_id for m in found.values()})
    rendered: dict[tuple[str, str], dict[str, Any]] = {}
    by_side: dict[str, list[Row]] = {}
    for row, data in parsed:
        if _about_a_message(row.type) and data["message_id"] in found:
            by_side.setdefault(data["as"], []).append(found[data["message_id"]])
    for side, messages in by_side.items():
        unique = list({m.id: m for m in messages}.values())
        for view in renderer.messages(unique, side):
            rendered[(view["id"], side)] = view
    out = []
    for row, data in parsed:
        view = _event_data(conn, renderer, row.type, data, rendered)
        out.append({"cursor": encode_cursor(row.seq), "type": row.type, "at": row.created_at,
                    "data": view})
    return out


def _about_a_message(type_: str) -> bool:
    """Events that carry the message they are about, as it is now (text, reactions)."""
    return type_.startswith(("message.", "reaction."))


def _event_data(conn: Connection, renderer: Renderer, type_: str, data: dict[str, Any],
                rendered: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    view = dict(data)
    for key in ("as", "by"):
        if key in view:
            view[key] = renderer.account(view[key])
    if _about_a_message(type_):
        view["message"] = rendered.get((data["message_id"], data["as"]))
    elif type_ in ("conversation.request", "conversation.accepted", "conversation.declined",
                   "conversation.updated"):
        part = conversation_store.participant(conn, data["conversation_id"], data["as"])
        view["conversation"] = renderer.conversation(part) if part is not None else None
    elif type_.startswith("brand."):
        view = {"brand": renderer.account(data["brand_id"]),
                "member": renderer.account(data["member_id"]), "role": data["role"]}
    return view


async def prune_events(app: App) -> None:
    """Drop events past the retention period, in small transactions (housekeeping)."""
    cutoff = to_text(utcnow() - timedelta(days=app.settings.event_retention_days))
    while await app.db.write(_prune, cutoff):
        await asyncio.sleep(0)


def _prune(tx: Tx, cutoff: str) -> int:
    return store.prune_before(tx.conn, cutoff, batch=1000)
