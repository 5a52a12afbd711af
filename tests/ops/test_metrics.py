"""/metrics: bearer token when KMEWEB_METRICS_TOKEN is set; every metric the issue names is
there and moves when a pull and an approval run through real workers and the simulator."""

from __future__ import annotations

import time

import pytest

from kmeweb.integration import approvals
from kmeweb.integration.models import Upload
from kmeweb.sync.jobs import start_pull
from tests.ops.metrics_text import names, parse, total, value
from tests.sync_fixtures import with_sync_config

EXPECTED = {
    "kmeweb_outbox_changes",
    "kmeweb_outbox_oldest_pending_seconds",
    "kmeweb_last_pull_success_timestamp_seconds",
    "kmeweb_last_push_success_timestamp_seconds",
    "kmeweb_pull_duration_seconds",
    "kmeweb_rq_queue_jobs",
    "kmeweb_rq_workers",
    "kmeweb_operations",
    "kmeweb_devices",
    "kmeweb_tokens_expiring",
    "kmeweb_knox_requests_total",
    "kmeweb_knox_request_seconds_bucket",
    "kmeweb_knox_request_seconds_count",
    "kmeweb_http_requests_total",
    "kmeweb_http_request_seconds_bucket",
}


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return with_sync_config(app_config)


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return parse(response.get_data(as_text=True))


def test_metrics_need_the_bearer_token_when_one_is_set(app_config):
    from kmeweb import create_app
    from kmeweb.extensions import db

    app = create_app({**app_config, "METRICS_TOKEN": "s3cret-metrics-token"})
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert "Bearer" in client.get("/metrics").headers["WWW-Authenticate"]
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
    assert ok.status_code == 200 and b"kmeweb_outbox_changes" in ok.data
    assert "Set-Cookie" not in ok.headers
    with app.app_context():
        db.engine.dispose()


def test_metrics_move_with_a_pull_and_an_approval(client, session, integration, sim, work):
    before = scrape(client)
    assert value(before, "kmeweb_last_pull_success_timestamp_seconds") == 0
    assert value(before, "kmeweb_devices", state="pending_approval") == 0
    pulls_before = total(before, "kmeweb_knox_requests_total", endpoint="devices_list")

    start_pull(session, "test")
    session.commit()
    assert value(scrape(client), "kmeweb_rq_queue_jobs", queue="knox") >= 1
    work()
    from kmeweb.operations.queue import redis_connection
    from kmeweb.ops.metrics import refresh_inventory

    refresh_inventory(session, redis_connection())  # what the sweeper does every minute
    pulled = scrape(client)
    assert time.time() - value(pulled, "kmeweb_last_pull_success_timestamp_seconds") < 60
    assert value(pulled, "kmeweb_pull_duration_seconds", kind="incremental") > 0
    assert value(pulled, "kmeweb_devices", state="pending_approval") == 1450  # 250 + 1,200
    assert value(pulled, "kmeweb_operations", kind="pull", state="done") == 1
    assert total(pulled, "kmeweb_knox_requests_total", endpoint="devices_list") > pulls_before
    assert total(pulled, "kmeweb_knox_requests_total", status="200") >= 2
    assert total(pulled, "kmeweb_knox_request_seconds_count", endpoint="devices_list") >= 1

    small = session.query(Upload).order_by(Upload.device_count).first()
    approvals.approve_upload(session, small.id, "test")
    session.commit()
    waiting = scrape(client)
    assert value(waiting, "kmeweb_outbox_changes", state="pending") >= 1
    assert value(waiting, "kmeweb_outbox_oldest_pending_seconds") >= 0
    assert value(waiting, "kmeweb_last_push_success_timestamp_seconds") == 0
    work()
    refresh_inventory(session, redis_connection())
    pushed = scrape(client)
    assert value(pushed, "kmeweb_outbox_changes", state="pending") == 0
    assert value(pushed, "kmeweb_outbox_changes", state="in_flight") == 0
    assert value(pushed, "kmeweb_outbox_oldest_pending_seconds") == 0
    assert value(pushed, "kmeweb_last_push_success_timestamp_seconds") > 0
    assert value(pushed, "kmeweb_devices", state="approved") == 250
    assert value(pushed, "kmeweb_devices", state="pending_approval") == 1200
    assert total(pushed, "kmeweb_knox_requests_total", endpoint="uploads_approve") >= 1
    # The scrapes themselves are counted by endpoint and status.
    assert total(pushed, "kmeweb_http_requests_total", endpoint="ops.metrics", status="200") >= 4
    assert EXPECTED <= names(pushed), EXPECTED - names(pushed)
