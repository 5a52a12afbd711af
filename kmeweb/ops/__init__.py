"""Operator endpoints: /healthz, /readyz and /metrics (public, cheap, no session, no audit)."""

from __future__ import annotations

import hmac
from functools import cache

from alembic.script import ScriptDirectory
from flask import Blueprint, Response, current_app, jsonify, request
from redis import Redis
from sqlalchemy import text

import config
from kmeweb.extensions import db
from kmeweb.ops.metrics import CONTENT_TYPE, render

bp = Blueprint("ops", __name__)

#: Endpoints that answer without sign-in (kmeweb.security.PUBLIC_ENDPOINTS lists them).
PUBLIC = {"ops.healthz", "ops.readyz", "ops.metrics"}


@bp.get("/healthz")
def healthz():
    """200 while this process serves requests; touches neither the database nor Redis."""
    return _plain({"status": "ok"}, 200)


@bp.get("/readyz")
def readyz():
    """200 when the database answers at the Alembic head and Redis answers; else 503 naming
    what failed (never a URL, host or secret)."""
    checks = {"database": check_database(), "redis": _check_redis()}
    ok = all(value == "ok" for value in checks.values())
    return _plain({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)


@bp.get("/metrics", endpoint="metrics")
def prometheus_metrics():
    """Prometheus text format; with KMEWEB_METRICS_TOKEN set, only for `Bearer <token>`."""
    token = current_app.config.get("METRICS_TOKEN") or ""
    if token:
        sent = request.headers.get("Authorization", "")
        scheme, _, value = sent.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), token):
            response = _plain({"error": "a bearer token is required"}, 401)
            response.headers["WWW-Authenticate"] = 'Bearer realm="kmeweb metrics"'
            return response
    return Response(render(), 200, content_type=CONTENT_TYPE, headers=_NO_STORE)


_NO_STORE = {"Cache-Control": "no-store"}


def _plain(body: dict, status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(_NO_STORE)
    return response


@cache
def _alembic_heads() -> frozenset[str]:
    """The migration heads shipped with this code (read once per process)."""
    return frozenset(ScriptDirectory(str(config.BASE_DIR / "migrations")).get_heads())


def check_database() -> str:
    """ "ok", or why the database cannot serve: unreachable, or its schema not at the head."""
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            try:
                rows = conn.execute(text("SELECT version_num FROM alembic_version"))
                versions = {row[0] for row in rows}
            except Exception:  # noqa: BLE001 - no version table: never migrated
                return "schema not migrated"
    except Exception:  # noqa: BLE001 - the reason may name the host: say only that it failed
        current_app.logger.warning("readyz: database unreachable")
        return "unreachable"
    if versions != _alembic_heads():
        return "schema not at the latest migration (run flask db upgrade)"
    return "ok"


_redis_clients: dict[str, Redis] = {}


def _check_redis() -> str:
    url = current_app.config["REDIS_URL"]
    client = _redis_clients.get(url)
    if client is None:
        client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        _redis_clients[url] = client
    try:
        client.ping()
    except Exception:  # noqa: BLE001 - as above: no URL in the answer
        current_app.logger.warning("readyz: Redis unreachable")
        return "unreachable"
    return "ok"
