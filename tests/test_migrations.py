"""The schema is built by Alembic migrations, they match the models, and an operator can roll
each one back (with data in the tables) and forward again, on SQLite and PostgreSQL."""

import uuid
from collections.abc import Callable

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from kmeweb.extensions import db
from tests.conftest import PG_SERVER_URL, TEST_DB


def test_migrations_match_models(app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == [], f"models and migrations differ; run `flask db migrate`: {diff}"


def test_schema_was_built_by_migrations(app):
    with db.engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert version is not None


def _fresh_database_url(tmp_path) -> tuple[str, Callable[[], None]]:
    """A database of its own (the shared test database must stay at head)."""
    if TEST_DB != "postgresql":
        return f"sqlite:///{tmp_path / 'migrations.sqlite'}", lambda: None
    name = f"kmeweb_migr_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return sa.engine.make_url(PG_SERVER_URL).set(database=name).render_as_string(False), drop


def _counts(tables: tuple[str, ...]) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {t: conn.exec_driver_sql(f'SELECT COUNT(*) FROM "{t}"').scalar() for t in tables}


def test_every_migration_downgrades_and_upgrades_again_with_data(tmp_path):
    from alembic.script import ScriptDirectory
    from flask_migrate import downgrade, upgrade

    from kmeweb import create_app
    from tests.factories import make_device, make_profile, make_upload

    url, drop = _fresh_database_url(tmp_path)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    try:
        with app.app_context():
            upgrade()
            session = db.session
            profile = make_profile(session, name="Survives rollbacks")
            upload = make_upload(session)
            for _ in range(3):
                make_device(session, profile, upload_id=upload.id)
            session.commit()
            session.remove()
            kept = ("profile", "reseller", "upload", "device")
            before = _counts(kept)
            assert before == {"profile": 1, "reseller": 1, "upload": 1, "device": 3}
            script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
            revisions = list(script.walk_revisions())  # head first
            assert [r.revision for r in revisions][-1] == "0001"
            for rev in revisions:
                if rev.down_revision is None:
                    continue  # below the first migration there are no tables to keep data in
                downgrade(revision=rev.down_revision)
                with db.engine.connect() as conn:
                    version = conn.exec_driver_sql("SELECT version_num FROM alembic_version")
                    assert version.scalar() == rev.down_revision
                assert _counts(kept) == before, f"rows lost downgrading {rev.revision}"
                upgrade()
                assert _counts(kept) == before, f"rows lost upgrading {rev.revision} again"
            with db.engine.connect() as conn:
                context = MigrationContext.configure(conn, opts={"compare_type": True})
                assert compare_metadata(context, db.metadata) == []
            downgrade(revision="base")
            assert "device" not in sa.inspect(db.engine).get_table_names()
            upgrade()
            assert "device" in sa.inspect(db.engine).get_table_names()
            db.engine.dispose()
    finally:
        drop()
