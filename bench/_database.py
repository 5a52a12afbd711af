"""Shared by the bench scripts: the databases of a run, SQLite (a file in the run's temporary
folder) and a throwaway PostgreSQL database created on the server of BENCH_DATABASE_URL and
dropped WITH (FORCE) at the end, whatever the run left connected; and the --skip-pg /
--skip-sqlite flags that choose them."""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


#: (metric suffix, database kind) of each database a bench can run on, in the order it runs.
KINDS = (("", "sqlite"), ("_pg", "postgresql"))


def add_database_flags(parser: argparse.ArgumentParser, sqlite: bool = True) -> None:
    """--skip-pg, and (unless the bench always runs SQLite) --skip-sqlite."""
    parser.add_argument("--skip-pg", action="store_true")
    if sqlite:
        parser.add_argument("--skip-sqlite", action="store_true")


def chosen(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (suffix, kind) pairs of KINDS the flags leave."""
    skip = {"sqlite": getattr(args, "skip_sqlite", False), "postgresql": args.skip_pg}
    return [(suffix, kind) for suffix, kind in KINDS if not skip[kind]]


@contextmanager
def database(kind: str, folder: str, label: str) -> Iterator[str]:
    """The URL of a new, empty database of `kind` for one run: a SQLite file in `folder`, or
    a throwaway PostgreSQL database (`throwaway_pg_database`), dropped when the block ends."""
    if kind == "sqlite":
        yield f"sqlite:///{folder}/{label}.sqlite"
        return
    url, drop = throwaway_pg_database(label)
    try:
        yield url
    finally:
        drop()
