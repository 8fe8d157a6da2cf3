"""Event streams: one gap-free sequence per account.

``account_streams.last_seq`` is taken with an UPDATE inside the writing transaction, so on
PostgreSQL concurrent writers to one account queue on its row and sequence order is commit
order: a reader that has seen seq N can never later find a new event below N.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    Row,
    String,
    Table,
    Text,
    bindparam,
    delete,
    insert,
    select,
    update,
)

from directo.core.db import Tx, metadata
from directo.core.prepared import Prepared, PreparedIn
from directo.core.timeutil import now_text

account_streams = Table(
    "account_streams", metadata,
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("last_seq", Integer, nullable=False),
    Column("pruned_seq", Integer, nullable=False),
)

events = Table(
    "events", metadata,
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("type", String(40), nullable=False),
    Column("data", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Index("ix_events_created", "created_at"),
)


_TAKE_SEQS = PreparedIn(lambda ids: update(account_streams)
                        .where(account_streams.c.account_id.in_(ids))
                        .values(last_seq=account_streams.c.last_seq + bindparam("count"))
                        .returning(account_streams.c.account_id, account_streams.c.last_seq))
_INSERT = Prepared(insert(events))
_STREAM = Prepared(select(account_streams)
                   .where(account_streams.c.account_id == bindparam("account_id")))


def _position(name: str) -> Any:
    return (select(account_streams.c[name])
            .where(account_streams.c.account_id == bindparam("account_id"))
            .scalar_subquery().label(name))


# Events after a seq, each row carrying its stream's position: a page in one round trip
# rather than two. (A join from the stream's row would lose the primary key's order, and
# PostgreSQL would sort the whole backlog for each page.)
_PAGE = Prepared(select(_position("last_seq"), _position("pruned_seq"), *events.c)
                 .where(events.c.account_id == bindparam("account_id"),
                        events.c.seq > bindparam("seq"))
                 .order_by(events.c.seq).limit(bindparam("limit")))


def open_stream(conn: Connection, account_id: str) -> None:
    conn.execute(insert(account_streams).values(account_id=account_id, last_seq=0, pruned_seq=0))


Entry = tuple[Iterable[str], str, dict[str, Any]]  # (accounts, event type, event data)


def append(tx: Tx, account_ids: Iterable[str], type_: str, data: dict[str, Any]) -> None:
    """Append one event to each account's stream (references only: never message text)."""
    append_all(tx, [(account_ids, type_, data)])


def append_all(tx: Tx, entries: list[Entry]) -> None:
    """``append`` for several events at once, in order: the streams that receive as many of
    them (usually all) are advanced by one statement, and the events are inserted by one
    ``executemany``."""
    at = now_text()
    rows: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for account_ids, type_, data in entries:
        payload = orjson.dumps(data).decode()
        for account_id in dict.fromkeys(account_ids):
            counts[account_id] = counts.get(account_id, 0) + 1
            rows.append({"account_id": account_id, "type": type_, "data": payload,
                         "created_at": at})
    by_count: dict[int, list[str]] = {}  # one statement for all the streams that take as many
    for account_id, count in counts.items():
        by_count.setdefault(count, []).append(account_id)
    ends: dict[str, int] = {}  # each stream's end before these events; erased ones are absent
    for count, account_ids in by_count.items():
        for account_id, last in _TAKE_SEQS.all(tx.conn, account_ids, count=count):
            ends[account_id] = last - count
    rows = [row for row in rows if row["account_id"] in ends]
    for row in rows:
        ends[row["account_id"]] += 1
        row["seq"] = ends[row["account_id"]]
    if rows:
        tx.insert(_INSERT, rows)
    tx.wake.update(ends)


def stream(conn: Connection, account_id: str) -> Row | None:
    """The account's stream position; None once the account is erased."""
    return _STREAM.first(conn, account_id=account_id)


def last_seqs(conn: Connection, account_ids: list[str]) -> dict[str, int]:
    """Where each of these streams ends now (erased accounts are absent)."""
    query = select(account_streams.c.account_id, account_streams.c.last_seq).where(
        account_streams.c.account_id.in_(account_ids))
    return {account_id: last_seq for account_id, last_seq in conn.execute(query)}


def page_after(conn: Connection, account_id: str, seq: int,
               limit: int) -> tuple[Row | None, list[Row]]:
    """The account's stream position (``stream``) and up to ``limit`` of its events after
    ``seq``, oldest first; (None, []) once the account is erased."""
    rows = _PAGE.all(conn, account_id=account_id, seq=seq, limit=limit)
    return (rows[0] if rows else stream(conn, account_id)), rows


_OLDEST = Prepared(select(events.c.account_id, events.c.seq)
                   .where(events.c.created_at < bindparam("cutoff"))
                   .order_by(events.c.created_at).limit(bindparam("limit")))


def prune_before(conn: Connection, cutoff: str, batch: int) -> int:
    """Delete the oldest events before ``cutoff``, about ``batch`` at a time, and record
    where each stream now starts so that older cursors are told to resync.

    The oldest events are found through the ``created_at`` index, so a pass that finds
    nothing to prune costs one index probe (grouping all events by account made SQLite scan
    the whole table, inside the writer, at every start)."""
    upto: dict[str, int] = {}
    for row in _OLDEST.all(conn, cutoff=cutoff, limit=batch):
        upto[row.account_id] = max(row.seq, upto.get(row.account_id, 0))
    pruned = 0
    for account_id, seq in upto.items():
        result = conn.execute(delete(events).where(events.c.account_id == account_id,
                                                   events.c.seq <= seq))
        conn.execute(update(account_streams).where(account_streams.c.account_id == account_id)
                     .values(pruned_seq=seq))
        pruned += result.rowcount
    return pruned
