"""kmeweb: a self-hosted console for Samsung Knox Mobile Enrollment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, flash, redirect, request, url_for
from flask_login import current_user
from werkzeug.routing import IntegerConverter, Map

import config
from kmeweb.extensions import csrf, db, limiter, login_manager, migrate
from kmeweb.extensions import htmx as htmx_ext

ROOT = Path(__file__).resolve().parent.parent

# Endpoints reachable without signing in; every other URL rule requires login.
# /healthz, /readyz and /metrics (which checks its own bearer token) are kmeweb.ops.PUBLIC.
PUBLIC_ENDPOINTS = {
    "auth.login",
    "auth.login_post",
    "static",
    "favicon",
    "ops.healthz",
    "ops.readyz",
    "ops.metrics",
}
PUBLIC_BLUEPRINTS = {"enroll"}
# State changes a viewer may still make (its own session).
VIEWER_WRITABLE = {"auth.logout"}

# The largest id the database's integer columns hold (PostgreSQL INTEGER).
MAX_DB_INT = 2**31 - 1

FORM_MIMETYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}

# Scripts, styles and images only from this origin: no inline script, no style="" and no
# <style> in templates (htmx's own indicator <style> is off in base.html), no eval.
# data: images are Bootstrap's CSS icons (select arrow, checkbox tick, navbar toggler).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

# Top navigation, in console order; entries appear once their endpoint exists.
# Entries of one section (Admin) share a dropdown on the bar.
NAV: list[tuple[str, str, str]] = [
    ("Overview", "Overview", "overview.index"),
    ("Devices", "Bulk Enrollment", "profiles.index"),
    ("Operations", "Operations", "operations.index"),
    ("Audit log", "Audit log", "audit.index"),
    ("Admin", "Knox Integration", "integration.index"),
    ("Admin", "Users", "directory.index"),
    ("Admin", "Alerts", "alerts.index"),
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
    _configure_logging(app)
    _configure_pool(app)

    db.init_app(app)
    _configure_sqlite(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    htmx_ext.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"

    from kmeweb import models  # noqa: F401  (every table registered before use)
    from kmeweb.auth.models import AdminUser

    @login_manager.user_loader
    def _load_user(alternative_id: str) -> AdminUser | None:
        """The account of a session or remember-me cookie, while its session token is current."""
        user_id, _, token = alternative_id.partition(".")
        if not user_id.isdigit() or not token or int(user_id) > MAX_DB_INT:
            return None
        user = db.session.get(AdminUser, int(user_id))
        if user is None or not user.active or not user.matches_session(token):
            return None
        return user

    @login_manager.unauthorized_handler
    def _sign_in_first():
        """htmx gets 401 + HX-Redirect (the whole page goes to sign-in); a page, a redirect."""
        from kmeweb.htmx import current_page_path, is_htmx, sign_in_again

        if is_htmx() or htmx_ext.boosted:
            return sign_in_again(url_for("auth.login", next=current_page_path()))
        flash(login_manager.login_message, login_manager.login_message_category)
        next_path = request.full_path if request.query_string else request.path
        return redirect(url_for("auth.login", next=next_path))

    from kmeweb.ops import bp as ops_bp
    from kmeweb.ops import metrics as ops_metrics

    # First, so every request is counted and timed, including those answered by a check below.
    ops_metrics.init_app(app)
    app.register_blueprint(ops_bp)
    # Browsers ask for /favicon.ico whatever the page links: the same icon, not a 404.
    app.add_url_rule(
        "/favicon.ico", "favicon", lambda: app.send_static_file("favicon.svg"), methods=["GET"]
    )

    from kmeweb.alerts.views import bp as alerts_bp
    from kmeweb.audit.views import bp as audit_bp
    from kmeweb.auth.views import bp as auth_bp
    from kmeweb.devices.views import bp as devices_bp
    from kmeweb.directory.views import bp as directory_bp
    from kmeweb.enroll.views import bp as enroll_bp
    from kmeweb.integration.views import bp as integration_bp
    from kmeweb.operations.views import bp as operations_bp
    from kmeweb.overview.views import bp as overview_bp
    from kmeweb.profiles.views import bp as profiles_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(overview_bp)
    app.register_blueprint(alerts_bp)
    app.register_blueprint(integration_bp)
    app.register_blueprint(operations_bp)
    app.register_blueprint(audit_bp)
    app.register_blueprint(profiles_bp)
    app.register_blueprint(devices_bp)
    app.register_blueprint(directory_bp)
    app.register_blueprint(enroll_bp)

    from kmeweb.errors import register_error_handlers

    register_error_handlers(app)
    _register_security(app)
    _register_template_helpers(app)

    from kmeweb.cli import register_cli

    register_cli(app)

    from kmeweb.enroll.lane import EnrollLane

    # The device side's own lane, inside ProxyFix (which must see every request first).
    app.wsgi_app = EnrollLane(app, app.wsgi_app)  # type: ignore[method-assign]
    _configure_proxy(app)
    return app


def _configure_logging(app: Flask) -> None:
    from kmeweb.logs import configure

    configure(app)


def _configure_pool(app: Flask) -> None:
    """The pool hands out the connection returned last (LIFO): its caches are warm, and under
    light load one connection serves nearly every request. SQLite drops a connection's whole
    page cache when another connection has written, so a round-robin pool (SQLAlchemy's
    default) made each thread's request start cold: enrollments as bench/enroll.py sends them
    (4 threads, 8 clients) went from 405 to 510 per second. An in-memory SQLite database has
    no such pool."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite") and (
        ":memory:" in uri or "mode=memory" in uri or uri.endswith("://")
    ):
        return
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    options.setdefault("pool_use_lifo", True)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def _configure_proxy(app: Flask) -> None:
    """Behind KMEWEB_PROXY_HOPS trusted proxies, the client address and scheme come from their
    X-Forwarded-For/-Proto; with 0 (no proxy) a client-sent X-Forwarded-For is ignored."""
    hops = int(app.config.get("PROXY_HOPS", 0))
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]


