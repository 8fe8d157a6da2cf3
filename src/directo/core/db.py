"""Database access: every use case is one function run in one transaction.

SQLite (embedded default): one write connection. The jobs that gathered while the previous
commit was being made durable run as one transaction (group commit), each inside its own
SAVEPOINT so one job's failure never rolls back another's. Their statements run on the event
loop's own thread, and only the COMMIT (the fsync) goes to a thread, while the loop carries on
gathering the next batch. A job's caller is answered only after the commit that holds its rows.
A job written with ``batch_inserts`` (a send) lets its ``Tx.insert`` rows wait: they go in
with the other such jobs' rows, one ``executemany`` per statement, before the next job
without it and at the end of the batch. Each statement has a fixed cost (the driver's call,
the binding, ``Prepared``) that is then paid once per batch rather than once per send: a
tenth of a send's CPU (docs/performance.md). If such an insert is refused (one message sent
twice at once), the batch is rolled back and run again with every insert in its place.
Running the statements in a writer thread instead cost more than the statements: every
statement releases the GIL, so the two threads handed it back and forth several times per
message (docs/performance.md). Reads run inline through a separate read connection: WAL
readers never wait for the writer. Several processes may share one SQLite file (``directo
serve --workers N``): a lock file beside it (``WriteGate``) lets one process's batch write at a
time, and a process that finds it taken waits for it in the committer thread, never on the
loop, which carries on answering requests meanwhile.

PostgreSQL: a pool of asyncpg connections; each use case runs in its own transaction, on the
event loop, through SQLAlchemy's ``run_sync`` (the store's synchronous code runs in a greenlet,
and each statement is awaited on the loop: no thread hop, and asyncpg costs a fifth of the CPU
psycopg did from worker threads, docs/performance.md). A transaction is retried on a
unique-key race, a deadlock or a serialisation failure, or once on a connection found dropped
(a restarted server): cheaper than testing every connection as it leaves the pool. The CLI,
migrations and tests without a loop use a synchronous psycopg engine on the same database.

After a commit, the set of accounts whose event streams grew (``Tx.wake``) is handed to
``on_commit`` (the broker), on the event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import (
    URL,
    Connection,
    Engine,
    MetaData,
    RootTransaction,
    create_engine,
    event,
    exc,
    make_url,
    pool,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from directo.core import metrics
from directo.core.prepared import Prepared

T = TypeVar("T")

metadata = MetaData()
log = logging.getLogger("directo.db")

GROUP_COMMIT_MAX = 512
PG_TX_ATTEMPTS = 4  # a PostgreSQL transaction, tried again on a race or a dropped connection


Inserts = dict[Prepared, list[dict[str, Any]]]  # rows waiting, by statement, in order


class Tx:
    """A transaction handed to a use case: the connection and the accounts to wake afterwards."""

    __slots__ = ("_waiting", "conn", "wake")

    def __init__(self, conn: Connection, waiting: Inserts | None = None) -> None:
        self.conn = conn
        self.wake: set[str] = set()
        self._waiting = waiting

    def insert(self, statement: Prepared, rows: list[dict[str, Any]]) -> None:
        """Insert rows that this transaction never reads back. In a group commit of jobs
        written with ``batch_inserts``, they wait for the batch's other rows (see above);
        otherwise they are written now."""
        if self._waiting is None:
            statement.run_many(self.conn, rows)
        else:
            self._waiting.setdefault(statement, []).extend(rows)


def _sqlite_engine(url: str, begin: str | None) -> Engine:
    """One SQLite connection; ``begin`` is what opens its transactions (None: the caller
    opens them on the driver)."""
    engine = create_engine(url, poolclass=pool.StaticPool,
                           connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (savepoints need it)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    if begin is not None:
        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql(begin)

    return engine


class WriteGate:
    """An exclusive ``flock`` on ``<database>-writer.lock``, held by a process from the
    BEGIN of a batch to the end of its COMMIT. Without it, a process whose BEGIN IMMEDIATE
    found another process's batch under way would wait in SQLite's busy handler, on the
    event loop, sleeping in steps of milliseconds; ``flock`` wakes the next one as soon as the
    lock is given back. A separate file: closing any descriptor of the database file itself
    would drop SQLite's own locks."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def try_take(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def take(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def give(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


