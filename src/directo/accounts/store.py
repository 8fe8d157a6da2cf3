"""Tables and queries for accounts, sessions, follows and blocks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Index,
    Row,
    String,
    Table,
    bindparam,
    delete,
    exists,
    insert,
    select,
    update,
)

from directo.core.db import metadata
from directo.core.prepared import Prepared, PreparedIn

accounts = Table(
    "accounts", metadata,
    Column("id", String(32), primary_key=True),
    Column("handle", String(30), nullable=False, unique=True),
    Column("display_name", String(64), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("dm_policy", String(10), nullable=False),
    Column("created_at", String(32), nullable=False),
)

sessions = Table(
    "sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"),
           nullable=False),
    Column("created_at", String(32), nullable=False),
    Index("ix_sessions_account", "account_id"),
    Index("ix_sessions_created", "created_at"),
)

follows = Table(
    "follows", metadata,
    Column("follower_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("followee_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("created_at", String(32), nullable=False),
    Index("ix_follows_followee", "followee_id"),
)

blocks = Table(
    "blocks", metadata,
    Column("blocker_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("blocked_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("created_at", String(32), nullable=False),
)


def by_handle(conn: Connection, handle: str) -> Row | None:
    return conn.execute(select(accounts).where(accounts.c.handle == handle)).first()


_BY_ID = Prepared(select(accounts).where(accounts.c.id == bindparam("id")))


def by_id(conn: Connection, account_id: str) -> Row | None:
    return _BY_ID.first(conn, id=account_id)


_BY_IDS = PreparedIn(lambda ids: select(accounts).where(accounts.c.id.in_(ids)))


def by_ids(conn: Connection, account_ids: set[str]) -> dict[str, Row]:
    return {row.id: row for row in _BY_IDS.all(conn, list(account_ids))}


def insert_account(conn: Connection, **values: str) -> None:
    conn.execute(insert(accounts).values(**values))


def update_account(conn: Connection, account_id: str, **values: str) -> None:
    conn.execute(update(accounts).where(accounts.c.id == account_id).values(**values))


def delete_account(conn: Connection, account_id: str) -> None:
    """Delete an account; foreign keys cascade to everything that references it."""
    conn.execute(delete(accounts).where(accounts.c.id == account_id))


_BY_TOKEN_HASH = Prepared(select(accounts, sessions.c.created_at.label("session_created_at"))
                          .join(sessions, sessions.c.account_id == accounts.c.id)
                          .where(sessions.c.token_hash == bindparam("token_hash"),
                                 sessions.c.created_at >= bindparam("since")))


def by_token_hash(conn: Connection, token_hash: str, since: str) -> Row | None:
    """The account of a session begun at ``since`` or later, with ``session_created_at``."""
    return _BY_TOKEN_HASH.first(conn, token_hash=token_hash, since=since)


def delete_sessions_before(conn: Connection, cutoff: str, batch: int) -> int:
    """Delete up to ``batch`` of the sessions begun before ``cutoff`` (through the
    ``created_at`` index); how many went."""
    oldest = (select(sessions.c.token_hash).where(sessions.c.created_at < cutoff)
              .order_by(sessions.c.created_at).limit(batch))
    return int(conn.execute(delete(sessions).where(sessions.c.token_hash.in_(oldest))).rowcount)


def insert_session(conn: Connection, token_hash: str, account_id: str, created_at: str) -> None:
    conn.execute(insert(sessions).values(token_hash=token_hash, account_id=account_id,
                                         created_at=created_at))


def delete_session(conn: Connection, token_hash: str) -> None:
    conn.execute(delete(sessions).where(sessions.c.token_hash == token_hash))


def _follows(follower: str, followee: str) -> Any:
    return exists().where(follows.c.follower_id == bindparam(follower),
                          follows.c.followee_id == bindparam(followee))


def _blocks(blocker: str, blocked: str) -> Any:
    return exists().where(blocks.c.blocker_id == bindparam(blocker),
                          blocks.c.blocked_id == bindparam(blocked))


_RELATIONS = Prepared(select(_blocks("a", "b").label("a_blocked_b"),
                             _blocks("b", "a").label("b_blocked_a"),
                             _follows("b", "a").label("b_follows_a")))


def relations(conn: Connection, a_id: str, b_id: str) -> tuple[bool, bool, bool]:
    """In one query: (a blocked b, b blocked a, b follows a)."""
    row = _RELATIONS.first(conn, a=a_id, b=b_id)
    return bool(row.a_blocked_b), bool(row.b_blocked_a), bool(row.b_follows_a)


def blocked_either_way(conn: Connection, a_id: str, b_id: str) -> tuple[bool, bool]:
    """(a blocked b, b blocked a)."""
    a_blocked_b, b_blocked_a, _ = relations(conn, a_id, b_id)
    return a_blocked_b, b_blocked_a


def set_relation(conn: Connection, table: Table, a_col: str, b_col: str, a_id: str, b_id: str,
                 present: bool, created_at: str) -> bool:
    """Add or remove the (a, b) row of a relation table; True if anything changed."""
    where = (table.c[a_col] == a_id) & (table.c[b_col] == b_id)
    there = conn.execute(select(exists().where(where))).scalar()
    if present and not there:
        conn.execute(insert(table).values({a_col: a_id, b_col: b_id, "created_at": created_at}))
        return True
    if not present and there:
        conn.execute(delete(table).where(where))
        return True
    return False


def related(conn: Connection, table: Table, a_col: str, b_col: str, a_id: str) -> list[Row]:
    query = (select(accounts).join(table, table.c[b_col] == accounts.c.id)
             .where(table.c[a_col] == a_id).order_by(accounts.c.handle))
    return list(conn.execute(query))
