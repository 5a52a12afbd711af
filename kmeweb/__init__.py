"""kmeweb: a self-hosted console for Samsung Knox Mobile Enrollment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask
from flask_login import current_user
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

import config
import kmeweb.models  # noqa: F401  (every table registered before use)
from kmeweb import logs, security
from kmeweb.auth import oidc
from kmeweb.cli import register_cli
from kmeweb.csvimport import size_text
from kmeweb.devices.models import KmeState
from kmeweb.enroll.lane import EnrollLane
from kmeweb.errors import register_error_handlers
from kmeweb.extensions import FORCE_CUSTOM_PLAN, csrf, db, limiter, migrate
from kmeweb.extensions import htmx as htmx_ext
from kmeweb.ids import MAX_DB_INT
from kmeweb.operations.models import OperationStatus
from kmeweb.ops import metrics as ops_metrics
from kmeweb.outbox.models import SyncState
from kmeweb.profiles.models import ProfileKind

ROOT = Path(__file__).resolve().parent.parent

# Top navigation, in console order; entries appear once their endpoint exists.
# Entries of one section (Admin) share a dropdown on the bar.
NAV: list[tuple[str, str, str]] = [
    ("Overview", "Overview", "overview.index"),
    ("Devices", "Bulk Enrollment", "profiles.index"),
    ("Operations", "Operations", "operations.index"),
    ("Audit log", "Audit log", "audit.index"),
    ("Admin", "Knox Integration", "integration.index"),
    ("Admin", "Routing rules", "rules.index"),
    ("Admin", "Users", "directory.index"),
    ("Admin", "Alerts", "alerts.index"),
    ("Admin", "Accounts", "accounts.index"),
    ("Admin", "API tokens", "apitokens.index"),
    ("Admin", "API reference", "apidocs.index"),
]


class DatabaseIntConverter(IntegerConverter):
    """`<int:...>` bounded to what the database's integer columns hold."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_DB_INT)
        super().__init__(url_map, *args, **kwargs)


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the web application; the only place an app is made."""
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(config.INSTANCE_DIR),
    )
    # Ids past the database's integer range are no match (404), never a database error.
    app.url_map.converters["int"] = DatabaseIntConverter
    app.config.from_mapping(config.from_env())
    if overrides:
        app.config.from_mapping(overrides)
    logs.configure(app)
    _configure_pool(app)

    db.init_app(app)
    _configure_sqlite(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    htmx_ext.init_app(app)
    limiter.init_app(app)
    security.init_sign_in(app)
    oidc.init_app(app)

    # First, so every request is counted and timed, including those answered by a check below.
    ops_metrics.init_app(app)
    # Browsers ask for /favicon.ico whatever the page links: the same icon, not a 404.
    app.add_url_rule(
        "/favicon.ico", "favicon", lambda: app.send_static_file("favicon.svg"), methods=["GET"]
    )

    from kmeweb import api
    from kmeweb.alerts.views import bp as alerts_bp
    from kmeweb.apidocs.views import bp as apidocs_bp
    from kmeweb.apitokens.views import bp as api_tokens_bp
    from kmeweb.audit.views import bp as audit_bp
    from kmeweb.auth.account_views import bp as accounts_bp
    from kmeweb.auth.views import bp as auth_bp
    from kmeweb.devices.device_views import bp as device_bp
    from kmeweb.devices.history_views import bp as history_bp
    from kmeweb.devices.views import bp as devices_bp
    from kmeweb.directory.views import bp as directory_bp
    from kmeweb.enroll.views import bp as enroll_bp
    from kmeweb.integration.views import bp as integration_bp
    from kmeweb.operations.views import bp as operations_bp
    from kmeweb.ops import bp as ops_bp
    from kmeweb.overview.views import bp as overview_bp
    from kmeweb.profiles.views import bp as profiles_bp
    from kmeweb.rules.views import bp as rules_bp

    app.register_blueprint(ops_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(overview_bp)
    app.register_blueprint(alerts_bp)
    app.register_blueprint(integration_bp)
    app.register_blueprint(operations_bp)
    app.register_blueprint(audit_bp)
    app.register_blueprint(profiles_bp)
    app.register_blueprint(devices_bp)
    app.register_blueprint(history_bp)
    app.register_blueprint(device_bp)
    app.register_blueprint(directory_bp)
    app.register_blueprint(enroll_bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(api_tokens_bp)
    app.register_blueprint(apidocs_bp)
    app.register_blueprint(rules_bp)
    api.init_app(app)

    from kmeweb.integration.routing import route_uploads
    from kmeweb.sync.hooks import register_uploads_hook

    # The pull (here and in the worker, which builds its app here too) calls it after each pull.
    register_uploads_hook(app, route_uploads)

    register_error_handlers(app)
    security.init_app(app)
    _register_template_helpers(app)
    register_cli(app)

    # The device side's own lane, inside ProxyFix (which must see every request first).
    app.wsgi_app = EnrollLane(app, app.wsgi_app)  # type: ignore[method-assign]
    _configure_proxy(app)
    return app


def _configure_pool(app: Flask) -> None:
    """The pool hands out the connection returned last (LIFO): its caches are warm, and under
    light load one connection serves nearly every request. SQLite drops a connection's whole
    page cache when another connection has written, so a round-robin pool (SQLAlchemy's
    default) made each thread's request start cold: enrollments as bench/enroll.py sends them
    (4 threads, 8 clients) went from 405 to 510 per second. An in-memory SQLite database has
    no such pool. On PostgreSQL every statement is also planned for its own values (below)."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite") and (
        ":memory:" in uri or "mode=memory" in uri or uri.endswith("://")
    ):
        return
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    options.setdefault("pool_use_lifo", True)
    if uri.startswith("postgresql"):
        # Plan every statement for the values it runs with. psycopg prepares a statement on
        # the server after 5 executions, and PostgreSQL may then keep one generic plan for it,
        # costed on the table as it was. The pull's lookup of a page's 1,000 KME ids, prepared
        # while the device table was small, ran a generic plan that scanned the whole table
        # and searched its 1,000 parameters one by one for each row: 6 s per page at 180,000
        # devices (a custom plan hashes the values: 0.04 s), until an ANALYZE invalidated it
        # (never, on a server with autovacuum off). A custom plan costs about a millisecond.
        connect_args = dict(options.get("connect_args") or {})
        given = connect_args.get("options", "")
        if "plan_cache_mode" not in given:
            connect_args["options"] = f"{given} {FORCE_CUSTOM_PLAN}".strip()
        options["connect_args"] = connect_args
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def _configure_proxy(app: Flask) -> None:
    """Behind KMEWEB_PROXY_HOPS trusted proxies, the client address and scheme come from their
    X-Forwarded-For/-Proto; with 0 (no proxy) a client-sent X-Forwarded-For is ignored."""
    hops = int(app.config.get("PROXY_HOPS", 0))
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]


