"""The README's backup and restore, rehearsed on PostgreSQL: pg_dump, drop the database,
create it again, pg_restore, start the app on it: every page answers, the stored Knox secret
still decrypts, and a pull works."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid

import pytest
import redis
import sqlalchemy as sa

from kmeweb import create_app
from kmeweb.extensions import db
from kmeweb.integration.models import Upload
from kmeweb.operations.models import Operation
from kmeweb.operations.queue import run_worker
from kmeweb.profiles.models import Profile
from kmeweb.sync.jobs import start_pull
from tests.conftest import PASSWORD, PG_SERVER_URL, TEST_DB, csrf_token_from
from tests.sync_fixtures import SYNC_CONFIG, kme_profile

pytestmark = pytest.mark.skipif(
    TEST_DB != "postgresql",
    reason="backup and restore use pg_dump and pg_restore (the PostgreSQL half of make test)",
)


def _pg_args(url: sa.engine.URL) -> list[str]:
    args = [
        "-h",
        url.host or "127.0.0.1",
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "postgres",
    ]
    return args


def _run(cmd: list[str], password: str | None) -> None:
    env = {"PATH": "/usr/bin:/bin", **({"PGPASSWORD": password} if password else {})}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (cmd[0], result.stderr)


def _app(url: str, redis_url: str):
    return create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "REDIS_URL": redis_url,
            "RATELIMIT_STORAGE_URI": redis_url,
            **SYNC_CONFIG,
        }
    )


def _pull(app) -> Operation:
    operation = start_pull(db.session, "test")
    db.session.commit()
    run_worker(app, burst=True, with_scheduler=False)
    db.session.expire_all()
    return db.session.get(Operation, operation.id)


def test_pg_dump_drop_restore_and_everything_works(redis_url, sim, tmp_path):
    for tool in ("pg_dump", "pg_restore"):
        assert shutil.which(tool), f"{tool} is required (apt-get install postgresql-client)"
    server = sa.engine.make_url(PG_SERVER_URL)
    name = f"kmeweb_restore_{uuid.uuid4().hex[:8]}"
    url = server.set(database=name).render_as_string(False)
    admin = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    redis.Redis.from_url(redis_url).flushdb()
    dump = tmp_path / "kmeweb.dump"
    try:
        app = _app(url, redis_url)
        with app.app_context():
            from flask_migrate import upgrade

            from kmeweb.auth import services as auth

            upgrade()
            auth.create_admin(db.session, "ops@example.com", PASSWORD, "admin", "Ops")
            _configure(sim)
            kme_profile(db.session, "Restored sales")
            db.session.commit()
            assert _pull(app).status == "done"
            uploads = db.session.scalar(sa.select(sa.func.count()).select_from(Upload))
            db.session.remove()
            db.engine.dispose()

        # Nightly backup, then the database is lost.
        _run(
            ["pg_dump", *_pg_args(server), "--format=custom", f"--file={dump}", name],
            server.password,
        )
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        _run(
            ["pg_restore", *_pg_args(server), f"--dbname={name}", "--no-owner", str(dump)],
            server.password,
        )

        redis.Redis.from_url(redis_url).flushdb()  # Redis held nothing that matters
        restored = _app(url, redis_url)
        with restored.app_context():
            from flask_migrate import upgrade

            upgrade()  # what the README says to run after a restore: a no-op at the head
            client = restored.test_client()
            token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
            signed_in = client.post(
                "/auth/login",
                data={"email": "ops@example.com", "password": PASSWORD, "csrf_token": token},
            )
            assert signed_in.status_code == 303
            checked = _every_page(restored, client)
            assert checked >= 8
            assert db.session.scalar(sa.select(sa.func.count()).select_from(Upload)) == uploads
            from kmeweb import crypto
            from kmeweb.integration.models import get_integration

            assert (
                crypto.decrypt(get_integration(db.session).secret_enc)
                == sim.creds["oauth_client_secret"]
            )
            assert _pull(restored).status == "done"
            assert client.get("/readyz").status_code == 200
            db.session.remove()
            db.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _every_page(app, client) -> int:
    """GET every page without arguments, and the pages of each profile and upload."""
    paths = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api."):
            continue  # the JSON API answers bearer tokens, not the console session
        if rule.endpoint.startswith("auth.oidc"):
            continue  # sign-in with an identity provider: none is set up here (404)
        if "GET" in rule.methods and not rule.arguments and rule.endpoint != "static":
            paths.append(rule.rule)
    for profile_id in db.session.scalars(sa.select(Profile.id)):
        paths.append(f"/profiles/{profile_id}")
    for upload_id in db.session.scalars(sa.select(Upload.id)):
        paths.append(f"/integration/uploads/{upload_id}")
    for path in paths:
        response = client.get(path)
        assert response.status_code in (200, 302), (path, response.status_code)
        if response.status_code == 302:
            assert not re.match(r"/auth/login", response.headers["Location"]), path
    return len(paths)


def _configure(sim) -> None:
    from kmeweb.integration import activation, settings
    from tests.sync_fixtures import simulator_settings

    settings.save_settings(
        db.session,
        simulator_settings(sim, "KME"),
        "test",
    )
    activation.activate_integration(db.session, "test")
