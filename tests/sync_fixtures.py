"""Sync fixtures (a pytest plugin loaded by tests/conftest.py): the KME simulator over real
HTTP, an active integration pointing at it, and real RQ workers (in this process, or as
separate `flask worker` processes). Tests that use them also want `sync_app_config`."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from kmeweb import crypto
from kmeweb.extensions import db
from kmeweb.integration.models import Integration
from kmeweb.knox.crypto import generate_private_key, private_key_b64
from kmeweb.knox.simulator import create_simulator, get_state
from kmeweb.knox.simulator.demo import seed_demo
from kmeweb.operations.queue import run_worker
from tests.servers import serving, wsgi_server

logging.getLogger("werkzeug").setLevel(logging.WARNING)
ROOT = Path(__file__).resolve().parents[1]

# Fast retries and short leases so failure scenarios finish in seconds, not minutes.
SYNC_CONFIG = {
    "KNOX_RETRY_ATTEMPTS": 3,
    "KNOX_RETRY_BASE_S": 0.02,
    "KNOX_RETRY_MAX_S": 0.2,
    "CHANGE_RETRY_BASE_S": 0.1,
    "CHANGE_RETRY_MAX_S": 0.5,
    "CHANGE_MAX_ATTEMPTS": 30,
    "CHANGE_LEASE_S": 4,
    "SWEEP_INTERVAL_S": 1,
    "PULL_CURSOR_SKEW_S": 0,
    "KNOX_BATCH_SIZE": 500,
}


@pytest.fixture(scope="session")
def rsa_keys() -> dict[str, str]:
    """RSA keys generated once per session (base64 DER), to keep tests fast."""
    return {
        "encryption": private_key_b64(generate_private_key()),
        "legacy": private_key_b64(generate_private_key()),
    }


@dataclass
class Sim:
    url: str
    state: Any
    creds: dict[str, Any]
    http: requests.Session = field(default_factory=requests.Session)

    def control(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.http.request(method, f"{self.url}/_sim{path}", timeout=60, **kw)
        assert resp.status_code < 300, resp.text
        return resp.json()

    def upload(self, count: int, reseller: str | None = None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"count": count, **extra}
        if reseller:
            body["resellerName"] = reseller
        return self.control("POST", "/uploads", json=body)

    def device(self, ident: str) -> dict[str, Any]:
        return self.control("GET", f"/devices/{ident}")

    def fault(self, **rule: Any) -> dict[str, Any]:
        return self.control("POST", "/faults", json=rule)

    def counters(self) -> dict[str, Any]:
        return self.control("GET", "/counters")

    def profiles(self) -> dict[str, dict[str, Any]]:
        """The tenant's profiles by id, read straight from the simulator's state."""
        with self.state.lock:
            tenant = self.state.tenants[self.creds["customer_id"]]
            return {pid: dict(p) for pid, p in tenant.profiles.items()}

    def devices(self) -> dict[str, Any]:
        with self.state.lock:
            tenant = self.state.tenants[self.creds["customer_id"]]
            return dict(tenant.devices)


@pytest.fixture
def sim(rsa_keys) -> Iterator[Sim]:
    """A fresh simulator with the demo tenant (a reseller, pending uploads of 250 and 1,200)."""
    app = create_simulator(
        enable_control=True,
        encryption_private_key=rsa_keys["encryption"],
        demo_legacy_private_key=rsa_keys["legacy"],
        rng_seed=7,
        max_devices_per_request=1000,
    )
    state = get_state(app)
    creds = seed_demo(state, legacy_private_key=rsa_keys["legacy"])
    with serving(wsgi_server(app)) as url:
        yield Sim(url, state, creds)


def with_sync_config(app_config: dict) -> dict:
    """Fast retries and short leases for tests that run the sync engine."""
    return {**app_config, **SYNC_CONFIG}


def simulator_settings(sim: Any, name: str) -> dict[str, Any]:
    """Knox Integration settings that point at the simulator with its demo OAuth client."""
    return {
        "name": name,
        "description": "simulator",
        "auth_mode": "oauth",
        "base_url": sim.url,
        "token_url": sim.url + "/ams/v1/oauth2/token",
        "client_id": sim.creds["oauth_client_id"],
        "secret": sim.creds["oauth_client_secret"],
        "customer_id": sim.creds["customer_id"],
        "encryption_public_key": sim.creds["encryption_public_key"],
        "sync_interval_s": 900,
    }


@pytest.fixture
def integration(app, session, sim) -> Integration:
    """The Knox integration, active, pointing at the simulator with the demo OAuth client."""
    from kmeweb.integration import activation, settings

    settings.save_settings(
        session,
        simulator_settings(sim, "Demo KME"),
        "test",
    )
    integration = activation.activate_integration(session, "test")
    session.commit()
    assert crypto.decrypt(integration.secret_enc) == sim.creds["oauth_client_secret"]
    return integration


@pytest.fixture
def work(app) -> Callable[[], None]:
    """Run a real RQ worker (forking work horses) until the queues are empty."""

    def _work() -> None:
        db.session.commit()
        run_worker(app, burst=True, with_scheduler=False)
        db.session.expire_all()

    return _work


def wait_until(predicate: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    """Poll `predicate` (with a fresh database view each time) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.commit()  # end the read transaction: see what the workers committed
        db.session.expire_all()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.1)


