"""SQLite's group commit (``core/db.py``): the writes that gather while a commit is under way
share one transaction, yet one write's failure is its own, and a commit that fails fails
every write in it: nobody is told "done" for a row that was rolled back."""

from __future__ import annotations

import asyncio
import fcntl
import os

import pytest
from sqlalchemy import exc, make_url, text

from directo.app import App
from directo.core import metrics
from directo.core.db import Tx
from tests.helpers import metric


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
