"""Periodic jobs, declared as data, run by exactly one scheduler.

Every `flask worker` may run a scheduler thread; a Redis lock makes only one of
them (on any host) enqueue periodic jobs. Last-run times live in Redis; losing
them (a flush) only makes every job run once more, which is harmless.

The lock and the last-run times are keyed by the installation id the database holds
(kmeweb.installation): a fresh database behind a Redis an earlier one used starts with
a fresh schedule (its first pull at once), and never waits for another database's lock.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from redis import Redis

from kmeweb.audit.retention import get_retention
from kmeweb.extensions import db
from kmeweb.installation import installation_id
from kmeweb.integration.models import get_integration
from kmeweb.operations import queue

log = logging.getLogger("kmeweb.schedule")


def lock_key(installation: str) -> str:
    return f"kmeweb:{installation}:scheduler:lock"


def last_run_key(installation: str) -> str:
    """The Redis hash of job name -> last run (epoch seconds) for one installation."""
    return f"kmeweb:{installation}:scheduler:last"


# Renew the lock only if we still hold it.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


@dataclass(frozen=True)
class Periodic:
    name: str
    func: str
    queue: str
    #: seconds between runs; a function of the app gets the integration's interval.
    every: float | Callable[[Flask], float | None]


def _pull_interval(app: Flask) -> float | None:
    integration = get_integration(db.session)
    interval = integration.sync_interval_s if integration and integration.active else None
    db.session.remove()
    return float(interval) if interval else None


def _purge_interval(app: Flask) -> float | None:
    """PURGE_INTERVAL_S while a retention is set and no legal hold holds the history; else
    the purge is not scheduled (the job checks again when it runs)."""
    purges = get_retention(db.session).purges
    db.session.remove()
    return float(app.config["PURGE_INTERVAL_S"]) if purges else None


def _config_interval(name: str) -> Callable[[Flask], float]:
    return lambda app: float(app.config[name])


PERIODIC: tuple[Periodic, ...] = (
    Periodic("pull", "kmeweb.sync.jobs.scheduled_pull", "knox", _pull_interval),
    Periodic(
        "sweep",
        "kmeweb.sync.jobs.sweep_job",
        "maintenance",
        _config_interval("SWEEP_INTERVAL_S"),
    ),
    Periodic("token-expiry", "kmeweb.sync.jobs.token_expiry_job", "maintenance", 86400),
    Periodic("full-pull", "kmeweb.sync.jobs.scheduled_full_pull", "knox", 86400),
    Periodic(
        "overview",
        "kmeweb.overview.jobs.refresh_funnel_job",
        "maintenance",
        _config_interval("OVERVIEW_CACHE_S"),
    ),
    Periodic(
        "alerts",
        "kmeweb.alerts.jobs.evaluate_alerts_job",
        "maintenance",
        _config_interval("ALERT_INTERVAL_S"),
    ),
    Periodic("purge", "kmeweb.ops.jobs.purge_history_job", "maintenance", _purge_interval),
)


class Scheduler:
    """Enqueues due periodic jobs while it holds the scheduler lock."""

    def __init__(
        self,
        app: Flask,
        redis: Redis,
        periodic: tuple[Periodic, ...] = PERIODIC,
        tick_s: float = 1.0,
        lock_ttl_s: float = 15.0,
    ) -> None:
        self.app, self.redis, self.periodic = app, redis, periodic
        self.tick_s, self.lock_ttl_ms = tick_s, int(lock_ttl_s * 1000)
        self.token = uuid.uuid4().hex
        self._renew = redis.register_script(_RENEW)
        self._stop = threading.Event()
        self._installation: str | None = None

    @property
    def installation(self) -> str:
        """The id of the installation (database) this scheduler schedules for; read once."""
        if self._installation is None:
            with self.app.app_context():
                self._installation = installation_id(db.engine)
        return self._installation

    @property
    def lock_key(self) -> str:
        return lock_key(self.installation)

    @property
    def last_run_key(self) -> str:
        return last_run_key(self.installation)

    def holds_lock(self) -> bool:
        key = self.lock_key
        if self._renew(keys=[key], args=[self.token, self.lock_ttl_ms]):
            return True
        return bool(self.redis.set(key, self.token, nx=True, px=self.lock_ttl_ms))

    def interval(self, job: Periodic) -> float | None:
        if callable(job.every):
            with self.app.app_context():
                return job.every(self.app)
        return float(job.every)

    def tick(self, now: float | None = None) -> list[str]:
        """Enqueue the jobs that are due; returns their names (empty without the lock)."""
        if not self.holds_lock():
            return []
        now = time.time() if now is None else now
        fired = []
        for job in self.periodic:
            every = self.interval(job)
            if not every:
                continue
            last = self.redis.hget(self.last_run_key, job.name)
            if last is not None and now - float(last) < every:
                continue
            self.redis.hset(self.last_run_key, job.name, now)
            job_id = f"periodic-{job.name}"
            with self.app.app_context():
                # A sweep whose worker was killed mid-run would block every later one.
                queue.forget_dead_job(job_id, self.app.config, self.redis)
                queue.enqueue_unique(job.func, job_id=job_id, queue=job.queue)
            fired.append(job.name)
        return fired

    def run(self) -> None:
        log.info("scheduler %s started", self.token[:8])
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep scheduling through a Redis or DB hiccup
                log.exception("scheduler tick failed")
            self._stop.wait(self.tick_s)
        if self.redis.get(self.lock_key) == self.token.encode():
            self.redis.delete(self.lock_key)

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="kmeweb-scheduler", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
