"""404 and 500 pages, and production refusing to start without its secrets."""

from __future__ import annotations

import logging

import pytest

import config


def test_unknown_page_renders_the_404_page(client, login):
    login("admin")
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True)


def test_500_shows_a_request_id_and_no_stack_trace(app, client, login, caplog):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/_test/boom")
    def _boom():
        raise RuntimeError("secret internals")

    login("admin")
    with caplog.at_level(logging.ERROR, logger="kmeweb"):
        response = client.get("/_test/boom")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    request_id = response.headers["X-Request-Id"]
    assert request_id in body
    assert "secret internals" not in body and "Traceback" not in body
    assert any(request_id in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("missing", config.REQUIRED_IN_PRODUCTION)
def test_production_refuses_to_start_without_a_secret(missing):
    env = {
        "KMEWEB_ENV": "production",
        "SECRET_KEY": "s" * 32,
        "KMEWEB_ENCRYPTION_KEY": "k",
        "DATABASE_URL": "postgresql+psycopg://db/kmeweb",
        "REDIS_URL": "redis://r:6379/0",
        "KMEWEB_METRICS_TOKEN": "m" * 32,
    }
    del env[missing]
    with pytest.raises(config.ConfigError) as err:
        config.from_env(env)
    assert str(err.value) == f"{missing} is required when KMEWEB_ENV=production"


def test_production_cookies_are_secure():
    env = {
        "KMEWEB_ENV": "production",
        "SECRET_KEY": "s" * 32,
        "KMEWEB_ENCRYPTION_KEY": "k",
        "DATABASE_URL": "postgresql+psycopg://db/kmeweb",
        "REDIS_URL": "redis://r:6379/0",
        "KMEWEB_METRICS_TOKEN": "m" * 32,
    }
    settings = config.from_env(env)
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert settings["SESSION_COOKIE_HTTPONLY"] is True
    assert settings["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_knox_path_overrides_come_from_the_environment():
    settings = config.from_env(
        {"KMEWEB_KNOX_PATHS": '{"devices_unassign_v2": "PUT /kcs/v2/kme/devices/unassignProfile"}'}
    )
    assert settings["KNOX_PATHS"] == {
        "devices_unassign_v2": "PUT /kcs/v2/kme/devices/unassignProfile"
    }
    with pytest.raises(config.ConfigError, match="KMEWEB_KNOX_PATHS must be a JSON object"):
        config.from_env({"KMEWEB_KNOX_PATHS": "[1, 2]"})


def test_production_refuses_a_short_secret_key():
    env = {
        "KMEWEB_ENV": "production",
        "SECRET_KEY": "s" * 31,
        "KMEWEB_ENCRYPTION_KEY": "k",
        "DATABASE_URL": "postgresql+psycopg://db/kmeweb",
        "REDIS_URL": "redis://r:6379/0",
        "KMEWEB_METRICS_TOKEN": "m" * 32,
    }
    with pytest.raises(config.ConfigError, match="SECRET_KEY must be at least 32 characters"):
        config.from_env(env)


def test_sqlite_file_and_instance_secrets_are_owner_only(tmp_path, monkeypatch):
    """A fresh instance directory: the database and the development secrets are 0600."""
    import os
    import stat

    from kmeweb import create_app

    monkeypatch.setattr(config, "INSTANCE_DIR", tmp_path / "instance")
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "KMEWEB_ENCRYPTION_KEY")}
    monkeypatch.setattr(os, "environ", env)
    settings = config.from_env(env)
    database = tmp_path / "instance" / "kme.sqlite"
    create_app({**settings, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}", "TESTING": True})
    files = [database, tmp_path / "instance" / "dev-secret_key"]
    files.append(tmp_path / "instance" / "dev-encryption_key")
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