def _configure_sqlite(app: Flask) -> None:
    """WAL and a busy timeout let the web process and a worker share one SQLite file."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    from sqlalchemy import event

    with app.app_context():
        engine = db.engine
        database = engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            # Created owner-only before SQLite makes it (its -wal and -shm files copy the mode).
            path = Path(database)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
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


def _has_nul(pairs) -> bool:
    return any("\x00" in key or "\x00" in value for key, value in pairs)


def _register_security(app: Flask) -> None:
    @app.before_request
    def _refuse_nul_bytes():
        """NUL in text is never meant, and PostgreSQL refuses it: a 400, not a 500."""
        if "\x00" in request.path or _has_nul(request.args.items(multi=True)):
            abort(400, "Text may not contain NUL characters.")
        if request.method != "GET" and request.mimetype in FORM_MIMETYPES:
            if _has_nul(request.form.items(multi=True)):
                abort(400, "Text may not contain NUL characters.")

    @app.before_request
    def _require_login_and_role():
        endpoint = request.endpoint
        if endpoint is None:
            return None  # unknown URL: the 404 handler answers
        if endpoint in PUBLIC_ENDPOINTS or request.blueprint in PUBLIC_BLUEPRINTS:
            return None
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if request.method not in ("GET", "HEAD", "OPTIONS") and endpoint not in VIEWER_WRITABLE:
            if not current_user.can_write:
                abort(403, "Your role can look but not change anything.")
        return None

    app.after_request(security_headers)


def security_headers(response: Response) -> Response:
    """The headers every answer carries (after_request, and the enrollment lane's)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    return response


def _register_template_helpers(app: Flask) -> None:
    @app.context_processor
    def _nav() -> dict[str, Any]:
        entries = [(s, label, ep) for s, label, ep in NAV if ep in app.view_functions]
        # [(section, [(label, endpoint), ...]), ...] in order; a section of one is a plain link.
        groups: list[tuple[str, list[tuple[str, str]]]] = []
        for section, label, endpoint in entries:
            if groups and groups[-1][0] == section:
                groups[-1][1].append((label, endpoint))
            else:
                groups.append((section, [(label, endpoint)]))
        return {"nav_entries": entries, "nav_groups": groups}

    @app.template_filter("dt")
    def _format_dt(value) -> str:
        if value is None:
            return "—"
        return value.strftime("%Y-%m-%d %H:%M UTC")
