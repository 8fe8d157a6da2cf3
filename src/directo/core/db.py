"""Database access: every use case is one function run in one transaction.

SQLite (embedded default): a single writer thread owns the only write connection and commits
the jobs that gathered while the previous commit ran as one transaction (group commit), each
job inside its own SAVEPOINT so one job's failure never rolls back another's. A job's caller is
answered only after the commit that holds its rows. Reads run inline on the caller's thread
through a separate read connection: WAL readers never wait for the writer.

PostgreSQL: a pool of connections; each use case runs in a worker thread in its own
transaction and is retried on a unique-key race, a deadlock or a serialisation failure.

After a commit, the set of accounts whose event streams grew (``Tx.wake``) is handed to
``on_commit`` (the broker), on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine, MetaData, create_engine, event, exc, pool

T = TypeVar("T")

metadata = MetaData()
log = logging.getLogger("directo.db")

GROUP_COMMIT_MAX = 512


class Tx:
    """A transaction handed to a use case: the connection and the accounts to wake afterwards."""

    __slots__ = ("conn", "wake")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.wake: set[str] = set()


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


class _Job:
    __slots__ = ("args", "error", "fn", "future", "loop", "result", "wake")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 loop: asyncio.AbstractEventLoop | None,
                 future: asyncio.Future[Any] | None) -> None:
        self.fn, self.args, self.loop, self.future = fn, args, loop, future
        self.result: Any = None
        self.error: BaseException | None = None
        self.wake: set[str] = set()


class Database:
    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.on_commit: Callable[[set[str]], None] = lambda accounts: None
        self._writer: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, "BEGIN IMMEDIATE")
            self._read_engine = _sqlite_engine(url, None)
            self._read_conn: Connection | None = None
        else:
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size,
                                        pool_pre_ping=True)
            self._read_engine = self.engine

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.is_sqlite and self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="directo-writer",
                                            daemon=True)
            self._writer.start()

    def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(None)
            self._writer.join(timeout=30)
            self._writer = None
        if self.is_sqlite and self._read_conn is not None:
            self._read_conn.close()
            self._read_conn = None
        self.engine.dispose()
        self._read_engine.dispose()

    # -- writes --------------------------------------------------------------------------------

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(tx, *args)`` in a transaction; return once it is committed."""
        if self.is_sqlite and self._writer is not None:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[T] = loop.create_future()
            self._jobs.put(_Job(fn, args, loop, future))
            return await future
        result, wake = await anyio.to_thread.run_sync(self._run_tx, fn, args)
        self.on_commit(wake)
        return result

    def write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """The same for code without an event loop (the CLI): no group commit, no broker."""
        result, _wake = self._run_tx(fn, args)
        return result

    def _run_tx(self, fn: Callable[..., T], args: tuple[Any, ...]) -> tuple[T, set[str]]:
        attempts = 1 if self.is_sqlite else 4
        for attempt in range(attempts):
            with self.engine.connect() as conn:
                tx = Tx(conn)
                try:
                    with conn.begin():
                        result = fn(tx, *args)
                    return result, tx.wake
                except (exc.IntegrityError, exc.OperationalError) as error:
                    if attempt + 1 == attempts or not _retryable(error):
                        raise
                    log.info("retrying a transaction after %s", type(error.orig).__name__)
        raise AssertionError("unreachable")

    def _write_loop(self) -> None:
        with self.engine.connect() as conn:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < GROUP_COMMIT_MAX:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
                self._commit_batch(conn, batch)
                if stop:
                    return

    def _commit_batch(self, conn: Connection, batch: list[_Job]) -> None:
        # Savepoints go straight to the driver: through SQLAlchemy they cost as much as the
        # rest of a send together.
        driver = conn.connection.driver_connection
        assert driver is not None
        try:
            with conn.begin():
                for job in batch:
                    tx = Tx(conn)
                    driver.execute("SAVEPOINT job")
                    try:
                        job.result = job.fn(tx, *job.args)
                        job.wake = tx.wake
                    except BaseException as error:  # the job's own failure stays its own
                        driver.execute("ROLLBACK TO job")
                        job.error = error
                    driver.execute("RELEASE job")
        except BaseException as error:  # the commit failed: nobody's rows are durable
            log.error("group commit of %d jobs failed: %s", len(batch), type(error).__name__)
            for job in batch:
                if job.error is None:
                    job.error, job.wake = error, set()
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in batch:
            if job.loop is not None:
                by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():  # one wake-up of each loop per batch
            loop.call_soon_threadsafe(self._settle, jobs)

    def _settle(self, jobs: list[_Job]) -> None:
        for job in jobs:
            if job.wake:
                self.on_commit(job.wake)
            future = job.future
            if future is None or future.done():
                continue
            if job.error is not None:
                future.set_exception(job.error)
            else:
                future.set_result(job.result)

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
        """Run ``fn(conn, *args)`` against one consistent snapshot."""
        if self.is_sqlite:
            return self.read_sync(fn, *args)
        return await anyio.to_thread.run_sync(self._pg_read, fn, args)

    async def lookup(self, fn: Callable[..., T], *args: Any) -> T:
        """``read`` for a function that runs exactly one statement, which is its own
        snapshot: on SQLite no BEGIN and ROLLBACK around it (each is a call into SQLite that
        hands the GIL to the writer thread and waits to get it back)."""
        if self.is_sqlite:
            return fn(self._sqlite_reader(), *args)
        return await self.read(fn, *args)

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

    def _pg_read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self.engine.connect() as conn, conn.begin():
            return fn(conn, *args)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn


def _retryable(error: exc.DBAPIError) -> bool:
    if isinstance(error, exc.IntegrityError):
        return True
    state = getattr(error.orig, "sqlstate", None)
    return state in {"40001", "40P01"}
