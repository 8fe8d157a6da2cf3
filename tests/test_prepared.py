"""``core/prepared.PreparedIn``: a list of ids of any length, duplicates and unknown ids
included, finds exactly the rows it names, on both databases."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select

from directo.config import Settings
from directo.core.prepared import PreparedIn

scratch = Table("scratch_prepared_in", MetaData(), Column("id", String(16), primary_key=True),
                Column("n", Integer, nullable=False))
BY_IDS = PreparedIn(lambda ids: select(scratch).where(scratch.c.id.in_(ids)))


def test_prepared_in_finds_exactly_the_named_rows(
        settings_factory: Callable[..., Settings]) -> None:
    engine = create_engine(settings_factory().effective_database_url)
    scratch.create(engine)
    try:
        with engine.begin() as conn:
            conn.execute(insert(scratch), [{"id": f"r{n}", "n": n} for n in range(1200)])
        with engine.connect() as conn:
            assert BY_IDS.all(conn, []) == []
            for count in (1, 3, 8, 9, 511, 512, 513, 1100):  # across sizes and chunks
                wanted = [f"r{n}" for n in range(0, 2 * count, 2) if n < 1200]
                asked = [*wanted, *wanted[:5], "missing", "r99999"]  # repeats, unknowns
                found = BY_IDS.all(conn, asked)
                assert sorted(row.id for row in found) == sorted(set(wanted)), count
                assert all(row.n == int(row.id[1:]) for row in found)
    finally:
        scratch.drop(engine)
        engine.dispose()


def test_every_hot_path_statement_compiles_for_both_databases_at_start() -> None:
    """A served process compiles its statements before it takes traffic: a statement that
    one dialect cannot compile stops the start, instead of failing its first request. This
    compiles them for every dialect, whichever database the tests run on."""
    from sqlalchemy.dialects import postgresql, sqlite

    # the modules that make statements (a served process has imported them all by its start)
    from directo.accounts import store as _accounts  # noqa: F401
    from directo.brands import store as _brands  # noqa: F401
    from directo.conversations import store as _conversations  # noqa: F401
    from directo.core import prepared
    from directo.events import store as _events  # noqa: F401

    for dialect in (sqlite.pysqlite.dialect(), postgresql.asyncpg.dialect(),
                    postgresql.psycopg.dialect()):  # the server's, and the CLI's
        count = prepared.compile_all(dialect)
        assert count >= 20  # the send path alone runs about fifteen
        key = f"{dialect.name}+{dialect.driver}"
        assert all(key in statement._plans for statement in prepared._every)
