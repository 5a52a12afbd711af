"""The two-host rehearsal: the production layout on this machine.

gunicorn from deploy/gunicorn.conf.py (2 processes, KMEWEB_ENV=production, PostgreSQL, one
trusted proxy hop), two `flask worker` processes started from two working directories with
only the environment file in common (as two hosts would be), the KME simulator, and a private
redis-server on a port of its own. Through the console's HTTP routes it pulls an upload of
5,000 devices, approves it and moves the devices to a KME profile, kills the worker pushing
the move with SIGKILL in the middle, and checks that everything lands, that /readyz is 200
and that /metrics shows the outbox drained and both workers' KME calls. Then it stops that
Redis: /readyz answers 503 and sign-in still works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from kmeweb.devices.models import Device
from kmeweb.extensions import db
from kmeweb.integration.models import Upload
from kmeweb.outbox.models import Change
from kmeweb.profiles.models import Profile
from tests.conftest import PASSWORD, TEST_DB, csrf_token_from
from tests.ops.metrics_text import parse, total, value
from tests.ops.redis_server import PrivateRedis, free_port
from tests.sync_fixtures import ROOT, WorkerProcesses, kme_profile, wait_until

pytestmark = pytest.mark.skipif(
    TEST_DB != "postgresql",
    reason="the production rehearsal runs on PostgreSQL (the PostgreSQL half of make test)",
)

DEVICES = 5000
METRICS_TOKEN = "rehearsal-metrics-token-0123456789"


def _env_file(path: Path, database_url: str, redis_url: str, bind: str) -> Path:
    lines = {
        "KMEWEB_ENV": "production",
        "SECRET_KEY": "rehearsal-secret-key-" + "x" * 32,
        "KMEWEB_ENCRYPTION_KEY": os.environ["KMEWEB_ENCRYPTION_KEY"],  # the tests' key
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "KMEWEB_METRICS_TOKEN": METRICS_TOKEN,
        "KMEWEB_PROXY_HOPS": "1",
        "KMEWEB_LOG_FORMAT": "json",
        "KMEWEB_BIND": bind,
        "KMEWEB_WEB_WORKERS": "2",
        "KMEWEB_WEB_THREADS": "4",
        # Fast retries, short leases and a sweeper every second: a killed worker's change
        # comes back in seconds rather than minutes.
        "KMEWEB_KNOX_RETRY_ATTEMPTS": "3",
        "KMEWEB_KNOX_RETRY_BASE_S": "0.02",
        "KMEWEB_KNOX_RETRY_MAX_S": "0.2",
        "KMEWEB_CHANGE_LEASE_S": "4",
        "KMEWEB_CHANGE_RETRY_BASE_S": "0.1",
        "KMEWEB_CHANGE_RETRY_MAX_S": "0.5",
        "KMEWEB_SWEEP_INTERVAL_S": "1",
        # Heartbeats every 5 s: a periodic job left "started" by the killed worker is enqueued
        # again after 15 s (production: 90 s).
        "KMEWEB_PULL_STALE_S": "20",
        "KMEWEB_PULL_CURSOR_SKEW_S": "0",
        "KMEWEB_KNOX_BATCH_SIZE": "250",
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return path


def _read_env_file(path: Path) -> dict[str, str]:
    """What systemd's EnvironmentFile= gives the process (plus PATH and the code's path)."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, val = line.partition("=")
            env[key] = val
    return env


