"""The brand_members table and its queries."""

from __future__ import annotations

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
    select,
)

from directo.accounts.store import accounts
from directo.core.db import metadata
from directo.core.prepared import Prepared

brand_members = Table(
    "brand_members", metadata,
    Column("brand_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("member_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"),
           primary_key=True),
    Column("role", String(8), nullable=False),
    Column("created_at", String(32), nullable=False),
    Index("ix_brand_members_member", "member_id"),
)


_ROLE = Prepared(select(brand_members.c.role).where(
    brand_members.c.brand_id == bindparam("brand_id"),
    brand_members.c.member_id == bindparam("member_id")))
_MEMBER_IDS = Prepared(select(brand_members.c.member_id)
                       .where(brand_members.c.brand_id == bindparam("brand_id")))
_BRAND_IDS = Prepared(select(brand_members.c.brand_id)
                      .where(brand_members.c.member_id == bindparam("member_id")))


def role_of(conn: Connection, brand_id: str, member_id: str) -> str | None:
    return _ROLE.scalar(conn, brand_id=brand_id, member_id=member_id)


def member_ids(conn: Connection, brand_id: str) -> list[str]:
    return [row.member_id for row in _MEMBER_IDS.all(conn, brand_id=brand_id)]


def members(conn: Connection, brand_id: str) -> list[tuple[Row, str]]:
    query = (select(accounts, brand_members.c.role)
             .join(brand_members, brand_members.c.member_id == accounts.c.id)
             .where(brand_members.c.brand_id == brand_id).order_by(accounts.c.handle))
    return [(row, row.role) for row in conn.execute(query)]


def brands_of(conn: Connection, member_id: str) -> list[tuple[Row, str]]:
    query = (select(accounts, brand_members.c.role)
             .join(brand_members, brand_members.c.brand_id == accounts.c.id)
             .where(brand_members.c.member_id == member_id).order_by(accounts.c.handle))
    return [(row, row.role) for row in conn.execute(query)]


def brand_ids_of(conn: Connection, member_id: str) -> list[str]:
    return [row.brand_id for row in _BRAND_IDS.all(conn, member_id=member_id)]


def upsert(conn: Connection, brand_id: str, member_id: str, role: str, created_at: str) -> None:
    remove(conn, brand_id, member_id)
    conn.execute(brand_members.insert().values(brand_id=brand_id, member_id=member_id, role=role,
                                               created_at=created_at))


def remove(conn: Connection, brand_id: str, member_id: str) -> bool:
    result = conn.execute(delete(brand_members).where(brand_members.c.brand_id == brand_id,
                                                      brand_members.c.member_id == member_id))
    return bool(result.rowcount)
