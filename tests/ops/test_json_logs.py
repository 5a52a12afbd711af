"""KMEWEB_LOG_FORMAT=json: one JSON object per line with time, level, request or job id, user
id and message; a whole sign-in and sync (pull, approval, push by real forked work horses)
logs none of the secrets involved."""

from __future__ import annotations

import json
import logging

import pytest

from kmeweb import logs
from kmeweb.integration import approvals
from kmeweb.integration.models import Upload
from kmeweb.sync.jobs import start_pull
from tests.conftest import PASSWORD
from tests.sync_fixtures import with_sync_config


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return {**with_sync_config(app_config), "LOG_FORMAT": "json"}


@pytest.fixture
def json_log(app, tmp_path):
    path = tmp_path / "kmeweb.log"
    root = logging.getLogger()
    level = root.level
    with open(path, "a", buffering=1) as stream:  # line-buffered: forked horses append too
        handler = logs.install(app, stream=stream)
        try:
            yield path
        finally:
            root.removeHandler(handler)
            root.setLevel(level)


def test_json_lines_carry_context_and_no_secret(
    app, client, actions, make_admin, session, integration, sim, work, json_log
):
    admin = make_admin("ops@example.com")
    assert actions.login("ops@example.com", "a wrong password 987").status_code == 422
    assert actions.login("ops@example.com").status_code == 303
    start_pull(session, "test")
    session.commit()
    work()
    small = session.query(Upload).order_by(Upload.device_count).first()
    approvals.approve_upload(session, small.id, "test")
    session.commit()
    work()

    lines = [line for line in json_log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(records) >= 4
    for record in records:
        assert {"time", "level", "logger", "message", "request_id", "job_id", "user_id"} <= set(
            record
        )
    signed_in = [r for r in records if r["message"] == "sign-in succeeded"]
    assert signed_in and signed_in[0]["user_id"] == admin.id and signed_in[0]["request_id"]
    assert any(r["message"] == "sign-in refused" and r["request_id"] for r in records)
    assert any(r["job_id"] for r in records)
    text = json_log.read_text()
    secrets = [
        PASSWORD,
        "a wrong password 987",
        sim.creds["oauth_client_secret"],
        app.config["SECRET_KEY"],
        app.config["KMEWEB_ENCRYPTION_KEY"],
        integration.secret_enc,
    ]
    for secret in secrets:
        assert secret not in text
