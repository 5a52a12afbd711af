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
Elsewhere (SQLite) the lane uses the app's engine.
"""

from __future__ import annotations

import os
import threading

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import Engine, event

from kmeweb.extensions import db

_KEY = "kmeweb.enroll.engine"
_LOCK = threading.Lock()
_PLAN_MODE = "plan_cache_mode=force_custom_plan"


def lane_engine() -> Engine:
    """The engine for the device lane's statements (see the module docstring)."""
    extensions = current_app.extensions
    engine = extensions.get(_KEY)
    if engine is None:
        with _LOCK:
            engine = extensions.get(_KEY)
            if engine is None:
                engine = extensions[_KEY] = _make(db.engine)
    return engine


def _make(app_engine: Engine) -> Engine:
    if app_engine.dialect.name != "postgresql":
        return app_engine
    options = dict(current_app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    connect_args = dict(options.get("connect_args") or {})
    given = connect_args.get("options", "")
    connect_args["options"] = " ".join(given.replace(f"-c {_PLAN_MODE}", "").split())
    if not connect_args["options"]:
        del connect_args["options"]
    options["connect_args"] = connect_args
    engine = sa.create_engine(app_engine.url, **options)
    made_in = os.getpid()

    @event.listens_for(app_engine, "engine_disposed")
    def _dispose_with_the_app_engine(_engine: Engine) -> None:
        # A forked child (the worker's job process) disposes the app's engine without closing
        # the connections it shares with its parent; closing them would end the parent's.
        engine.dispose(close=os.getpid() == made_in)

    return engine