def _sqlite_file(url: str) -> str | None:
    database = make_url(url).database
    return None if database in (None, "", ":memory:") else database


class _Job:
    __slots__ = ("args", "batch_inserts", "error", "fn", "future", "result", "wake")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 future: asyncio.Future[Any], batch_inserts: bool) -> None:
        self.fn, self.args, self.future = fn, args, future
        self.batch_inserts = batch_inserts
        self.result: Any = None
        self.error: BaseException | None = None
        self.wake: set[str] = set()


class Database:
    def __init__(self, url: str, pool_size: int = 20) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.on_commit: Callable[[set[str]], None] = lambda accounts: None
        # SQLite's group commit: the write connection, the loop its statements run on, the
        # jobs waiting for the next batch, and whether a batch is running or committing
        self._write_conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._committer: ThreadPoolExecutor | None = None
        self._pending: list[_Job] = []
        self._busy = False
        self._gate: WriteGate | None = None
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, "BEGIN IMMEDIATE")
            self._read_engine = _sqlite_engine(url, None)
            self._read_conn: Connection | None = None
        else:
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)
            self._read_engine = self.engine
            self._pool_size = pool_size
            # the server's engines, writes' and reads', pooled on the first event loop that
            # uses them (asyncpg's connections belong to one loop); any other loop (a test
            # client's, one per request) connects anew each time
            self._async: AsyncEngine | None = None
            self._async_reads: AsyncEngine | None = None
            self._async_loop: asyncio.AbstractEventLoop | None = None
            self._async_unpooled: AsyncEngine | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.is_sqlite and self._committer is None:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix="directo-commit")
            database = _sqlite_file(self.url)
            if database is not None:
                self._gate = WriteGate(database + "-writer.lock")
            self._sqlite_reader()  # opened now rather than by the first request

    def close(self) -> None:
        if self._committer is not None:
            self._committer.shutdown(wait=True)  # a commit under way completes
            self._committer = None
        for job in self._pending:  # never started: nothing of theirs was written
            if not job.future.done():
                job.future.set_exception(RuntimeError("the database is closed"))
        self._pending.clear()
        if self._gate is not None:
            self._gate.close()
            self._gate = None
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None
        if self.is_sqlite and self._read_conn is not None:
            self._read_conn.close()
            self._read_conn = None
        if not self.is_sqlite:  # closed from no loop, or another
            for engine in (self._async, self._async_reads):
                if engine is not None:
                    engine.sync_engine.dispose(close=False)
            self._async, self._async_reads, self._async_loop = None, None, None
        self.engine.dispose()
        self._read_engine.dispose()

    # -- writes --------------------------------------------------------------------------------

    async def write(self, fn: Callable[..., T], *args: Any, batch_inserts: bool = False) -> T:
        """Run ``fn(tx, *args)`` in a transaction; return once it is committed.

        ``batch_inserts``: on SQLite, ``fn``'s ``tx.insert`` rows may wait for the end of its
        group commit (module docstring). Only for a use case whose inserted rows no other
        job can look for before it is answered, bar a duplicate, which the unique keys catch:
        a send's message (its id is unknown until then) and its events."""
        if self.is_sqlite and self._committer is not None:
            loop = asyncio.get_running_loop()
            if loop is not self._loop:  # a test client's loop per request, say
                if self._busy:
                    raise RuntimeError("SQLite writes from two event loops at once")
                self._loop = loop
            future: asyncio.Future[T] = loop.create_future()
            self._pending.append(_Job(fn, args, future, batch_inserts))
            if not self._busy:
                self._busy = True
                loop.call_soon(self._open_gate)
            return await future
        result, wake = await self._run_tx_async(fn, args)
        self.on_commit(wake)
        return result

    def write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """The same for code without an event loop (the CLI): no group commit, no broker."""
        result, _wake = self._run_tx(fn, args)
        return result

    def _async_engine(self, reads: bool = False) -> AsyncEngine:
        """The asyncpg engine for the running loop: the pooled one (for ``reads``, the one in
        autocommit), on the first loop that uses it."""
        loop = asyncio.get_running_loop()
        pooled = self._pooled(reads)
        if self._async_loop is None:
            self._async_loop = loop
        if loop is self._async_loop:
            return pooled
        if self._async_unpooled is None:
            self._async_unpooled = create_async_engine(_asyncpg_url(self.url),
                                                       poolclass=pool.NullPool)
        return self._async_unpooled

    @property
    def served_dialect(self) -> Dialect:
        """The dialect the server's statements run in (asyncpg's, on PostgreSQL)."""
        return self.engine.dialect if self.is_sqlite else self._pooled().dialect

    def _pooled(self, reads: bool = False) -> AsyncEngine:
        """Two pools of ``pool_size`` connections: one for transactions, one in autocommit
        for reads. A pool of its own spares each read switching a connection into autocommit
        and back (about 70 µs of CPU, docs/performance.md). No overflow: the two together
        open as many connections as one pool of ``pool_size`` with as many again in
        overflow did, and requests beyond wait for a free one."""
        if self._async is None or self._async_reads is None:
            url = _asyncpg_url(self.url)
            self._async = create_async_engine(url, pool_size=self._pool_size, max_overflow=0)
            self._async_reads = create_async_engine(url, pool_size=self._pool_size,
                                                    max_overflow=0,
                                                    isolation_level="AUTOCOMMIT")
        return self._async_reads if reads else self._async

    async def aclose(self) -> None:
        """``close``, from the loop that used the database: asyncpg's connections are closed
        there, as they must be."""
        if not self.is_sqlite and asyncio.get_running_loop() is self._async_loop:
            for engine in (self._async, self._async_reads):
                if engine is not None:
                    await engine.dispose()
            self._async, self._async_reads, self._async_loop = None, None, None
        self.close()

    async def _run_tx_async(self, fn: Callable[..., T],
                            args: tuple[Any, ...]) -> tuple[T, set[str]]:
        failed: exc.DBAPIError
        for attempt in range(PG_TX_ATTEMPTS):
            engine = self._async_engine()
            async with engine.connect() as conn:
                transaction = await conn.begin()  # closing the connection rolls back the rest
                try:
                    done = await conn.run_sync(_in_tx, fn, args)
                except exc.DBAPIError as error:
                    if attempt + 1 == PG_TX_ATTEMPTS or not _retryable(error):
                        raise
                    log.info("retrying a transaction after %s", type(error.orig).__name__)
                    failed = error
                else:
                    # never retried: a commit that failed on the way back may have happened
                    await transaction.commit()
                    return done
            await _start_afresh_if_lost(engine, failed)
        raise AssertionError("unreachable")

    def _run_tx(self, fn: Callable[..., T], args: tuple[Any, ...]) -> tuple[T, set[str]]:
        attempts = 1 if self.is_sqlite else PG_TX_ATTEMPTS
        for attempt in range(attempts):
            with self.engine.connect() as conn:
                tx = Tx(conn)
                transaction = conn.begin()  # closing the connection rolls back the rest
                try:
                    result = fn(tx, *args)
                except exc.DBAPIError as error:
                    if attempt + 1 == attempts or not _retryable(error):
                        raise
                    log.info("retrying a transaction after %s", type(error.orig).__name__)
                    continue
                # never retried: a commit that failed on the way back may have happened
                transaction.commit()
                return result, tx.wake
        raise AssertionError("unreachable")

    def _open_gate(self) -> None:
        """Take the write gate, then run the batch; if another process holds the gate, wait
        for it in the committer thread (jobs that arrive meanwhile join the batch)."""
        assert self._loop is not None
        if self._gate is None or self._gate.try_take():
            self._run_batch()
        elif self._committer is not None:
            waiting = self._loop.run_in_executor(self._committer, self._gate.take)
            waiting.add_done_callback(lambda _: self._run_batch())

    def _run_batch(self) -> None:
        """On the loop: run the waiting jobs in one transaction, then hand its commit to the
        committer thread. ``_busy`` stays set until that commit is settled, so batches never
        overlap; jobs that arrive meanwhile form the next one."""
        if self._committer is None:  # closed meanwhile; close() failed what was waiting
            return
        batch = self._pending[:GROUP_COMMIT_MAX]
        del self._pending[:GROUP_COMMIT_MAX]
        metrics.commit_batch_jobs.observe(len(batch))
        assert self._loop is not None
        try:
            if self._write_conn is None:
                self._write_conn = self.engine.connect()
            conn = self._write_conn
            transaction = conn.begin()
        except BaseException as error:  # the database is locked by another process, say
            self._failed(batch, error)
            self._settle(batch)
            return
        try:
            try:
                _run_jobs(batch, conn, batching=True)
            except exc.DBAPIError as error:  # a batched insert refused: a duplicate, say
                log.info("running a batch again, inserting as it goes, after %s",
                         type(error.orig).__name__)
                transaction.rollback()
                transaction = conn.begin()
                _run_jobs(batch, conn, batching=False)
        except BaseException as error:  # the savepoints themselves failed (disk I/O, say)
            transaction.rollback()
            self._failed(batch, error)
            self._settle(batch)
            return
        committing = self._loop.run_in_executor(self._committer, _commit, transaction)
        committing.add_done_callback(lambda done: self._committed(batch, done))

    def _committed(self, batch: list[_Job], done: asyncio.Future[None]) -> None:
        error = done.exception()
        if error is not None:
            self._failed(batch, error)
        self._settle(batch)

    def _failed(self, batch: list[_Job], error: BaseException) -> None:
        """The transaction failed: nobody's rows are durable."""
        log.error("group commit of %d jobs failed: %s", len(batch), type(error).__name__)
        for job in batch:
            if job.error is None:
                job.error, job.wake = error, set()

    def _settle(self, batch: list[_Job]) -> None:
        if self._gate is not None:
            self._gate.give()
        for job in batch:
            if job.wake:
                self.on_commit(job.wake)
            if job.future.done():  # its caller gave up (a cancelled request)
                continue
            if job.error is not None:
                job.future.set_exception(job.error)
            else:
                job.future.set_result(job.result)
        if self._pending:
            assert self._loop is not None
            self._loop.call_soon(self._open_gate)
        else:
            self._busy = False

    async def forget_old_pages(self) -> None:
        """On SQLite, fold the WAL into the database and truncate it, so pages that held
        destroyed data (with ``secure_delete`` they are zeroed in the database) do not
        linger in the log. A no-op on PostgreSQL, whose storage is the operator's to
        vacuum."""
        if self.is_sqlite:
            await anyio.to_thread.run_sync(self._checkpoint)

    def _checkpoint(self) -> None:
        engine = _sqlite_engine(self.url, None)  # its own connection: never inside a batch
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            engine.dispose()

    # -- reads ---------------------------------------------------------------------------------

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)``, which only reads.

        On SQLite its statements see one snapshot (a read transaction). On PostgreSQL each
        statement sees what was committed when it began, as it would inside a transaction
        at READ COMMITTED, the default: there BEGIN and COMMIT would add two round trips and
        no consistency, so reads run in autocommit."""
        if self.is_sqlite:
            return self.read_sync(fn, *args)
        return await self._pg_read_async(fn, args)

    async def lookup(self, fn: Callable[..., T], *args: Any) -> T:
        """``read`` for a function that runs exactly one statement, which is its own
        snapshot: on SQLite no BEGIN and ROLLBACK around it (two calls into the library)."""
        if self.is_sqlite:
            return fn(self._sqlite_reader(), *args)
        return await self._pg_read_async(fn, args)

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        if self.is_sqlite:
            conn = self._sqlite_reader()
            # The snapshot is opened and closed on the driver: SQLAlchemy's transaction
            # bookkeeping cost more than the reads of an authenticated request.
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute("BEGIN")
            try:
                return fn(conn, *args)
            finally:
                driver.execute("ROLLBACK")
        return self._pg_read(fn, args)

    def _sqlite_reader(self) -> Connection:
        if self._read_conn is None:
            self._read_conn = self._read_engine.connect()
        return self._read_conn

    async def _pg_read_async(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        for attempt in range(2):
            engine = self._async_engine(reads=True)
            try:
                async with engine.connect() as conn:
                    return await conn.run_sync(_call, fn, args)
            except exc.DBAPIError as error:
                if attempt == 1 or not error.connection_invalidated:
                    raise
                await _start_afresh_if_lost(engine, error)
        raise AssertionError("unreachable")

    def _pg_read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """``read_sync`` on PostgreSQL: the CLI's, on the synchronous engine."""
        for attempt in range(2):
            try:
                with self.engine.connect() as conn:
                    with conn.begin():
                        return fn(conn, *args)
            except exc.DBAPIError as error:
                if attempt == 1 or not error.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn


