"""`flask worker` refuses to start (exit 1, one line) without Redis or the database, so systemd
restarts it; a Redis lost while it runs is waited for with backoff, then work goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from rq import Queue
from rq.job import Job

from tests.conftest import TEST_DB
from tests.ops.redis_server import PrivateRedis, free_port
from tests.sync_fixtures import ROOT

# The same on either database: run once, in the SQLite half of `make test` (time budget).
pytestmark = pytest.mark.skipif(
    TEST_DB != "sqlite",
    reason="the worker process checks do not depend on the database: checked in the SQLite run",
)


def _worker(env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--without-scheduler"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        **kw,
    )


@pytest.fixture
def worker_env(app_config) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": app_config["REDIS_URL"],
        "PYTHONPATH": str(ROOT),
    }


@pytest.mark.parametrize("broken", ["REDIS_URL", "DATABASE_URL"])
def test_worker_exits_with_one_line_when_a_service_does_not_answer(app, worker_env, broken):
    port = free_port()
    worker_env[broken] = (
        f"redis://127.0.0.1:{port}/0"
        if broken == "REDIS_URL"
        else f"postgresql+psycopg://kmeweb:pw-not-shown@127.0.0.1:{port}/kmeweb"
    )
    proc = _worker(worker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("kmeweb worker cannot start: ")
    assert broken in lines[0]
    assert str(port) not in err and "pw-not-shown" not in err


def test_worker_survives_redis_going_away_and_resumes(app, worker_env, tmp_path):
    server = PrivateRedis(tmp_path / "redis").start()
    worker_env["REDIS_URL"] = server.url
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = _worker(worker_env, stdout=log, stderr=subprocess.STDOUT)
    client = redis.Redis.from_url(server.url)
    try:
        deadline = time.monotonic() + 60
        while not client.scard("rq:workers"):
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the worker never registered"
            time.sleep(0.05)
        # Redis goes away while a job runs: RQ's own loop quits on the error after the job
        # (outside its wait for jobs), and the worker waits for Redis with backoff.
        queue = Queue("default", connection=client)
        running = queue.enqueue("tests.ops.jobs.sleep_job", 2.0)
        deadline = time.monotonic() + 60
        while Job.fetch(running.id, connection=client).get_status() != "started":
            assert proc.poll() is None, log_path.read_text()[-2000:]
            assert time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.05)
        server.stop()
        deadline = time.monotonic() + 60
        while "Redis connection lost; retrying" not in log_path.read_text():
            assert proc.poll() is None, "the worker crashed: " + log_path.read_text()[-2000:]
            assert time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.05)
        assert proc.poll() is None
        server.start()  # the same port, empty (as after a Redis restart)
        job = queue.enqueue("kmeweb.sync.jobs.sweep_job")
        deadline = time.monotonic() + 90
        while Job.fetch(job.id, connection=client).get_status() != "finished":
            assert proc.poll() is None, log_path.read_text()[-2000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        server.stop()
    assert proc.returncode == 0  # SIGTERM: a warm shutdown, not a crash
    assert "Redis answers again; worker resumes" in log_path.read_text()
