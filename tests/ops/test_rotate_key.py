"""flask rotate-encryption-key: every stored secret re-encrypted with the new key in batches;
a second run finds nothing to do; an app with only the new key reads every secret back."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet

import config
from kmeweb import create_app, crypto
from kmeweb.devices.models import Device
from kmeweb.extensions import db
from kmeweb.integration import settings
from kmeweb.integration.models import Integration
from kmeweb.ops.rotate import encrypted_columns
from kmeweb.profiles.models import Profile
from tests.factories import make_device, make_profile

OLD_KEY = "x6bTJp0Q2R9T9tqkT6v1wW1C7sGkKqN8s0u3Yh0v7lE="  # tests/conftest.py's key
NEW_KEY = Fernet.generate_key().decode()


def _seed(session) -> dict[str, object]:
    settings.save_settings(
        session,
        {
            "name": "KME",
            "description": "",
            "auth_mode": "oauth",
            "base_url": "https://eu-kcs-api.samsungknox.com",
            "token_url": "",
            "client_id": "client-1",
            "secret": "oauth-client-secret-123",
            "customer_id": "1234",
            "encryption_public_key": "",
            "sync_interval_s": 900,
        },
        "test",
    )
    session.commit()
    profile = make_profile(
        session, secrets_enc=crypto.encrypt(json.dumps({"wifi_password": "wifi-pass-456"}))
    )
    devices = [
        make_device(session, profile, enrollment_password_enc=crypto.encrypt(f"enroll-{n}"))
        for n in range(5)
    ]
    return {"profile": profile.id, "devices": [d.id for d in devices]}


def _invoke(app, *args: str):
    """Run a command of `app` (its own context: the fixture's app is current otherwise)."""
    with app.app_context():
        result = app.test_cli_runner().invoke(args=list(args))
        db.session.remove()
        db.engine.dispose()
    return result


def _read_all(app, ids) -> dict[str, object]:
    with app.app_context():
        integration = db.session.scalars(db.select(Integration)).one()
        out = {
            "knox": crypto.decrypt(integration.secret_enc),
            "wifi": db.session.get(Profile, ids["profile"]).secrets()["wifi_password"],
            "devices": [
                crypto.decrypt(db.session.get(Device, i).enrollment_password_enc)
                for i in ids["devices"]
            ],
        }
        db.session.remove()
        db.engine.dispose()
        return out


def test_rotation_re_encrypts_every_secret_and_the_old_key_can_go(app, session, app_config):
    ids = _seed(session)
    before_updated = session.get(Device, ids["devices"][0]).updated_at
    expected = {
        "knox": "oauth-client-secret-123",
        "wifi": "wifi-pass-456",
        "devices": [f"enroll-{n}" for n in range(5)],
    }
    rotating = create_app(
        {**app_config, "KMEWEB_ENCRYPTION_KEY": NEW_KEY, "KMEWEB_ENCRYPTION_KEYS_OLD": [OLD_KEY]}
    )
    result = _invoke(rotating, "rotate-encryption-key", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "integration.secret_enc: 1 re-encrypted, 0 already current" in result.output
    assert "profile.secrets_enc: 1 re-encrypted" in result.output
    assert "device.enrollment_password_enc: 5 re-encrypted" in result.output
    assert "done: 7 re-encrypted, 0 already current" in result.output
    # Run again (as after an interruption): everything is already current.
    again = _invoke(rotating, "rotate-encryption-key")
    assert again.exit_code == 0 and "done: 0 re-encrypted, 7 already current" in again.output

    only_new = create_app({**app_config, "KMEWEB_ENCRYPTION_KEY": NEW_KEY})
    assert _read_all(only_new, ids) == expected
    only_old = create_app({**app_config, "KMEWEB_ENCRYPTION_KEY": OLD_KEY})
    with pytest.raises(ValueError, match="cannot be decrypted"):
        _read_all(only_old, ids)
    session.expire_all()
    assert session.get(Device, ids["devices"][0]).updated_at == before_updated  # not an edit


def test_a_secret_no_key_opens_stops_the_run_with_a_clear_error(app, session, app_config):
    _seed(session)
    stranger = create_app({**app_config, "KMEWEB_ENCRYPTION_KEY": NEW_KEY})  # old key not given
    result = _invoke(stranger, "rotate-encryption-key")
    assert result.exit_code == 1
    assert "integration.secret_enc id 1 cannot be decrypted" in result.output
    assert OLD_KEY not in result.output and NEW_KEY not in result.output


def test_old_keys_come_comma_separated_from_the_environment():
    keys = config.from_env({"KMEWEB_ENCRYPTION_KEYS_OLD": " a1 ,b2,, "})
    assert keys["KMEWEB_ENCRYPTION_KEYS_OLD"] == ["a1", "b2"]


def test_every_column_ending_in_enc_is_registered_for_rotation():
    """A new secret column (enrollment passwords, webhook secrets) must be listed in
    kmeweb/ops/rotate.py or rotation would leave it on the old key."""
    registered = {(m.__tablename__, c) for m, c in encrypted_columns()}
    found = {
        (table.name, column.name)
        for table in db.metadata.sorted_tables
        for column in table.columns
        if column.name.endswith("_enc")
    }
    assert found == registered
