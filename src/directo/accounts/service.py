"""Use cases for accounts, sessions, follows and blocks."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio.to_thread
from argon2.exceptions import VerificationError
from limits import RateLimitItem, RateLimitItemPerMinute
from sqlalchemy import Connection, Row
from sqlalchemy.exc import IntegrityError

from directo.accounts import rules, store
from directo.core import ratelimit
from directo.core.db import Tx
from directo.core.errors import Conflict, DirectoError, Invalid, NotFound, Unauthorized
from directo.core.ids import new_id, new_token
from directo.core.timeutil import from_text, now_text, to_text, utcnow
from directo.events import store as event_store

if TYPE_CHECKING:
    from directo.app import App

_DUMMY_HASH: str | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_account(app: App, handle: str, password: str, display_name: str,
                         kind: str) -> Row:
    handle = rules.normalise_handle(handle)
    rules.check_password(password)
    display_name = rules.normalise_display_name(display_name)
    password_hash = await anyio.to_thread.run_sync(app.passwords.hash, password)

    def tx(tx: Tx) -> Row:
        if store.by_handle(tx.conn, handle) is not None:
            raise Conflict("handle_taken", "that handle is taken")
        account_id = new_id("acc")
        store.insert_account(tx.conn, id=account_id, handle=handle, display_name=display_name,
                             kind=kind, password_hash=password_hash, dm_policy="everyone",
                             created_at=now_text())
        event_store.open_stream(tx.conn, account_id)
        row = store.by_id(tx.conn, account_id)
        assert row is not None
        return row

    try:
        return await app.db.write(tx)
    except IntegrityError as error:
        raise Conflict("handle_taken", "that handle is taken") from error


def _login_limits(app: App) -> tuple[RateLimitItem, RateLimitItem]:
    per_handle = app.settings.login_attempts_per_minute
    return RateLimitItemPerMinute(per_handle), RateLimitItemPerMinute(per_handle * 4)


async def _check_password(app: App, handle: str, account: Row | None, password: str,
                          client: str) -> None:
    """Refuse a wrong password with 401, and with 429 once a handle or client keeps failing."""
    per_handle, per_client = _login_limits(app)
    keys = ((per_handle, ("login-handle", handle.strip().lower())),
            (per_client, ("login-client", client)))
    for item, identifiers in keys:
        await ratelimit.check(app.limiter, item, identifiers,
                              "too many failed logins; try again later")
    if not await _password_matches(app, account, password):
        for item, identifiers in keys:
            await ratelimit.record(app.limiter, item, identifiers)
        raise DirectoError("invalid_credentials", "wrong handle or password", status=401)


async def login(app: App, handle: str, password: str, client: str) -> tuple[str, Row]:
    account = await app.db.read(_by_handle_or_none, handle)
    await _check_password(app, handle, account, password, client)
    assert account is not None
    token = new_token()

    def tx(tx: Tx) -> None:
        store.insert_session(tx.conn, token_hash(token), account.id, now_text())

    await app.db.write(tx)
    return token, account


def _by_handle_or_none(conn: Connection, handle: str) -> Row | None:
    try:
        return store.by_handle(conn, rules.normalise_handle(handle))
    except Invalid:
        return None


async def _password_matches(app: App, account: Row | None, password: str) -> bool:
    """Always spend one argon2 verification, so timing does not tell which handles exist."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = await anyio.to_thread.run_sync(app.passwords.hash, new_token())
    stored = account.password_hash if account is not None else _DUMMY_HASH
    try:
        await anyio.to_thread.run_sync(app.passwords.verify, stored, password)
    except VerificationError:
        return False
    return account is not None


async def logout(app: App, hashed_token: str) -> None:
    def tx(tx: Tx) -> None:
        store.delete_session(tx.conn, hashed_token)

    await app.db.write(tx)
    if app.signed_in is not None:
        app.signed_in.pop(hashed_token, None)


async def authenticate(app: App, token: str | None) -> tuple[Row, str]:
    """The account behind a bearer token, and the token's hash."""
    hashed = _hash_of_plausible(token)
    return await _account_by_hash(app, hashed), hashed


async def account_id_of(app: App, token: str | None) -> str:
    """The id of the account behind a bearer token: ``authenticate`` for the send path, which
    needs nothing more, answered from memory for a token this process has resolved before
    (``App.signed_in``, a read less per send).

    Only on SQLite served by one process: both ways a session ends, logging out and erasing
    the account, run in that process and forget the token here once committed. Processes
    sharing a database (PostgreSQL, or the workers of ``--workers N``) would not see each
    other's logouts, so they always ask it."""
    hashed = _hash_of_plausible(token)
    known = None if app.signed_in is None else app.signed_in.get(hashed)
    if known is not None:
        account_id, ends_at = known
        if time.time() < ends_at:
            return account_id
    return str((await _account_by_hash(app, hashed)).id)