class Console:
    """The console over HTTP as a browser behind nginx sees it: https forwarded by one proxy,
    Secure cookies (sent by hand: requests keeps them off plain http), CSRF tokens."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.cookies: dict[str, str] = {}
        self.token = ""

    def request(self, method: str, path: str, **kw) -> requests.Response:
        headers = {
            "X-Forwarded-For": "203.0.113.10",
            "X-Forwarded-Proto": "https",
            "Referer": self.base.replace("http://", "https://") + "/",
            **kw.pop("headers", {}),
        }
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self.http.request(
            method, self.base + path, headers=headers, allow_redirects=False, timeout=60, **kw
        )
        self.cookies.update(response.cookies.get_dict())
        return response

    def sign_in(self, email: str) -> requests.Response:
        page = self.request("GET", "/auth/login")
        token = csrf_token_from(page.text)
        return self.request(
            "POST", "/auth/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
        )

    def post(self, path: str, data: dict) -> requests.Response:
        if not self.token:
            self.token = csrf_token_from(self.request("GET", "/integration/").text)
        return self.request("POST", path, data={**data, "csrf_token": self.token})

    def metrics(self) -> dict:
        response = self.request(
            "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert response.status_code == 200, response.text
        return parse(response.text)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or its workers still importing the app
        assert proc.poll() is None, "gunicorn exited: " + log.read_text()[-3000:]
        assert time.monotonic() < deadline, "gunicorn did not answer: " + log.read_text()[-3000:]
        time.sleep(0.05)


def test_two_host_rehearsal(app, session, database_url, sim, make_admin, tmp_path):
    redis_server = PrivateRedis(tmp_path / "redis").start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env_file = _env_file(
        tmp_path / "kmeweb.env", database_url, redis_server.url, f"127.0.0.1:{port}"
    )
    env = _read_env_file(env_file)
    # The integration and an admin, set up here through the same services the Knox
    # Integration page and `flask create-admin` use.
    make_admin("ops@example.com")
    _configure_integration(session, sim)
    upload = sim.upload(DEVICES)

    web_log = tmp_path / "web.log"
    with open(web_log, "wb") as log:
        web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "deploy/gunicorn.conf.py"),
                "wsgi:app",
            ],
            cwd=ROOT,
            env={**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    hosts = []
    for name in ("host-a", "host-b"):
        home = tmp_path / name  # each "host" has its own working directory
        home.mkdir()
        hosts.append(WorkerProcesses(env, home))
    workers = [
        h.start(name, cwd=h.log_dir, label=name)
        for h, name in zip(hosts, ("host-a", "host-b"), strict=True)
    ]
    try:
        _wait_http(base + "/healthz", web, web_log)
        wait_until(lambda: _redis_workers(redis_server.url) == 2, timeout=60, what="two workers up")
        console = Console(base)
        assert console.sign_in("ops@example.com").status_code == 303

        # Pull: the upload of 5,000 devices arrives.
        assert console.post("/integration/sync", {}).status_code == 303
        local = wait_until(
            lambda: session.scalars(
                select(Upload).where(Upload.kme_upload_id == upload["uploadId"])
            ).first(),
            timeout=120,
            what="the upload pulled",
        )
        wait_until(lambda: _count(session, Device.upload_id == local.id) == DEVICES, timeout=120)

        # Approve All Devices.
        response = console.post(
            f"/integration/uploads/{local.id}/approve", {"expected_pending": str(DEVICES)}
        )
        assert response.status_code == 303, response.text[-2000:]
        wait_until(
            lambda: (
                _count(
                    session,
                    Device.upload_id == local.id,
                    Device.approval == "approved",
                    Device.sync_state == "synced",
                )
                == DEVICES
            ),
            timeout=120,
            what="5,000 devices approved and synced",
        )

        # Move them all to a KME profile; kill one worker while the move is under way.
        target = kme_profile(session, "Rehearsal sales")
        session.commit()
        wait_until(lambda: session.get(Profile, target.id).kme_profile_id, timeout=60)
        default = session.scalars(select(Profile).where(Profile.kind == "kme_default")).one()
        response = console.post(
            f"/profiles/{default.id}/move",
            {
                "all_matching": "1",
                "q": "",
                "registration": "",
                "sync": "",
                "profile_id": str(target.id),
            },
        )
        assert response.status_code == 303, response.text[-2000:]

        def under_way() -> str | None:
            """The worker pushing the move, once some devices moved: RQ gives the move's
            job to one of the two, so the one to kill is the one running it."""
            moved = _count(session, Device.profile_id == target.id, Device.sync_state == "synced")
            assert moved < DEVICES, "the move finished before a worker could be killed"
            return _busy_worker(redis_server.url) if moved > 0 else None

        busy = wait_until(under_way, timeout=120, what="the move under way")
        index = ("host-a", "host-b").index(busy)
        hosts[index].kill9(workers[index])  # that host dies mid-move, its work horse with it
        wait_until(
            lambda: (
                _count(
                    session,
                    Device.upload_id == local.id,
                    Device.profile_id == target.id,
                    Device.sync_state == "synced",
                )
                == DEVICES
            ),
            timeout=180,
            what="every device moved and synced after the kill",
        )
        in_kme = [d for d in sim.devices().values() if d.profile_id == target.kme_profile_id]
        assert len(in_kme) == DEVICES

        # /readyz and /metrics (through the same proxy settings).
        assert console.request("GET", "/readyz").status_code == 200
        metrics = wait_until(lambda: _drained(console), timeout=30, what="the outbox drained")
        assert value(metrics, "kmeweb_outbox_changes", state="failed") == 0
        for worker in ("host-a", "host-b"):
            assert total(metrics, "kmeweb_knox_requests_total", worker=worker) > 0, worker
        assert total(metrics, "kmeweb_knox_requests_total", endpoint="devices_assign") >= (
            DEVICES // 250
        )
        assert value(metrics, "kmeweb_rq_workers") >= 1
        # Device counts come from the sweeper (every second here) through Redis.
        wait_until(
            lambda: value(console.metrics(), "kmeweb_devices", state="in_kme_profile") == DEVICES,
            timeout=60,
            what="kmeweb_devices{state=in_kme_profile} to count the moved devices",
        )
        # Web counters add up over both gunicorn processes (prometheus-client multiprocess).
        before = total(metrics, "kmeweb_http_requests_total", endpoint="ops.healthz")
        for _ in range(20):
            assert requests.get(base + "/healthz", timeout=5).status_code == 200
        after = total(console.metrics(), "kmeweb_http_requests_total", endpoint="ops.healthz")
        assert after - before == 20

        # gunicorn's access log carries the request id the app answers with.
        rid = console.request("GET", "/healthz").headers["X-Request-Id"]
        wait_until(
            lambda: f"request_id={rid}" in web_log.read_text(), timeout=10, what="access log"
        )
        line = next(ln for ln in web_log.read_text().splitlines() if f"request_id={rid}" in ln)
        assert json.loads(line)["logger"] == "gunicorn.access"  # KMEWEB_LOG_FORMAT=json

        # Redis goes away: not ready, but people can still sign in.
        redis_server.stop()
        ready = console.request("GET", "/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "ok", "redis": "unreachable"}
        assert Console(base).sign_in("ops@example.com").status_code == 303
    finally:
        for h in hosts:
            h.stop_all()
        if web.poll() is None:
            os.killpg(web.pid, 15)
            try:
                web.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(web.pid, 9)
                web.wait()
        redis_server.stop()
        for h in hosts:
            print(h.logs())
        print(web_log.read_text()[-3000:])


def _configure_integration(session, sim) -> None:
    from kmeweb.integration import activation, settings
    from tests.sync_fixtures import simulator_settings

    settings.save_settings(
        session,
        simulator_settings(sim, "Rehearsal KME"),
        "test",
    )
    activation.activate_integration(session, "test")
    session.commit()


def _count(session, *where) -> int:
    return session.scalar(select(func.count()).select_from(Device).where(*where))


def _busy_worker(url: str) -> str | None:
    """The name of the worker running an operation's job (`op-<id>`: the move) now, if one
    is."""
    import redis
    from rq import Worker

    for worker in Worker.all(connection=redis.Redis.from_url(url)):
        if (worker.get_current_job_id() or "").startswith("op-"):
            return worker.name
    return None


def _redis_workers(url: str) -> int:
    import redis

    return int(redis.Redis.from_url(url).scard("rq:workers"))


def _drained(console: Console):
    metrics = console.metrics()
    db.session.commit()
    unfinished = db.session.scalar(
        select(func.count()).select_from(Change).where(Change.status.in_(("pending", "running")))
    )
    if (
        value(metrics, "kmeweb_outbox_changes", state="pending") == 0
        and value(metrics, "kmeweb_outbox_changes", state="in_flight") == 0
        and unfinished == 0
    ):
        return metrics
    return None
