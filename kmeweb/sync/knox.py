"""Build the Knox client for the integration, throttled across every worker on every host."""

from __future__ import annotations

import time
import uuid
from typing import Any

import requests
from flask import current_app
from redis import Redis

from kmeweb import crypto
from kmeweb.integration.models import AuthMode, Integration
from kmeweb.knox import KnoxClient, KnoxConfig, RetryPolicy
from kmeweb.operations.queue import redis_connection
from kmeweb.ops.metrics import knox_observer

# Atomically drop expired holders, then take a slot if fewer than LIMIT are held.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[3]))
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 1)
  return 1
end
return 0
"""


class KnoxSemaphore:
    """A counting semaphore in Redis: at most `limit` KME calls in flight across all workers.

    A holder that dies frees its slot after `ttl` seconds (longer than any call may take).
    """

    def __init__(
        self, redis: Redis, limit: int, key: str = "kmeweb:knox:inflight", ttl: float = 120
    ):
        self.redis, self.limit, self.key, self.ttl = redis, limit, key, ttl
        self._acquire = redis.register_script(_ACQUIRE)

    def acquire(self, timeout: float = 300.0) -> str:
        token = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            if self._acquire(keys=[self.key], args=[time.time(), self.limit, self.ttl, token]):
                return token
            if time.monotonic() > deadline:
                raise TimeoutError("no free KME API slot (KMEWEB_KNOX_MAX_CONCURRENCY)")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def release(self, token: str) -> None:
        self.redis.zrem(self.key, token)

    def holders(self) -> int:
        return int(self.redis.zcard(self.key))


class ThrottledSession(requests.Session):
    """A requests session whose every HTTP call holds a KnoxSemaphore slot."""

    def __init__(self, semaphore: KnoxSemaphore) -> None:
        super().__init__()
        self.semaphore = semaphore

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        token = self.semaphore.acquire()
        try:
            return super().send(request, **kwargs)
        finally:
            self.semaphore.release(token)


def knox_config(integration: Integration) -> KnoxConfig:
    """The client configuration for the integration (decrypts its secret)."""
    values = {
        c: getattr(integration, c)
        for c in ("auth_mode", "base_url", "token_url", "client_id", "customer_id")
    }
    values["encryption_public_key"] = integration.encryption_public_key
    return config_for(values, crypto.decrypt(integration.secret_enc), integration.settings or {})


def config_for(values: dict[str, Any], secret: str | None, settings: dict[str, Any]) -> KnoxConfig:
    """The client configuration for integration column `values`, the plaintext `secret` and
    the integration's `settings` knobs (also used to test settings before they are saved)."""
    cfg = current_app.config
    common: dict[str, Any] = {
        "base_url": values["base_url"],
        "auth_mode": values["auth_mode"],
        "customer_id": values.get("customer_id") or None,
        "encryption_public_key": values.get("encryption_public_key") or None,
        "batch_size": int(cfg["KNOX_BATCH_SIZE"]),
        "page_size": int(settings.get("page_size") or cfg["KNOX_PAGE_SIZE"]),
        # Unconfirmed Samsung paths: KMEWEB_KNOX_PATHS, then the integration's own settings.
        "paths": {**cfg["KNOX_PATHS"], **(settings.get("paths") or {})},
        "changed_after_format": settings.get("changed_after_format")
        or cfg["KNOX_CHANGED_AFTER_FORMAT"],
        "connect_timeout": float(cfg["KNOX_CONNECT_TIMEOUT_S"]),
        "read_timeout": float(cfg["KNOX_READ_TIMEOUT_S"]),
        "retry": RetryPolicy(
            max_attempts=int(cfg["KNOX_RETRY_ATTEMPTS"]),
            base_delay=float(cfg["KNOX_RETRY_BASE_S"]),
            max_delay=float(cfg["KNOX_RETRY_MAX_S"]),
        ),
    }
    if settings.get("scope"):
        common["scope"] = settings["scope"]
    if values["auth_mode"] == AuthMode.LEGACY:
        return KnoxConfig(keys_json=secret, client_identifier=values.get("client_id"), **common)
    return KnoxConfig(
        client_id=values.get("client_id"),
        client_secret=secret,
        token_url=values.get("token_url") or None,
        **common,
    )


def knox_client(integration: Integration, redis: Redis | None = None) -> KnoxClient:
    """A client for the integration whose calls share the global concurrency limit."""
    redis = redis or redis_connection()
    semaphore = KnoxSemaphore(redis, int(current_app.config["KNOX_MAX_CONCURRENCY"]))
    return KnoxClient(
        knox_config(integration),
        session=ThrottledSession(semaphore),
        observer=knox_observer(redis),  # kmeweb_knox_requests_total, _request_seconds
    )
