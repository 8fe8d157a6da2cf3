"""Use cases for brand teams, and who may act as whom."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, Row

from directo.accounts import store as account_store
from directo.accounts.rules import normalise_handle
from directo.brands import rules, store
from directo.core.db import Tx
from directo.core.errors import Invalid, NotFound
from directo.core.timeutil import now_text
from directo.events import store as event_store

if TYPE_CHECKING:
    from directo.app import App


def actor_role(conn: Connection, brand: Row, actor_id: str) -> str | None:
    """The brand account itself acts as an owner."""
    if brand.id == actor_id:
        return "owner"
    return store.role_of(conn, brand.id, actor_id)


def audience(conn: Connection, account_id: str) -> list[str]:
    """Who receives an account's events: the account and, for a brand, every member."""
    return [account_id, *store.member_ids(conn, account_id)]


def audience_of(conn: Connection, account: Row) -> list[str]:
    """``audience`` of an account row in hand: a person's is themself, without a query."""
    return [account.id] if account.kind == "person" else audience(conn, account.id)


def _brand_for(conn: Connection, handle: str, actor_id: str) -> tuple[Row, str]:
    """The brand and the actor's role in it; 404 for anyone outside its team."""
    try:
        brand = account_store.by_handle(conn, normalise_handle(handle))
    except Invalid:
        brand = None
    if brand is None or brand.kind != "brand":
        raise NotFound("brand")
    role = actor_role(conn, brand, actor_id)
    if role is None:
        raise NotFound("brand")
    return brand, role


async def brands_of(app: App, member_id: str) -> list[tuple[Row, str]]:
    return await app.db.read(store.brands_of, member_id)


async def list_members(app: App, actor_id: str, brand_handle: str) -> list[tuple[Row, str]]:
    def read(conn: Connection) -> list[tuple[Row, str]]:
        brand, _role = _brand_for(conn, brand_handle, actor_id)
        return store.members(conn, brand.id)

    return await app.db.read(read)


async def put_member(app: App, actor_id: str, brand_handle: str, member_handle: str,
                     role: str | None) -> None:
    """Add, change (role given) or remove (role None) a member of a brand's team."""
    def tx(tx: Tx) -> None:
        brand, my_role = _brand_for(tx.conn, brand_handle, actor_id)
        try:
            member = account_store.by_handle(tx.conn, normalise_handle(member_handle))
        except Invalid:
            member = None
        if member is None:
            raise NotFound("account")
        rules.check_member_kind(member.kind)
        old_role = store.role_of(tx.conn, brand.id, member.id)
        rules.check_may_manage(my_role, old_role, role)
        if role is None:
            if not store.remove(tx.conn, brand.id, member.id):
                raise NotFound("member")
            event = "brand.member_removed"
        elif role == old_role:
            return
        else:
            store.upsert(tx.conn, brand.id, member.id, role, now_text())
            event = "brand.member_added" if old_role is None else "brand.member_updated"
        data = {"brand_id": brand.id, "member_id": member.id, "role": role}
        event_store.append(tx, {*audience(tx.conn, brand.id), member.id}, event, data)

    await app.db.write(tx)
