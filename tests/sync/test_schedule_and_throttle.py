"""Exactly one scheduler fires periodic jobs; KME calls never exceed the concurrency limit."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import redis
from flask import Flask
from rq.job import JobStatus

from kmeweb.operations import queue
from kmeweb.sync.knox import KnoxSemaphore, ThrottledSession
from kmeweb.sync.schedule import PERIODIC, Periodic, Scheduler
from tests.servers import start_serving, wsgi_server
from tests.threads import run_in_threads


def test_only_the_scheduler_holding_the_lock_enqueues(app, redis_url):
    app.config["SWEEP_INTERVAL_S"] = 60
    app.config["ALERT_INTERVAL_S"] = 60
    app.config["OVERVIEW_CACHE_S"] = 30
    conn = redis.Redis.from_url(redis_url)
    first, second = Scheduler(app, conn), Scheduler(app, conn)
    fired = first.tick(now=1000.0)
    # no active integration: no pull; no retention set: no purge
    assert set(fired) == {"sweep", "token-expiry", "full-pull", "alerts", "overview"}
    assert second.tick(now=1000.0) == []  # the other scheduler does nothing
    assert queue.job_status("periodic-sweep") == "queued"
    # nothing is due again before its interval; the sweep is due after 60 s
    assert first.tick(now=1029.0) == []
    assert first.tick(now=1031.0) == ["overview"]
    assert first.tick(now=1061.0) == ["sweep", "overview", "alerts"]


def test_a_dead_schedulers_lock_passes_to_another(app, redis_url):
    conn = redis.Redis.from_url(redis_url)
    # A long TTL: however slow the first tick is, the lock is still held for the second. (This
    # test used a 0.3 s TTL and slept 0.4 s; a tick slower than 0.3 s, e.g. the pull interval's
    # database query on a loaded PostgreSQL, let the lock expire early and the test failed.)
    dead = Scheduler(app, conn, lock_ttl_s=30)
    assert dead.tick(now=1000.0)
    alive = Scheduler(app, conn, lock_ttl_s=30)
    assert alive.tick(now=1100.0) == []
    # The dead one never renews its lock: let the rest of its TTL run out now.
    conn.pexpire(dead.lock_key, 50)
    deadline = time.monotonic() + 10
    while conn.exists(dead.lock_key):
        assert time.monotonic() < deadline, "Redis did not expire the lock"
        time.sleep(0.01)
    assert "sweep" in alive.tick(now=1100.0)


def test_pull_runs_at_the_integrations_interval(app, session, redis_url, integration):
    conn = redis.Redis.from_url(redis_url)
    only_pull = tuple(p for p in PERIODIC if p.name == "pull")
    scheduler = Scheduler(app, conn, periodic=only_pull)
    assert scheduler.tick(now=5000.0) == ["pull"]
    assert scheduler.tick(now=5000.0 + integration.sync_interval_s - 1) == []
    assert scheduler.tick(now=5000.0 + integration.sync_interval_s) == ["pull"]


def test_periodic_jobs_are_declared_as_data():
    names = {p.name: p for p in PERIODIC}
    assert set(names) == {
        "pull", "sweep", "token-expiry", "full-pull", "alerts", "overview", "purge"
    }  # fmt: skip
    assert all(isinstance(p, Periodic) for p in PERIODIC)
    jobs = ("kmeweb.sync.jobs.", "kmeweb.alerts.jobs.", "kmeweb.overview.jobs.", "kmeweb.ops.jobs.")
    assert all(p.func.startswith(jobs) for p in PERIODIC)


def test_knox_calls_never_exceed_the_configured_concurrency(redis_url):
    """Twelve threads (standing in for workers on several hosts) share a limit of 3."""
    in_flight = 0
    peak = 0
    lock = threading.Lock()
    slow = Flask("slow-kme")

    @slow.get("/kcs/v1/kme/devices/list")
    def _list():
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.05)
        with lock:
            in_flight -= 1
        return {"totalCount": 0, "deviceList": []}

    server = wsgi_server(slow)
    url = f"{start_serving(server)}/kcs/v1/kme/devices/list"
    conn = redis.Redis.from_url(redis_url)

    def worker() -> None:
        http = ThrottledSession(KnoxSemaphore(conn, limit=3, key="test:knox:inflight"))
        for _ in range(5):
            assert http.get(url, timeout=10).status_code == 200

    run_in_threads([worker] * 12)
    server.shutdown()
    assert peak == 3  # the limit was reached, never exceeded
    assert KnoxSemaphore(conn, 3, key="test:knox:inflight").holders() == 0


def test_sync_status_command_prints_the_state(runner, session, integration, sim, work):
    from kmeweb.sync.jobs import start_pull

    start_pull(session, "test")
    session.commit()
    work()
    result = runner.invoke(args=["sync", "status"])
    assert result.exit_code == 0, result.output
    assert "integration: active" in result.output
    assert "last pull at: 20" in result.output
    assert "pending changes: 0" in result.output
    assert "profile 'Samsung KME Default Profile': synced" in result.output


def test_sync_now_command_starts_one_pull(runner, session, integration):
    first = runner.invoke(args=["sync", "now"])
    second = runner.invoke(args=["sync", "now"])
    assert first.exit_code == 0 and "operation 1: Sync from KME (queued)" in first.output
    assert "operation 1:" in second.output  # already queued: not started twice
    assert queue.job_status("op-1") == "queued"


def _left_started(job_id: str, heartbeat_age_s: float) -> None:
    """The periodic job as a worker killed with -9 while running it leaves it in RQ: "started",
    its last heartbeat `heartbeat_age_s` ago."""
    job = queue.get_queue("maintenance").fetch_job(job_id)
    job.set_status(JobStatus.STARTED)
    job.last_heartbeat = job.started_at = datetime.now(UTC) - timedelta(seconds=heartbeat_age_s)
    job.save()
    queue.get_queue("maintenance").remove(job)


def test_a_periodic_job_whose_worker_was_killed_runs_again(app, redis_url):
    app.config["SWEEP_INTERVAL_S"] = 1
    only_sweep = tuple(p for p in PERIODIC if p.name == "sweep")
    scheduler = Scheduler(app, redis.Redis.from_url(redis_url), periodic=only_sweep)
    stale = 3 * queue.monitoring_interval(app.config)
    assert scheduler.tick(now=1000.0) == ["sweep"]
    # a live sweep that heartbeats is left alone: no second one at the next tick
    _left_started("periodic-sweep", heartbeat_age_s=1)
    assert scheduler.tick(now=1002.0) == ["sweep"]
    assert queue.job_status("periodic-sweep") == "started"
    # silent for three heartbeat intervals: its worker is gone, the sweep is enqueued again
    _left_started("periodic-sweep", heartbeat_age_s=stale + 5)
    assert scheduler.tick(now=1004.0) == ["sweep"]
    assert queue.job_status("periodic-sweep") == "queued"
