"""The database engine the device lane runs its statements on.

On PostgreSQL every connection of the app's pool plans each statement for the values it runs
with (`plan_cache_mode=force_custom_plan`, see `_configure_pool` in kmeweb/__init__.py): a
generic plan costed on a table that has grown since once scanned 180,000 devices per page of
the pull. Planning costs the server about as much as running a one-row statement, and the
device lane runs nothing but one-row statements by unique key (the device by IMEI or serial,
its profile and user by id, the registration by device id, the profile by its token), whose
generic plan is the custom plan: planning each of them again was half of PostgreSQL's CPU per
enrollment (bench/enroll.py's enroll_db_cpu_us_pg: 899 us, 421 us with generic plans).

So on PostgreSQL the lane has a pool of its own, on the same database with the same options,
whose connections leave the plan mode at PostgreSQL's default (`auto`: psycopg prepares a
statement on its fifth run, and the server then keeps one plan for it). Nothing else runs on
it. It is made on first use, in the process that serves (never before a fork), and disposed
with the app's engine (in a forked child, without closing the parent's connections).
Elsewhere (SQLite) the lane uses the app's engine. On both, the lane keeps the connections it
used between enrollments (`_Lane`).

On SQLite the process's enrollments also take turns (`lane_transaction`): SQLite lets one
connection write at a time, and a connection that finds the file locked waits in SQLite's busy
handler, which sleeps 1 to 100 ms between tries instead of waking when the writer is done. With
four threads enrolling (bench/enroll.py under `perf trace`), each thread slept in it 584 times
in 8 s, 6.4 ms on average: nearly half of its time. A lock hands the turn on at once, and the
connection that keeps getting it keeps a warm page cache (SQLite drops a connection's cache
when another connection has written; the same trace read pages with pread 10,000 times per
thread, none with the lock). Other processes (a second web process, the worker) still meet in
SQLite's busy handler.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import Connection, Engine, event
from sqlalchemy.pool import QueuePool

from kmeweb.extensions import FORCE_CUSTOM_PLAN, db

_KEY = "kmeweb.enroll.engine"
_LOCK = threading.Lock()


class _Lane:
    """The lane's engine, and the connections it keeps between enrollments: checking a
    connection out of SQLAlchemy's pool and back in cost 6% (SQLite) to 12% (PostgreSQL) of
    the lane's CPU per enrollment, so the lane keeps the ones it used, last used first (on
    SQLite the connection used last has the warmest page cache: see `_configure_pool`). Only
    from a QueuePool, whose connections may go from thread to thread: an in-memory SQLite
    database's pool gives each thread a connection of its own, or one to all, and is left to."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.keeps = isinstance(engine.pool, QueuePool)
        self.idle: list[Connection] = []
        self.lock = threading.Lock()
        self.made_in = os.getpid()
        # SQLite: one enrollment's transaction at a time in this process (module docstring).
        self.turn: AbstractContextManager = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
        )

    def take(self) -> Connection:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        conn = self.engine.connect()
        if conn.dialect.name == "postgresql":
            # Every write of an enrollment is one statement, atomic on its own (a
            # registration, its audit event, history row and count are one statement): no
            # BEGIN and COMMIT round trips to PostgreSQL.
            conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn

    def give_back(self, conn: Connection) -> None:
        if not self.keeps or conn.closed or conn.invalidated or conn.in_transaction():
            conn.close()  # a lost connection, or one left in a state not to reuse
            return
        with self.lock:
            self.idle.append(conn)

    def dispose(self) -> None:
        """Forget the kept connections; close them in the process that opened them (a
        forked child, the worker's job process, shares them with its parent)."""
        with self.lock:
            idle, self.idle = self.idle, []
        if os.getpid() == self.made_in:
            for conn in idle:
                conn.invalidate()  # closed now, not returned to a pool being disposed
                conn.close()


def _lane() -> _Lane:
    extensions = current_app.extensions
    lane = extensions.get(_KEY)
    if lane is None:
        with _LOCK:
            lane = extensions.get(_KEY)
            if lane is None:
                lane = extensions[_KEY] = _make(db.engine)
    return lane


@contextmanager
def lane_transaction() -> Iterator[Connection]:
    """A connection for one enrollment, from those the lane keeps (see `_Lane`), in a
    transaction committed when the block ends and rolled back when it raises; on PostgreSQL in
    autocommit (each of the lane's writes is one statement). On SQLite the block waits for its
    turn (the module docstring)."""
    lane = _lane()
    with lane.turn:
        conn = lane.take()
        try:
            with conn.begin():
                yield conn
        finally:
            lane.give_back(conn)


def _make(app_engine: Engine) -> _Lane:
    if app_engine.dialect.name != "postgresql":
        lane = _Lane(app_engine)
    else:
        options = dict(current_app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        connect_args = dict(options.get("connect_args") or {})
        given = connect_args.get("options", "")
        connect_args["options"] = " ".join(given.replace(FORCE_CUSTOM_PLAN, "").split())
        if not connect_args["options"]:
            del connect_args["options"]
        options["connect_args"] = connect_args
        lane = _Lane(sa.create_engine(app_engine.url, **options))

    @event.listens_for(app_engine, "engine_disposed")
    def _dispose_with_the_app_engine(_engine: Engine) -> None:
        lane.dispose()
        if lane.engine is not app_engine:
            # A forked child (the worker's job process) disposes the app's engine without
            # closing the connections it shares with its parent; closing them would end the
            # parent's.
            lane.engine.dispose(close=os.getpid() == lane.made_in)

    return lane
