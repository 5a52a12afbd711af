"""/healthz and /readyz: public, cheap, no session cookie, nothing in the audit log; /readyz
names what failed (the database, Redis, the schema) without a URL or host."""

from __future__ import annotations

import socket

import sqlalchemy as sa

from kmeweb import create_app
from kmeweb.audit.models import AuditEvent
from kmeweb.extensions import db
from tests.factories import count_rows


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthz_and_readyz_answer_without_sign_in_session_or_audit(client, session, login):
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.get_json()["status"] == "ok"
        assert "Set-Cookie" not in response.headers
    assert client.get("/readyz").get_json()["checks"] == {"database": "ok", "redis": "ok"}
    login("admin")  # a signed-in browser's session cookie is not rewritten either
    before = count_rows(session, AuditEvent)
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert response.status_code == 200
        assert "Set-Cookie" not in response.headers
    assert count_rows(session, AuditEvent) == before


def test_readyz_is_503_naming_redis_when_redis_does_not_answer(app_config):
    port = _closed_port()
    app = create_app({**app_config, "REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body == {"status": "unavailable", "checks": {"database": "ok", "redis": "unreachable"}}
    assert str(port) not in response.get_data(as_text=True)
    with app.app_context():
        db.engine.dispose()


def test_readyz_is_503_naming_the_database_when_it_does_not_answer(app_config):
    port = _closed_port()
    url = f"postgresql+psycopg://kmeweb:hunter2secret@127.0.0.1:{port}/kmeweb"
    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "unreachable", "redis": "ok"}
    text = response.get_data(as_text=True)
    assert "hunter2secret" not in text and str(port) not in text and "127.0.0.1" not in text
    # /healthz makes no database call: it still answers.
    assert app.test_client().get("/healthz").status_code == 200


def test_readyz_is_503_while_the_schema_is_behind_the_code(app, client):
    with db.engine.begin() as conn:
        head = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0005'"))
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "latest migration" in response.get_json()["checks"]["database"]
    finally:
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    assert client.get("/readyz").status_code == 200