def _configure_sqlite(app: Flask) -> None:
    """WAL and a busy timeout let the web process and a worker share one SQLite file."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    with app.app_context():
        engine = db.engine
        database = engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            # Created owner-only before SQLite makes it (its -wal and -shm files copy the mode).
            # Only when it does not exist yet: closing any descriptor of a file drops every POSIX
            # lock this process holds on it, SQLite's included, so opening and closing an
            # existing database here, beside a live connection (a second app in the process:
            # each test builds one), let another process write under its feet and corrupted it.
            path = Path(database)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                except FileExistsError:  # another process made it first
                    pass
            path.chmod(0o600)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # 64 MB page cache: bulk inserts into the device indexes stay in memory.
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.close()


def _register_template_helpers(app: Flask) -> None:
    # Templates compare with the members (kind == ProfileKind.KME), never with bare strings.
    app.jinja_env.globals.update(
        ProfileKind=ProfileKind,
        OperationStatus=OperationStatus,
        SyncState=SyncState,
        KmeState=KmeState,
    )

    @app.context_processor
    def _nav() -> dict[str, Any]:
        admin = current_user.is_authenticated and current_user.can_write
        entries = [
            (s, label, ep)
            for s, label, ep in NAV
            if ep in app.view_functions
            and (admin or ep.partition(".")[0] not in security.ADMIN_ONLY_BLUEPRINTS)
        ]
        # [(section, [(label, endpoint), ...]), ...] in order; a section of one is a plain link.
        groups: list[tuple[str, list[tuple[str, str]]]] = []
        for section, label, endpoint in entries:
            if groups and groups[-1][0] == section:
                groups[-1][1].append((label, endpoint))
            else:
                groups.append((section, [(label, endpoint)]))
        return {"nav_entries": entries, "nav_groups": groups}

    app.add_template_filter(size_text, "size")  # a byte limit as admins read it: "20 MB"

    @app.template_filter("dt")
    def _format_dt(value) -> str:
        if value is None:
            return "—"
        return value.strftime("%Y-%m-%d %H:%M UTC")
