"""gunicorn settings for kmeweb: `gunicorn -c deploy/gunicorn.conf.py wsgi:app`.

Every value can be changed from the environment (the systemd unit's EnvironmentFile):
KMEWEB_BIND, KMEWEB_WEB_WORKERS, KMEWEB_WEB_THREADS, KMEWEB_WEB_TIMEOUT_S,
KMEWEB_WEB_GRACEFUL_TIMEOUT_S, KMEWEB_WORKER_TMP_DIR, PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# 127.0.0.1:8000 behind nginx on the same host; a unix socket works too (unix:/run/kmeweb/web.sock).
bind = os.environ.get("KMEWEB_BIND", "127.0.0.1:8000")
# Sane on 2 cores: 2 processes x 4 threads. Requests mostly wait on PostgreSQL and Redis.
workers = int(os.environ.get("KMEWEB_WEB_WORKERS", "2"))
threads = int(os.environ.get("KMEWEB_WEB_THREADS", "4"))
worker_class = "gthread"
# A worker that sends nothing for this long is killed. CSV downloads stream row by row (each
# chunk resets the clock), so a 100,000-device inventory is never cut off; the slowest
# non-streamed request (a large upload's validation) takes seconds.
timeout = int(os.environ.get("KMEWEB_WEB_TIMEOUT_S", "120"))
# On stop or reload, requests in progress (a long CSV download) get this long to finish.
graceful_timeout = int(os.environ.get("KMEWEB_WEB_GRACEFUL_TIMEOUT_S", "300"))
keepalive = 5
# Heartbeat files on a tmpfs: /dev/shm (a disk-backed /tmp can stall workers on slow disks).
worker_tmp_dir = os.environ.get(
    "KMEWEB_WORKER_TMP_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
)
# Access log on stderr (the journal) with the request id the app echoes in X-Request-Id.
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s ua="%(a)s"'
# gunicorn's own lines (start, worker boot, access) in the app's format: JSON objects with
# KMEWEB_LOG_FORMAT=json. The root logger is left to the app (kmeweb/logs.py), so app lines
# are written once, by the app's handler.
_json = os.environ.get("KMEWEB_LOG_FORMAT", "text").strip().lower() == "json"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": []},
    "loggers": {
        name: {"level": "INFO", "handlers": [handler], "propagate": False, "qualname": name}
        for name, handler in (("gunicorn.error", "error_console"), ("gunicorn.access", "console"))
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "kmeweb",
            "stream": "ext://sys.stdout",
        },
        "error_console": {
            "class": "logging.StreamHandler",
            "formatter": "kmeweb",
            "stream": "ext://sys.stderr",
        },
    },
    "formatters": {
        "kmeweb": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
        }
        if _json
        else {"format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"}
    },
}
# Behind nginx the client address comes from X-Forwarded-For, which the app reads itself
# (KMEWEB_PROXY_HOPS); gunicorn's own forwarded_allow_ips stays at its default.
proc_name = "kmeweb-web"
# gunicorn 25+ opens a control socket under $HOME by default: read-only under the unit's
# ProtectHome, and shared by every gunicorn of the user. kmeweb does not use gunicornc.
control_socket_disable = True

# prometheus-client's multiprocess mode: each gunicorn worker writes its counters to files in
# this directory and /metrics adds them up. It must exist before the app is imported and be
# emptied when gunicorn starts (stale files would count a previous run's requests).
_mp_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    str(Path(os.environ.get("RUNTIME_DIRECTORY", tempfile.gettempdir())) / "kmeweb-metrics"),
)


def on_starting(server) -> None:
    shutil.rmtree(_mp_dir, ignore_errors=True)
    Path(_mp_dir).mkdir(mode=0o700, parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _mp_dir)
