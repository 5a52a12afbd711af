"""Migration 0005 moves a plain-text Wi-Fi password out of profile.config, encrypted, and
its downgrade puts it back."""

from __future__ import annotations

import json

import sqlalchemy as sa

from kmeweb.extensions import db
from tests.test_migrations import _fresh_database_url


def test_wifi_password_is_encrypted_by_the_migration_and_restored_by_its_downgrade(tmp_path):
    from flask_migrate import downgrade, upgrade

    from kmeweb import create_app, crypto

    url, drop = _fresh_database_url(tmp_path)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    config = {"system_extras": {"wifi_ssid": "corp", "wifi_password": "hunter2hunter2"}}
    try:
        with app.app_context():
            upgrade(revision="0004")
            with db.engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO profile (name, description, kind, without_token, config, "
                        "sync_state, version, created_at, updated_at) VALUES ('Old', '', 'kme', "
                        "false, :config, 'synced', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ),
                    {"config": json.dumps(config)},
                )
            upgrade()
            with db.engine.connect() as conn:
                row = conn.execute(sa.text("SELECT config, secrets_enc FROM profile")).one()
            stored = row.config if isinstance(row.config, dict) else json.loads(row.config)
            assert stored == {"system_extras": {"wifi_ssid": "corp"}}
            assert "hunter2" not in row.secrets_enc
            assert json.loads(crypto.decrypt(row.secrets_enc)) == {
                "wifi_password": "hunter2hunter2"
            }
            downgrade(revision="0004")
            with db.engine.connect() as conn:
                back = conn.execute(sa.text("SELECT config FROM profile")).scalar()
            assert (back if isinstance(back, dict) else json.loads(back)) == config
            db.engine.dispose()
    finally:
        drop()