def _run_jobs(batch: list[_Job], conn: Connection, batching: bool) -> None:
    """A group commit's jobs, each in a savepoint of its own so that its failure stays its
    own. With ``batching``, the inserts of ``batch_inserts`` jobs wait, and are written
    before the next job without it, which might read them, and at the end."""
    # Savepoints go straight to the driver: through SQLAlchemy they cost as much as the
    # rest of a send together.
    driver = conn.connection.driver_connection
    assert driver is not None
    waiting: Inserts = {}
    for job in batch:
        job.result, job.error, job.wake = None, None, set()
        mine: Inserts | None = {} if batching and job.batch_inserts else None
        if mine is None:
            _insert_waiting(conn, waiting)
        tx = Tx(conn, mine)
        driver.execute("SAVEPOINT job")
        try:
            job.result = job.fn(tx, *job.args)
            job.wake = tx.wake
            if mine:  # kept only once the job has succeeded
                for statement, rows in mine.items():
                    waiting.setdefault(statement, []).extend(rows)
        except Exception as error:  # the job's own failure stays its own
            driver.execute("ROLLBACK TO job")
            job.error = error
        driver.execute("RELEASE job")
    _insert_waiting(conn, waiting)


def _insert_waiting(conn: Connection, waiting: Inserts) -> None:
    for statement, rows in waiting.items():
        statement.run_many(conn, rows)
    waiting.clear()


