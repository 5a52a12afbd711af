"""Shared by the bench scripts: a throwaway PostgreSQL database for one run, created on the
server of BENCH_DATABASE_URL and dropped WITH (FORCE) at the end, whatever the run left
connected."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import sqlalchemy as sa

#: The PostgreSQL server the benches create their databases on (its maintenance database):
#: BENCH_DATABASE_URL (BENCH_PG_URL, the name some scripts read first, is still honoured).
PG_SERVER = (
    os.environ.get("BENCH_DATABASE_URL")
    or os.environ.get("BENCH_PG_URL")
    or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def pg_admin(sql: str, server: str = PG_SERVER) -> None:
    """One statement on the server's maintenance database, outside a transaction (CREATE /
    DROP DATABASE)."""
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def throwaway_pg_database(label: str, server: str = PG_SERVER) -> tuple[str, Callable[[], None]]:
    """Create `kmeweb_bench_<label>_<random>`; returns its URL and the function that drops it."""
    name = f"kmeweb_bench_{label}_{uuid.uuid4().hex[:8]}"
    pg_admin(f'CREATE DATABASE "{name}"', server)

    def drop() -> None:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', server)

    return sa.engine.make_url(server).set(database=name).render_as_string(False), drop