def _hash_of_plausible(token: str | None) -> str:
    if not token or len(token) > 200:
        raise Unauthorized()
    return token_hash(token)


async def _account_by_hash(app: App, hashed: str) -> Row:
    lifetime = timedelta(days=app.settings.session_days)
    account = await app.db.lookup(store.by_token_hash, hashed, to_text(utcnow() - lifetime))
    if account is None:
        raise Unauthorized("the token is invalid, has been revoked or has expired")
    if app.signed_in is not None:
        ends_at = (from_text(account.session_created_at) + lifetime).timestamp()
        app.signed_in[hashed] = (account.id, ends_at)
    return account


async def end_expired_sessions(app: App) -> None:
    """Delete sessions past their lifetime, a thousand at a time (housekeeping); they were
    refused already."""
    cutoff = to_text(utcnow() - timedelta(days=app.settings.session_days))
    while await app.db.write(lambda tx: store.delete_sessions_before(tx.conn, cutoff, 1000)):
        await asyncio.sleep(0)


async def update_me(app: App, me: Row, display_name: str | None, dm_policy: str | None) -> Row:
    values: dict[str, str] = {}
    if display_name is not None:
        values["display_name"] = rules.normalise_display_name(display_name)
    if dm_policy is not None:
        values["dm_policy"] = dm_policy

    def tx(tx: Tx) -> Row:
        if values:
            store.update_account(tx.conn, me.id, **values)
        row = store.by_id(tx.conn, me.id)
        assert row is not None
        return row

    return await app.db.write(tx)


async def find(app: App, handle: str) -> Row:
    account = await app.db.read(_by_handle_or_none, handle)
    if account is None:
        raise NotFound("account")
    return account


async def set_following(app: App, me: Row, handle: str, present: bool) -> None:
    other = await find(app, handle)
    if other.id == me.id:
        raise Invalid("invalid_target", "you cannot follow yourself")

    def tx(tx: Tx) -> None:
        store.set_relation(tx.conn, store.follows, "follower_id", "followee_id", me.id, other.id,
                           present, now_text())

    await app.db.write(tx)


async def set_blocked(app: App, me: Row, handle: str, present: bool) -> None:
    """Blocking also ends follows both ways and takes any request from them out of view."""
    from directo.conversations.service import on_block

    other = await find(app, handle)
    if other.id == me.id:
        raise Invalid("invalid_target", "you cannot block yourself")

    def tx(tx: Tx) -> None:
        changed = store.set_relation(tx.conn, store.blocks, "blocker_id", "blocked_id", me.id,
                                     other.id, present, now_text())
        if present and changed:
            for a, b in ((me.id, other.id), (other.id, me.id)):
                store.set_relation(tx.conn, store.follows, "follower_id", "followee_id", a, b,
                                   False, "")
            on_block(tx, me.id, other.id)

    await app.db.write(tx)


async def list_related(app: App, me: Row, which: str) -> list[Row]:
    table, a_col, b_col = {
        "following": (store.follows, "follower_id", "followee_id"),
        "followers": (store.follows, "followee_id", "follower_id"),
        "blocked": (store.blocks, "blocker_id", "blocked_id"),
    }[which]
    return await app.db.read(store.related, table, a_col, b_col, me.id)


async def erase_account(app: App, me: Row, password: str, client: str) -> None:
    """Erase an account for good, after re-checking its password.

    Crypto-shredding first: every conversation of the account loses its wrapped data key and
    its message bodies, so a copy of the database taken afterwards (a backup, a stale WAL
    page) holds nothing that decrypts. Then the account row goes, and with it (foreign-key
    cascades) its sessions, event stream, follows, blocks, brand memberships, reports and
    conversations. What the peer sees: the conversation disappears from their lists and
    answers 404, because its texts, theirs included, can no longer be read; their stream gets
    ``conversation.removed`` so open clients drop it, and older events about it render with
    ``message``/``conversation`` null. Messages the account wrote as a brand agent stay with
    the brand, their author shown as a deleted account.
    """
    from directo.conversations.service import on_erase

    await _check_password(app, me.handle, me, password, client)

    def tx(tx: Tx) -> list[bytes]:
        wrapped_keys = on_erase(tx, me.id)
        store.delete_account(tx.conn, me.id)
        tx.wake.add(me.id)  # its open streams look once more, find it gone and close
        return wrapped_keys

    for wrapped in await app.db.write(tx):
        app.keyring.forget(wrapped)
    if app.signed_in is not None:  # its sessions went with the account
        for hashed in [hashed for hashed, (owner, _) in app.signed_in.items()
                       if owner == me.id]:
            del app.signed_in[hashed]
    await app.db.forget_old_pages()