class WorkerProcesses:
    """`flask worker` processes, each in its own process group (so -9 takes its horse too)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.procs: list[subprocess.Popen] = []

    def start(
        self, name: str, scheduler: bool = True, cwd: Path = ROOT, label: str | None = None
    ) -> subprocess.Popen:
        args = [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--name", name]
        if not scheduler:
            args.append("--without-scheduler")
        if label:
            args += ["--label", label]
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def kill9(self, proc: subprocess.Popen) -> None:
        """Kill a worker and its work horses with SIGKILL, as a crashed host would.

        RQ's work horse calls setpgrp(), so killing the worker's process group alone leaves the
        horse running: it would go on working (and writing to the next test's tables).
        """
        horses = _children(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in horses:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in horses):
            assert time.monotonic() < deadline, f"work horses {horses} survived SIGKILL"
            time.sleep(0.01)

    def stop_all(self) -> None:
        # A worker stopped with SIGTERM waits for its horse; one that is killed takes its horse
        # along (kill9), so no horse outlives the test.
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9(proc)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.log_dir.glob("*.log"))


@pytest.fixture
def worker_processes(app_config, tmp_path) -> Iterator[WorkerProcesses]:
    """Start real worker processes against the test database, Redis and settings."""
    env = {
        **os.environ,
        "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": app_config["REDIS_URL"],
        "PYTHONPATH": str(ROOT),
        "KMEWEB_KNOX_RETRY_ATTEMPTS": str(SYNC_CONFIG["KNOX_RETRY_ATTEMPTS"]),
        "KMEWEB_KNOX_RETRY_BASE_S": str(SYNC_CONFIG["KNOX_RETRY_BASE_S"]),
        "KMEWEB_KNOX_RETRY_MAX_S": str(SYNC_CONFIG["KNOX_RETRY_MAX_S"]),
        "KMEWEB_CHANGE_RETRY_BASE_S": str(SYNC_CONFIG["CHANGE_RETRY_BASE_S"]),
        "KMEWEB_CHANGE_RETRY_MAX_S": str(SYNC_CONFIG["CHANGE_RETRY_MAX_S"]),
        "KMEWEB_CHANGE_MAX_ATTEMPTS": str(SYNC_CONFIG["CHANGE_MAX_ATTEMPTS"]),
        "KMEWEB_CHANGE_LEASE_S": str(SYNC_CONFIG["CHANGE_LEASE_S"]),
        "KMEWEB_SWEEP_INTERVAL_S": str(SYNC_CONFIG["SWEEP_INTERVAL_S"]),
        "KMEWEB_PULL_CURSOR_SKEW_S": "0",
    }
    workers = WorkerProcesses(env, tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()
        print(workers.logs())  # pytest shows it when the test failed


def _children(pid: int) -> list[int]:
    """Direct child processes of `pid` (from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kme_profile(session, name: str, **over: Any):
    """Create a KME profile through the service, with a valid Device Owner configuration."""
    from kmeweb.profiles import services

    data = {
        "name": name,
        "description": over.pop("description", ""),
        "config": {
            "agent": {"server_url": "https://mdm.example.com"},
            "kme": {
                "supported_mdm": "Other",
                "mdm_apk_url": "https://mdm.example.com/agent.apk",
                "mdm_server_uri": "https://mdm.example.com",
            },
        },
        **over,
    }
    return services.create_profile(session, data, "test")
