"""Shared fixtures: a migrated database (SQLite or PostgreSQL), real Redis, app, clients.

KMEWEB_TEST_DB=sqlite|postgresql picks the database (make test runs both).
TEST_DATABASE_URL names the PostgreSQL server (a throwaway database is created
on it and dropped at the end); TEST_REDIS_URL the Redis database tests may flush.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_TMP = Path(tempfile.mkdtemp(prefix="kmeweb-tests-"))
# The run's SQLite database and instance folder go with it (up to 40 MB a run were left).
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
os.environ.setdefault("KMEWEB_INSTANCE_DIR", str(_TMP / "instance"))
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("KMEWEB_ENCRYPTION_KEY", "x6bTJp0Q2R9T9tqkT6v1wW1C7sGkKqN8s0u3Yh0v7lE=")

import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from flask import g, request_started  # noqa: E402

from kmeweb import create_app  # noqa: E402
from kmeweb.extensions import db  # noqa: E402
from tests import appcache  # noqa: E402
from tests.servers import serving, wsgi_server  # noqa: E402

appcache.install()

pytest_plugins = ("tests.sync_fixtures", "tests.oidc_fixtures")

TEST_DB = os.environ.get("KMEWEB_TEST_DB", "sqlite")
PG_SERVER_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
PASSWORD = "correct horse battery"


def pytest_report_header(config: pytest.Config) -> str:
    return f"kmeweb: database={TEST_DB} redis={TEST_REDIS_URL}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis database the tests own; a missing Redis fails the run, never skips it."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is required at {TEST_REDIS_URL} (make test starts one): {exc}")
    return TEST_REDIS_URL


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this run, built through the Alembic migrations."""
    if TEST_DB == "postgresql":
        name = f"kmeweb_test_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        except sa.exc.OperationalError as exc:
            pytest.fail(f"PostgreSQL is required at {PG_SERVER_URL}: {exc}")
        url = sa.engine.make_url(PG_SERVER_URL).set(database=name).render_as_string(False)
    else:
        url = f"sqlite:///{_TMP / 'test.sqlite'}"
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        db.engine.dispose()
    yield url
    if TEST_DB == "postgresql":
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _empty_tables() -> None:
    """Delete every row and restart the ids at 1, in one round trip on PostgreSQL.

    (TRUNCATE ... RESTART IDENTITY costs ~60 ms for the schema's tables even when they hold a
    few rows; DELETE and ALTER SEQUENCE ... RESTART cost ~12 ms.)
    """
    tables = list(reversed(db.metadata.sorted_tables))
    with db.engine.begin() as conn:
        if db.engine.dialect.name == "postgresql":
            sequences = conn.exec_driver_sql(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"
            ).scalars()
            conn.exec_driver_sql(
                ";".join(
                    [f'DELETE FROM "{t.name}"' for t in tables]
                    + [f'ALTER SEQUENCE "{name}" RESTART' for name in sequences]
                )
            )
        else:
            for table in tables:
                conn.execute(table.delete())


@pytest.fixture
def app_config(database_url: str, redis_url: str) -> dict:
    """Overrides for the app under test; tests may update it before `app` is built."""
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": redis_url,
        "RATELIMIT_STORAGE_URI": redis_url,
        "SERVER_NAME": None,
        # scrypt (the default) costs ~0.17 s per hash here and a signed-in test pays two;
        # the tests of the hash itself (tests/auth) ask for the default back.
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
    }


def _fresh_g(sender, **extra) -> None:
    """Each test request starts with an empty `g`, as in production.

    The fixture's app context outlives requests (tests share db.session with them), so
    without this Flask-Login's cached user and Flask-WTF's token would leak between requests.
    """
    g.__dict__.clear()


@pytest.fixture
def app(app_config: dict, redis_url: str):
    app = create_app(app_config)
    appcache.share_templates(app)
    redis.Redis.from_url(redis_url).flushdb()
    request_started.connect(_fresh_g, app)
    with app.app_context():
        yield app
        db.session.remove()
        _empty_tables()
        db.engine.dispose()


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """Serve the test app on a free loopback port in a thread; yields its base URL (the
    browser tests, and the API's property-based run)."""
    with serving(wsgi_server(app)) as url:
        yield url


@pytest.fixture
def session(app):
    return db.session


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|"X-CSRFToken": "([^"]+)"')


def csrf_token_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page carries no CSRF token"
    return match.group(1) or match.group(2)


class Actions:
    """Signs in through the real login form and posts with the page's CSRF token."""

    def __init__(self, client) -> None:
        self.client = client

    def token(self, path: str = "/auth/login") -> str:
        return csrf_token_from(self.client.get(path, follow_redirects=True).get_data(as_text=True))

    def login(self, email: str, password: str = PASSWORD):
        token = self.token()
        return self.client.post(
            "/auth/login", data={"email": email, "password": password, "csrf_token": token}
        )

    def post(self, path: str, data: dict | None = None, headers: dict | None = None, **kw):
        data = dict(data or {})
        token = self.token("/auth/login") if "csrf_token" not in data else data["csrf_token"]
        data["csrf_token"] = token
        return self.client.post(path, data=data, headers=headers, **kw)


@pytest.fixture
def make_admin(session) -> Callable:
    """make_admin(email=..., role=...) creates an account with the shared test password."""
    from kmeweb.auth import services

    def _make(email: str = "admin@example.com", role: str = "admin", **over):
        user, _ = services.create_admin(session, email, PASSWORD, role, over.get("name", ""))
        session.commit()
        return user

    return _make


@pytest.fixture
def actions(client) -> Actions:
    return Actions(client)


@pytest.fixture
def login(actions: Actions, make_admin) -> Callable:
    """login(role="admin") creates an account of that role and signs the client in."""

    def _login(role: str = "admin", email: str | None = None):
        user = make_admin(email or f"{role}@example.com", role)
        response = actions.login(user.email)
        assert response.status_code == 303, response.get_data(as_text=True)
        return user

    return _login


@pytest.fixture
def htmx(client):
    """A client whose requests carry HX-Request, as htmx sends them."""

    class _Htmx:
        def get(self, path: str, **kw):
            return client.get(path, headers={"HX-Request": "true"}, **kw)

        def post(self, path: str, **kw):
            return client.post(path, headers={"HX-Request": "true"}, **kw)

    return _Htmx()
