"""Prometheus metrics: GET /metrics in the text format.

Three sources, so that any one web process reports the whole system:

* Shared state (outbox, last pull/push, RQ queues and workers, operations, devices, tokens)
  is read from the database and Redis at scrape time. The device and token counts scan the
  device table, too slow for a scrape with a million devices: the sweeper job (every minute,
  on a worker) counts them into Redis and a scrape reads that (`kmeweb_inventory_counted_
  timestamp_seconds` says when); a scrape counts them itself only when Redis has no count.
* Web request counters come from prometheus-client in this process or, with several gunicorn
  workers, from its multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, see deploy/gunicorn.conf.py).
* Knox call counters and latencies are recorded by whichever process makes the call (RQ work
  horses mostly; they are forked per job and die with it) into Redis hashes, and read back
  here: one scrape target for every worker on every host, no port per worker to open or list
  (README, "Metrics").
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from flask import Flask, Response, current_app, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from sqlalchemy import case, func, select

from kmeweb.devices.models import Approval, Device
from kmeweb.extensions import db, utcnow
from kmeweb.integration.models import Integration
from kmeweb.operations.models import Operation, OperationKind, OperationStatus
from kmeweb.operations.queue import QUEUES
from kmeweb.outbox.models import Change, ChangeStatus
from kmeweb.profiles.models import Profile, ProfileKind

disable_created_metrics()  # no *_created series: they double the output and nobody graphs them

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Knox call latency buckets (seconds): Samsung answers in tens of milliseconds to seconds.
KNOX_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, math.inf)
HTTP_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Web request metrics of this process (several gunicorn workers: multiprocess files).
HTTP_REGISTRY = CollectorRegistry(auto_describe=True)
HTTP_REQUESTS = Counter(
    "kmeweb_http_requests",
    "Web requests answered, by Flask endpoint and HTTP status.",
    ["endpoint", "status"],
    registry=HTTP_REGISTRY,
)
HTTP_SECONDS = Histogram(
    "kmeweb_http_request_seconds",
    "Time to the response's first byte, by Flask endpoint.",
    ["endpoint"],
    buckets=HTTP_BUCKETS,
    registry=HTTP_REGISTRY,
)

#: How this process names itself in kmeweb_knox_requests_total{worker}: `flask worker --label`
#: (default the host name); "web" in the web processes.
WORKER_LABEL = "web"

INVENTORY_TTL_S = 600
OUTBOX_STATES = {"pending": "pending", "running": "in_flight", "failed": "failed"}
DEVICE_STATES = ("pending_approval", "approved", "in_kme_profile", "registered")
TOKEN_WINDOWS = ("7d", "30d", "expired")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


def _key(name: str, config: Any = None) -> str:
    prefix = (config or current_app.config).get("RQ_QUEUE_PREFIX", "")
    return f"{prefix}kmeweb:metrics:{name}"


# --- Knox calls (recorded by the caller, aggregated in Redis) --------------------------------


def knox_observer(redis: Redis, config: Any = None):
    """The KnoxClient observer that adds each HTTP attempt to the Redis-held metrics."""
    total_key, bucket_key, sum_key = (
        _key("knox_total", config),
        _key("knox_bucket", config),
        _key("knox_sum", config),
    )

    def observe(endpoint: str, status: str, seconds: float) -> None:
        pipe = redis.pipeline(transaction=False)
        pipe.hincrby(total_key, f"{endpoint}\t{status}\t{WORKER_LABEL}", 1)
        for bound in KNOX_BUCKETS:
            if seconds <= bound:
                pipe.hincrby(bucket_key, f"{endpoint}\t{bound}", 1)
        pipe.hincrbyfloat(sum_key, endpoint, seconds)
        pipe.execute()

    return observe


def _knox_families(redis: Redis) -> Iterator[Any]:
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(_key("knox_total"))
    pipe.hgetall(_key("knox_bucket"))
    pipe.hgetall(_key("knox_sum"))
    totals, buckets, sums = pipe.execute()
    requests_total = CounterMetricFamily(
        "kmeweb_knox_requests",
        "Knox API HTTP attempts, by endpoint, HTTP status (or timeout/connection_error) and "
        "the worker that made them.",
        labels=["endpoint", "status", "worker"],
    )
    for field, value in sorted(totals.items()):
        endpoint, status, worker = field.decode().split("\t")
        requests_total.add_metric([endpoint, status, worker], int(value))
    yield requests_total
    by_endpoint: dict[str, dict[float, int]] = {}
    for field, value in buckets.items():
        endpoint, bound = field.decode().split("\t")
        by_endpoint.setdefault(endpoint, {})[float(bound)] = int(value)
    latency = HistogramMetricFamily(
        "kmeweb_knox_request_seconds",
        "Knox API HTTP attempt latency, by endpoint (all workers).",
        labels=["endpoint"],
    )
    for endpoint, counts in sorted(by_endpoint.items()):
        series = [("+Inf" if math.isinf(b) else repr(b), counts.get(b, 0)) for b in KNOX_BUCKETS]
        total_sum = float(sums.get(endpoint.encode(), 0))
        latency.add_metric([endpoint], series, total_sum)
    yield latency


# --- Shared state read at scrape time ---------------------------------------------------------


def count_inventory(session) -> dict[str, Any]:
    """Device and token counts (one pass over each table); stored in Redis by the sweeper."""
    # "In a KME profile": assigned in KME (not the Default Profile, not self-maintained).
    in_kme = select(Profile.id).where(Profile.kind == ProfileKind.KME)
    row = session.execute(
        select(
            func.sum(case((Device.approval == Approval.PENDING, 1), else_=0)),
            func.sum(case((Device.approval == Approval.APPROVED, 1), else_=0)),
            func.sum(case((Device.profile_id.in_(in_kme), 1), else_=0)),
            func.sum(case((Device.registered_at.is_not(None), 1), else_=0)),
        )
    ).one()
    devices = dict(zip(DEVICE_STATES, (int(v or 0) for v in row), strict=True))
    now = utcnow()
    expires = Profile.token_expires_at
    tokens_row = session.execute(
        select(
            func.sum(case((expires.between(now, now + timedelta(days=7)), 1), else_=0)),
            func.sum(case((expires.between(now, now + timedelta(days=30)), 1), else_=0)),
            func.sum(case((expires < now, 1), else_=0)),
        ).where(Profile.token.is_not(None), expires.is_not(None))
    ).one()
    tokens = dict(zip(TOKEN_WINDOWS, (int(v or 0) for v in tokens_row), strict=True))
    return {"devices": devices, "tokens": tokens, "counted_at": time.time()}


def refresh_inventory(session, redis: Redis) -> dict[str, Any]:
    """Count devices and tokens now and keep the counts in Redis for scrapes."""
    counts = count_inventory(session)
    redis.set(_key("inventory"), json.dumps(counts), ex=INVENTORY_TTL_S)
    return counts


def _inventory(redis: Redis) -> dict[str, Any]:
    raw = redis.get(_key("inventory"))
    if raw:
        return json.loads(raw)
    return refresh_inventory(db.session, redis)


def _database_families() -> Iterator[Any]:
    session = db.session
    outbox = GaugeMetricFamily(
        "kmeweb_outbox_changes", "Outbox changes not yet confirmed by KME.", labels=["state"]
    )
    counts = dict(
        session.execute(
            select(Change.status, func.count())
            .where(Change.status.in_([ChangeStatus.PENDING, ChangeStatus.RUNNING, "failed"]))
            .group_by(Change.status)
        ).all()
    )
    for status, label in OUTBOX_STATES.items():
        outbox.add_metric([label], counts.get(status, 0))
    yield outbox
    oldest = session.scalar(
        select(func.min(Change.created_at)).where(Change.status == ChangeStatus.PENDING)
    )
    yield GaugeMetricFamily(
        "kmeweb_outbox_oldest_pending_seconds",
        "Age of the oldest pending outbox change (0 when none waits).",
        value=max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0,
    )
    integration = session.scalars(select(Integration).limit(1)).first()
    for name, attr, text in (
        ("kmeweb_last_pull_success_timestamp_seconds", "last_pull_at", "last successful pull"),
        ("kmeweb_last_push_success_timestamp_seconds", "last_push_at", "last successful push"),
    ):
        value = getattr(integration, attr, None) if integration else None
        yield GaugeMetricFamily(
            name, f"Unix time of the {text} (0: never).", value=value.timestamp() if value else 0
        )
    durations = GaugeMetricFamily(
        "kmeweb_pull_duration_seconds",
        "Duration of the last finished pull, full and incremental.",
        labels=["kind"],
    )
    for kind, label in ((OperationKind.PULL_FULL, "full"), (OperationKind.PULL, "incremental")):
        row = session.execute(
            select(Operation.started_at, Operation.finished_at)
            .where(Operation.kind == kind, Operation.status == OperationStatus.DONE)
            .where(Operation.finished_at.is_not(None), Operation.started_at.is_not(None))
            .order_by(Operation.id.desc())
            .limit(1)
        ).first()
        if row is not None:
            durations.add_metric([label], (row.finished_at - row.started_at).total_seconds())
    yield durations
    ops = GaugeMetricFamily(
        "kmeweb_operations", "Operations by kind and state.", labels=["kind", "state"]
    )
    for kind, status, n in session.execute(
        select(Operation.kind, Operation.status, func.count()).group_by(
            Operation.kind, Operation.status
        )
    ).all():
        ops.add_metric([kind, status], n)
    yield ops
    session.rollback()


def _redis_families(redis: Redis) -> Iterator[Any]:
    prefix = current_app.config.get("RQ_QUEUE_PREFIX", "")
    pipe = redis.pipeline(transaction=False)
    for name in QUEUES:
        pipe.llen(f"rq:queue:{prefix}{name}")
    pipe.scard("rq:workers")
    *lengths, workers = pipe.execute()
    queued = GaugeMetricFamily(
        "kmeweb_rq_queue_jobs", "Jobs waiting in an RQ queue.", labels=["queue"]
    )
    for name, n in zip(QUEUES, lengths, strict=True):
        queued.add_metric([name], n)
    yield queued
    yield GaugeMetricFamily("kmeweb_rq_workers", "RQ workers alive (all hosts).", value=workers)
    inventory = _inventory(redis)
    devices = GaugeMetricFamily("kmeweb_devices", "Devices by state.", labels=["state"])
    for state in DEVICE_STATES:
        devices.add_metric([state], inventory["devices"].get(state, 0))
    yield devices
    tokens = GaugeMetricFamily(
        "kmeweb_tokens_expiring",
        "Profile enrollment tokens expiring within 7 or 30 days, or already expired.",
        labels=["within"],
    )
    for window in TOKEN_WINDOWS:
        tokens.add_metric([window], inventory["tokens"].get(window, 0))
    yield tokens
    yield GaugeMetricFamily(
        "kmeweb_inventory_counted_timestamp_seconds",
        "When kmeweb_devices and kmeweb_tokens_expiring were counted (the sweeper recounts).",
        value=inventory["counted_at"],
    )
    yield from _knox_families(redis)


class SharedStateCollector(Collector):
    """Everything read from the database and Redis; a source that fails is reported as down."""

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily(
            "kmeweb_metrics_source_up",
            "1 when this scrape could read the source, 0 when it failed.",
            labels=["source"],
        )
        families: list[Any] = []
        for source, produce in (
            ("database", _database_families),
            ("redis", lambda: _redis_families(_scrape_redis())),
        ):
            try:
                families.extend(produce())
                up.add_metric([source], 1)
            except Exception:  # noqa: BLE001 - a scrape reports what it can read
                current_app.logger.warning("metrics: %s unreadable", source, exc_info=True)
                db.session.rollback()
                up.add_metric([source], 0)
        yield up
        yield from families


_scrape_clients: dict[str, Redis] = {}


def _scrape_redis() -> Redis:
    """One client (and connection pool) per Redis URL and process, with short timeouts."""
    url = current_app.config["REDIS_URL"]
    client = _scrape_clients.get(url)
    if client is None:
        client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        _scrape_clients[url] = client
    return client


class _Exposition:
    """What generate_latest reads: each source's collect() once (a registry would also
    call collect() to learn the names, doubling the database and Redis reads)."""

    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Any]:
        for collector in self.collectors:
            yield from collector.collect()


def render() -> bytes:
    """The whole exposition for one scrape."""
    mp_dir = multiprocess_dir()
    if mp_dir:
        web = multiprocess.MultiProcessCollector(None, path=mp_dir)
    else:
        web = HTTP_REGISTRY
    return generate_latest(_Exposition(web, SharedStateCollector()))  # type: ignore[arg-type]


def init_app(app: Flask) -> None:
    """Count and time every web request by endpoint."""

    @app.before_request
    def _start_timer() -> None:
        request.environ["kmeweb.started"] = time.perf_counter()

    app.after_request(count_request)


def count_request(response: Response) -> Response:
    """Count and time the request by endpoint (after_request)."""
    endpoint = request.url_rule.endpoint if request.url_rule is not None else "unmatched"
    observe_request(endpoint, response.status_code, request.environ.get("kmeweb.started"))
    return response


def observe_request(endpoint: str, status: int, started: float | None) -> None:
    """Count one answered request of `endpoint` by status, and its time since `started` (a
    time.perf_counter() reading; None: not timed). The enrollment lane calls it directly."""
    HTTP_REQUESTS.labels(endpoint, str(status)).inc()
    if started is not None:
        HTTP_SECONDS.labels(endpoint).observe(time.perf_counter() - started)


def set_worker_label(label: str | None) -> None:
    global WORKER_LABEL  # noqa: PLW0603 - one label per process, set once at worker start
    WORKER_LABEL = label or socket.gethostname()
