"""kmeweb.sqlutil.DriverStatement, the device side's way to run a statement: it reads and writes
what `conn.execute` would, PostgreSQL's errors reach the caller as SQLAlchemy's, and on
PostgreSQL's autocommitted connections (the enrollment lane's) a statement psycopg prepared
keeps answering when it is dropped under it or no longer fits its table (a migration run while
the web process serves)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from kmeweb.extensions import UTCDateTime, db
from kmeweb.sqlutil import DriverStatement
from tests.conftest import TEST_DB

META = MetaData()
SCRATCH = Table(
    "driver_statement_scratch",
    META,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(40), unique=True),
    Column("at", UTCDateTime()),
    Column("details", JSON),
)
AT = datetime(2026, 12, 5, 12, 30, tzinfo=UTC)
READ = DriverStatement(select(SCRATCH).where(SCRATCH.c.id == bindparam("id")))
WRITE = DriverStatement(
    insert(SCRATCH).values(
        id=bindparam("id"), name=bindparam("name"), at=bindparam("at"), details=bindparam("d")
    )
)
RENAME = DriverStatement(
    update(SCRATCH).where(SCRATCH.c.id == bindparam("id")).values(name=bindparam("name"))
)
#: psycopg prepares a statement on its fifth run (its prepare_threshold).
PREPARED_AFTER = 6
only_postgresql = pytest.mark.skipif(TEST_DB != "postgresql", reason="prepared statements")


@pytest.fixture
def conn(app) -> Iterator[Connection]:
    """A connection as the enrollment lane holds one: autocommitted on PostgreSQL."""
    META.create_all(db.engine)
    try:
        with db.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn
            conn.rollback()
    finally:
        META.drop_all(db.engine)


def _write(conn: Connection, row_id: int, name: str) -> None:
    values = {"id": row_id, "name": name, "at": AT, "d": {"agent": "1.2", "n": [1, None]}}
    assert WRITE.rowcount(conn, values) == 1


def test_reads_and_writes_what_the_execution_layer_would(conn):
    _write(conn, 1, "first")
    for _ in range(3):  # once to prepare, then as prepared
        assert READ.rows(conn, {"id": 1}) == [tuple(conn.execute(select(SCRATCH)).one())]
    assert READ.rows(conn, {"id": 1}) == [(1, "first", AT, {"agent": "1.2", "n": [1, None]})]
    assert READ.rows(conn, {"id": 2}) == []
    # psycopg sends 1 as a smallint and 70,000 as an integer: the same statement takes both.
    _write(conn, 70_000, "large id")
    assert READ.rows(conn, {"id": 70_000})[0][:2] == (70_000, "large id")
    assert READ.rows(conn, {"id": 1})[0][:2] == (1, "first")
    assert RENAME.rowcount(conn, {"id": 1, "name": "renamed"}) == 1
    assert RENAME.rowcount(conn, {"id": 2, "name": "nobody"}) == 0
    assert conn.scalar(select(SCRATCH.c.name).where(SCRATCH.c.id == 1)) == "renamed"


def test_a_database_error_is_raised_as_sqlalchemys(conn):
    _write(conn, 1, "taken")
    with pytest.raises(IntegrityError):
        _write(conn, 2, "taken")
    _write(conn, 2, "free")  # the connection goes on after the error
    assert conn.scalar(text("SELECT count(*) FROM driver_statement_scratch")) == 2


@only_postgresql
@pytest.mark.parametrize(
    "disruption",
    [
        pytest.param("DEALLOCATE ALL", id="dropped from the connection"),
        # A migration run while the web process serves: the prepared plan's result type changed.
        pytest.param(
            "ALTER TABLE driver_statement_scratch ALTER COLUMN name TYPE text",
            id="its table changed",
        ),
    ],
)
def test_a_prepared_statement_answers_again_after(conn, disruption):
    _write(conn, 1, "first")
    for _ in range(PREPARED_AFTER):
        assert READ.rows(conn, {"id": 1})[0][1] == "first"
    conn.exec_driver_sql(disruption)
    assert READ.rows(conn, {"id": 1})[0][1] == "first"
    _write(conn, 2, "second")
    assert READ.rows(conn, {"id": 2})[0][1] == "second"
