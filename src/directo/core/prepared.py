"""Statements for the hot paths: a Core statement compiled once per dialect and run on the
driver's own connection.

The send path runs about fifteen small statements per message. Profiling it showed that
building and compiling a Core expression on every call costs 30-40x what SQLite spends
executing it, and executing a prebuilt one through ``Connection.execute`` still about 5x.
``Prepared`` keeps the statement written in Core (one schema, both dialects) and pays
compilation once; each call is the driver's ``execute`` and a named tuple per row.

Only plain bind parameters are supported (no expanding ``IN``): the constructor refuses the
rest, so a statement that needs SQLAlchemy's full machinery stays with ``conn.execute``.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from typing import Any

from sqlalchemy import BindParameter, Boolean, Connection, bindparam, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import Executable


class _Plan:
    __slots__ = ("defaults", "names", "positional", "sql")

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        if any(bind.expanding for bind in compiled.binds.values()):
            raise ValueError("Prepared statements take plain bind parameters only")
        self.sql: str = compiled.string
        self.defaults: dict[str, Any] = {
            name: value for name, value in compiled.construct_params(_check=False).items()
            if value is not None}
        self.positional: bool = compiled.positional
        self.names: tuple[str, ...] = tuple(compiled.positiontup if compiled.positional
                                            else compiled.binds)

    def parameters(self, values: dict[str, Any]) -> Any:
        """The driver's parameters; an absent value is NULL, as with ``insert(table)``."""
        if self.defaults:
            values = {**self.defaults, **values}
        if self.positional:
            return tuple(map(values.get, self.names))
        return dict(zip(self.names, map(values.get, self.names), strict=True))


def _driver(conn: Connection) -> Any:
    """The DBAPI connection under ``conn``, one attribute away instead of the two properties
    of ``driver_connection``: sqlite3's or psycopg's own connection, or SQLAlchemy's adapter
    around asyncpg's (which runs each statement on the event loop)."""
    return conn.connection.dbapi_connection


def _as_sqlalchemy(error: Exception, conn: Connection, sql: str, parameters: Any) -> Exception:
    """What ``Connection.execute`` would raise (an IntegrityError, ...), so that callers and
    the retries in core/db see the same exceptions. As ``Connection.execute`` would, a lost
    connection (a restarted server) is invalidated, so that the pool drops it, and said to
    be (``connection_invalidated``), so that the transaction is tried again."""
    dialect = conn.dialect
    lost = dialect.is_disconnect(error, _driver(conn), None)  # type: ignore[arg-type]
    if lost:
        conn.invalidate(error)
    return exc.DBAPIError.instance(sql, parameters, error, dialect.loaded_dbapi.Error,
                                   hide_parameters=True, connection_invalidated=lost,
                                   dialect=dialect)


class Prepared:
    """``Prepared(select(...).where(t.c.id == bindparam("id")))``; ``.first(conn, id=...)``."""

    __slots__ = ("_booleans", "_plans", "_row", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._plans: dict[str, _Plan] = {}
        columns = list(getattr(statement, "exported_columns", ()))
        names = [c.key for c in columns]
        self._row: Any = namedtuple("Row", names) if names else None
        self._booleans = tuple(i for i, c in enumerate(columns) if isinstance(c.type, Boolean))
        _every.append(self)

    def plan_for(self, dialect: Dialect) -> _Plan:
        """Compiled once per dialect and driver (psycopg and asyncpg write parameters
        differently)."""
        key = f"{dialect.name}+{dialect.driver}"
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(self.statement, dialect)
        return plan

    def _cursor(self, conn: Connection, values: dict[str, Any]) -> Any:
        plan = self.plan_for(conn.dialect)
        parameters = plan.parameters(values)
        try:
            cursor = _driver(conn).cursor()  # asyncpg's adapter has no execute of its own
            cursor.execute(plan.sql, parameters)
            return cursor
        except conn.dialect.loaded_dbapi.Error as error:
            raise _as_sqlalchemy(error, conn, plan.sql, parameters) from error

    def _shape(self, raw: tuple[Any, ...]) -> Any:
        if self._booleans:
            raw_list = list(raw)
            for index in self._booleans:
                if raw_list[index] is not None:
                    raw_list[index] = bool(raw_list[index])
            raw = tuple(raw_list)
        return self._row._make(raw)

    def row(self, **values: Any) -> Any:
        """A row shaped like this statement's results, from values already in hand (a
        missing column is None)."""
        return self._row._make(values.get(name) for name in self._row._fields)

    def run(self, conn: Connection, **values: Any) -> int:
        """Execute; the number of rows written."""
        return int(self._cursor(conn, values).rowcount)

    def run_many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Execute once per row: one statement prepared, many executed."""
        plan = self.plan_for(conn.dialect)
        parameters = [plan.parameters(values) for values in rows]
        try:
            _driver(conn).cursor().executemany(plan.sql, parameters)
        except conn.dialect.loaded_dbapi.Error as error:
            raise _as_sqlalchemy(error, conn, plan.sql, parameters) from error

    def first(self, conn: Connection, **values: Any) -> Any:
        raw = self._cursor(conn, values).fetchone()
        return None if raw is None else self._shape(raw)

    def all(self, conn: Connection, **values: Any) -> list[Any]:
        return [self._shape(raw) for raw in self._cursor(conn, values).fetchall()]

    def scalar(self, conn: Connection, **values: Any) -> Any:
        raw = self._cursor(conn, values).fetchone()
        return None if raw is None else raw[0]


# every statement: module constants, and the few sizes of each PreparedIn (at most ten)
_every: list[Prepared] = []


def compile_all(dialect: Dialect) -> int:
    """Compile every statement made so far for ``dialect`` (a server's start), instead of on
    its first use, which a request would wait for; how many there are."""
    for prepared in _every:
        prepared.plan_for(dialect)
    return len(_every)


class PreparedIn:
    """A statement over a list of values (``column IN (...)``) of any length, as ``Prepared``
    statements of one size per power of two, the unused places NULL (which matches nothing).

    ``PreparedIn(lambda places: select(t).where(t.c.id.in_(places)))``; ``.all(conn, ids)``.
    For the hundreds of ids of an event page: one statement instead of one each, and no
    per-call compilation as SQLAlchemy's expanding ``IN`` would need."""

    __slots__ = ("_build", "_sizes")

    MOST = 512  # values per statement (SQLite allows 32,766 parameters)

    def __init__(self, build: Callable[[list[BindParameter[Any]]], Executable]) -> None:
        self._build = build
        self._sizes: dict[int, Prepared] = {}

    def all(self, conn: Connection, values: list[Any], **fixed: Any) -> list[Any]:
        """The rows matching any of ``values``, each once (repeated values are asked once);
        ``fixed``: the statement's other parameters, the same for every value."""
        values = list(dict.fromkeys(values))
        rows: list[Any] = []
        for start in range(0, len(values), self.MOST):
            chunk = values[start:start + self.MOST]
            size = 1 << (len(chunk) - 1).bit_length()
            prepared = self._sizes.get(size)
            if prepared is None:
                prepared = self._sizes[size] = Prepared(self._build(
                    [bindparam(f"v{n}") for n in range(size)]))
            rows += prepared.all(conn, **fixed,
                                 **{f"v{n}": value for n, value in enumerate(chunk)})
        return rows
