"""SQLite's group commit (``core/db.py``): the writes that gather while a commit is under way
share one transaction, yet one write's failure is its own, and a commit that fails fails
every write in it: nobody is told "done" for a row that was rolled back."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import exc, make_url, text

from directo.app import App
from directo.conversations import service as conversations
from directo.core import metrics
from directo.core.db import Tx
from tests.helpers import Signup, friends, metric


@pytest.fixture
def backend() -> str:
    return "sqlite"  # PostgreSQL runs each write in its own transaction


def _insert(n: int, fail: bool = False):  # type: ignore[no-untyped-def]
    def job(tx: Tx) -> int:
        tx.conn.exec_driver_sql("INSERT INTO scratch (n) VALUES (?)", (n,))
        if fail:
            raise ValueError(f"job {n} failed after writing")
        return n

    return job


def _create_scratch(tx: Tx) -> None:
    tx.conn.exec_driver_sql("CREATE TABLE scratch (n INTEGER)")


def _stored(app: App) -> list[int]:
    return app.db.read_sync(lambda conn: [row[0] for row in conn.execute(
        text("SELECT n FROM scratch ORDER BY n"))])


async def test_one_write_failing_undoes_only_its_own_rows(app: App) -> None:
    await app.db.write(_create_scratch)
    results = await asyncio.gather(app.db.write(_insert(1)), app.db.write(_insert(2, True)),
                                   app.db.write(_insert(3)), return_exceptions=True)
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], ValueError)
    assert _stored(app) == [1, 3]


async def test_a_failed_commit_fails_every_write_in_it(app: App) -> None:
    await app.db.write(_create_scratch)

    def dangling(tx: Tx) -> None:
        # a foreign key checked only at COMMIT: the statement succeeds, the commit fails
        tx.conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        tx.conn.exec_driver_sql(
            "INSERT INTO account_streams (account_id, last_seq, pruned_seq) "
            "VALUES ('acc_nobody', 0, 0)")

    results = await asyncio.gather(app.db.write(_insert(1)), app.db.write(dangling),
                                   return_exceptions=True)
    assert all(isinstance(result, exc.IntegrityError) for result in results), results
    assert _stored(app) == []
    assert await app.db.write(_insert(2)) == 2  # the next batch is unaffected
    assert _stored(app) == [2]


def _commit_totals() -> tuple[float, float]:
    """(writes, commits) so far, as ``/metrics`` reports them."""
    text = metrics.render().decode()
    return (metric(text, "directo_commit_batch_jobs_sum"),
            metric(text, "directo_commit_batch_jobs_count"))


async def test_metrics_tell_how_many_writes_each_commit_held(app: App) -> None:
    await app.db.write(_create_scratch)
    writes, commits = _commit_totals()
    await asyncio.gather(*(app.db.write(_insert(n)) for n in range(20)))
    now_writes, now_commits = _commit_totals()
    assert now_writes - writes == 20
    # all twenty were waiting when the batch began: one transaction, one commit
    assert now_commits - commits == 1


@contextlib.asynccontextmanager
async def one_batch(app: App) -> AsyncIterator[None]:
    """The writes started inside run as one group commit: the write gate is held (as another
    process would hold it) until all of them are waiting, and exactly one commit follows."""
    lock_path = f"{make_url(app.db.url).database}-writer.lock"
    other_process = os.open(lock_path, os.O_RDWR)
    fcntl.flock(other_process, fcntl.LOCK_EX)
    _, commits = _commit_totals()
    try:
        yield
        await asyncio.sleep(0.05)  # the last write started is waiting too
    finally:
        fcntl.flock(other_process, fcntl.LOCK_UN)
        os.close(other_process)
    await asyncio.sleep(0.2)
    assert _commit_totals()[1] - commits == 1


async def _started(coroutine: Any) -> asyncio.Future[Any]:
    """``coroutine`` running, and its write waiting in the group commit's queue."""
    task = asyncio.ensure_future(coroutine)
    await asyncio.sleep(0.05)
    return task


async def test_a_read_receipt_after_a_send_in_one_batch_counts_the_new_message(
        app: App, signup: Signup) -> None:
    """A send's message and events wait for the end of its batch (``batch_inserts``); a
    read receipt later in the same batch counts unread messages, so the send's rows must be
    in before it runs."""
    ana, ben, conversation = await friends(signup)
    first = await ana.send(conversation, "first")
    ana_id, ben_id = (await ana.me())["id"], (await ben.me())["id"]
    async with one_batch(app):
        sending = await _started(conversations.send(app, ana_id, conversation, "second-1",
                                                    "second", None))
        reading = await _started(conversations.mark_read(app, ben_id, conversation,
                                                         first["id"]))
    (second, created), _ = await sending, await reading
    assert created
    seen = await ben.conversation(conversation)
    assert seen["unread_count"] == 1
    assert seen["last_message"]["id"] == second["id"]


async def test_one_message_sent_twice_in_one_batch_is_stored_once(
        app: App, signup: Signup) -> None:
    """Both sends look for the ``client_id`` before either's message is in; the batch's
    insert then meets the unique key, and the batch runs again with every insert in place:
    one message, told to both as the same one."""
    ana, _ben, conversation = await friends(signup)
    ana_id = (await ana.me())["id"]
    async with one_batch(app):
        tries = [await _started(conversations.send(app, ana_id, conversation, "twice", "once",
                                                   None)) for _ in range(2)]
    (one, one_created), (other, other_created) = [await attempt for attempt in tries]
    assert one["id"] == other["id"] and sorted([one_created, other_created]) == [False, True]
    assert [m["text"] for m in (await ana.messages(conversation))["items"]] == ["once"]


async def test_a_write_waits_for_another_process_batch_without_stopping_the_loop(
        app: App) -> None:
    """Another process (here, another descriptor of the lock file) holds the write gate: the
    write waits for it, while the loop goes on serving reads; once released, it commits."""
    await app.db.write(_create_scratch)
    lock_path = f"{make_url(app.db.url).database}-writer.lock"
    other_process = os.open(lock_path, os.O_RDWR)
    fcntl.flock(other_process, fcntl.LOCK_EX)
    try:
        writing = asyncio.ensure_future(app.db.write(_insert(1)))
        for _ in range(20):  # the loop turns, and reads are answered, while the write waits
            await asyncio.sleep(0.01)
            assert _stored(app) == []
        assert not writing.done()
    finally:
        fcntl.flock(other_process, fcntl.LOCK_UN)
        os.close(other_process)
    assert await writing == 1
    assert _stored(app) == [1]