def _commit(transaction: RootTransaction) -> None:
    """In the committer thread: COMMIT (the fsync), or roll back what could not be.

    A COMMIT that SQLite refuses (a deferred constraint, say) leaves its transaction open,
    and SQLAlchemy, having seen the commit begin, no longer rolls it back: the driver must,
    or the next batch could not begin."""
    try:
        transaction.commit()
    except BaseException:
        driver = transaction.connection.connection.driver_connection
        if getattr(driver, "in_transaction", False):
            driver.rollback()  # type: ignore[union-attr]
        transaction.rollback()
        raise


def _in_tx(conn: Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> tuple[T, set[str]]:
    tx = Tx(conn)
    return fn(tx, *args), tx.wake


def _call(conn: Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    return fn(conn, *args)


async def _start_afresh_if_lost(engine: AsyncEngine, error: exc.DBAPIError) -> None:
    """After a connection was found dropped (a restarted server), so may every other in the
    pool: it starts afresh, as SQLAlchemy does when it sees the loss itself."""
    if error.connection_invalidated:
        await engine.dispose()


def _asyncpg_url(url: str) -> URL:
    return make_url(url).set(drivername="postgresql+asyncpg")


def _retryable(error: exc.DBAPIError) -> bool:
    if isinstance(error, exc.IntegrityError) or error.connection_invalidated:
        return True
    state = getattr(error.orig, "sqlstate", None)
    return state in {"40001", "40P01"}
