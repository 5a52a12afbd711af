"""kmeweb: a self-hosted console for Samsung Knox Mobile Enrollment."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, abort, redirect, request, url_for
from flask_login import current_user

import config
from kmeweb.extensions import csrf, db, limiter, login_manager, migrate
from kmeweb.extensions import htmx as htmx_ext

ROOT = Path(__file__).resolve().parent.parent

# Endpoints reachable without signing in; every other URL rule requires login.
PUBLIC_ENDPOINTS = {"auth.login", "auth.login_post", "static"}
PUBLIC_BLUEPRINTS = {"enroll"}
# State changes a viewer may still make (its own session).
VIEWER_WRITABLE = {"auth.logout"}

# Scripts, styles and images only from this origin: no inline script, no style="" and no
# <style> in templates (htmx's own indicator <style> is off in base.html), no eval.
# data: images are Bootstrap's CSS icons (select arrow, checkbox tick, navbar toggler).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

# Top navigation, in console order; entries appear once their endpoint exists.
NAV: list[tuple[str, str, str]] = [
    ("Admin", "Knox Integration", "integration.index"),
    ("Devices", "Bulk Enrollment", "profiles.index"),
    ("Operations", "Operations", "operations.index"),
    ("Audit log", "Audit log", "audit.index"),
]


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the web application; the only place an app is made."""
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(config.INSTANCE_DIR),
    )
    app.config.from_mapping(config.from_env())
    if overrides:
        app.config.from_mapping(overrides)
    _configure_logging(app)

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
    def _load_user(user_id: str) -> AdminUser | None:
        user = db.session.get(AdminUser, int(user_id))
        return user if user is not None and user.active else None

    from kmeweb.audit.views import bp as audit_bp
    from kmeweb.auth.views import bp as auth_bp
    from kmeweb.operations.views import bp as operations_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(operations_bp)
    app.register_blueprint(audit_bp)

    from kmeweb.errors import register_error_handlers

    register_error_handlers(app)
    _register_security(app)
    _register_template_helpers(app)

    @app.get("/")
    def home():
        """Send a signed-in admin to the first section of the console."""
        for _section, _label, endpoint in NAV:
            if endpoint in app.view_functions:
                return redirect(url_for(endpoint))
        abort(404)

    from kmeweb.cli import register_cli

    register_cli(app)
    return app


def _configure_logging(app: Flask) -> None:
    if not app.debug and not app.testing:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


def _configure_sqlite(app: Flask) -> None:
    """WAL and a busy timeout let the web process and a worker share one SQLite file."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    from sqlalchemy import event

    with app.app_context():
        engine = db.engine

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


def _register_security(app: Flask) -> None:
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
                abort(403, "Your role (viewer) can look but not change anything.")
        return None

    @app.after_request
    def _security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


def _register_template_helpers(app: Flask) -> None:
    @app.context_processor
    def _nav() -> dict[str, Any]:
        entries = [(s, label, ep) for s, label, ep in NAV if ep in app.view_functions]
        return {"nav_entries": entries}

    @app.template_filter("dt")
    def _format_dt(value) -> str:
        if value is None:
            return "—"
        return value.strftime("%Y-%m-%d %H:%M UTC")
