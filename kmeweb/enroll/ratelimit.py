"""Rate limits of the enrollment endpoint: per client IP and per device, in Redis.

Fixed windows (as the sign-in limits use), in the rate-limit Redis (RATELIMIT_STORAGE_URI).
They are checked inside the view rather than by Flask-Limiter decorators because the
per-device key comes from the JSON body, which may only be read after the size and
content-type checks; and every limit a request counts against goes to Redis in ONE round trip
(a small Lua script), which is most of what the limits cost per request. Each thread sends it
on a connection of its own, held for the thread's life: taking one from the pool and giving
it back (a lock, a readiness poll, the retry wrapper) cost as much CPU as the round trip.

When Redis does not answer, the limits go on in this process's memory (as Flask-Limiter's
in-memory fallback does for sign-in) and Redis is tried again after FALLBACK_RETRY_S.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import redis
from flask import Flask, current_app
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from redis.commands.core import Script
from redis.exceptions import NoScriptError

log = logging.getLogger("kmeweb.enroll")
FALLBACK_RETRY_S = 30.0
PREFIX = "kmeweb-enroll"

# KEYS: one counter per limit; ARGV: each window in seconds. Returns count, ttl per key.
_HIT = """
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  local ttl = redis.call('TTL', key)
  if ttl < 0 then
    redis.call('EXPIRE', key, ARGV[i])
    ttl = tonumber(ARGV[i])
  end
  out[#out + 1] = n
  out[#out + 1] = ttl
end
return out
"""


@dataclass
class _Limiters:
    client: redis.Redis | None
    script: Script | None
    memory: FixedWindowRateLimiter = field(
        default_factory=lambda: FixedWindowRateLimiter(MemoryStorage())
    )
    redis_down_until: float = 0.0
    #: Each thread's own connection (`_connection`), taken from the client's pool once.
    held: threading.local = field(default_factory=threading.local)


def _connection(lims: _Limiters) -> redis.Connection:
    conn = getattr(lims.held, "conn", None)
    if conn is None:
        conn = lims.held.conn = lims.client.connection_pool.get_connection()
    return conn


def _run_script(lims: _Limiters, keys: list[str], args: list[int]) -> list[int]:
    """The Lua script on this thread's connection: EVALSHA, or EVAL when Redis does not know
    it yet (a restarted Redis). Raises redis.RedisError; the connection is then dropped, and
    the next call connects again."""
    conn = _connection(lims)
    try:
        try:
            conn.send_command("EVALSHA", lims.script.sha, len(keys), *keys, *args)
            return conn.read_response()
        except NoScriptError:
            conn.send_command("EVAL", _HIT, len(keys), *keys, *args)
            return conn.read_response()
    except (redis.RedisError, OSError):
        conn.disconnect()
        raise


def limiters(app: Flask) -> _Limiters:
    """This app's Redis client, script and in-memory fallback (made on first use)."""
    found = app.extensions.get("kmeweb.enroll.limiters")
    if found is None:
        uri = app.config["RATELIMIT_STORAGE_URI"]
        client = script = None
        if uri.startswith(("redis://", "rediss://", "unix://")):
            client = redis.Redis.from_url(uri, socket_timeout=1.0, socket_connect_timeout=1.0)
            script = client.register_script(_HIT)
        found = _Limiters(client, script)
        app.extensions["kmeweb.enroll.limiters"] = found
    return found


@lru_cache(maxsize=64)
def _parsed(limit: str) -> RateLimitItem:
    return parse(limit)


def _items(config_keys: Sequence[str]) -> list[RateLimitItem]:
    config = current_app.config
    return [_parsed(config[k]) for k in config_keys]


def hit(limits: Sequence[tuple[str, str, str]]) -> int | None:
    """Count one request against each (config key, scope, key) limit, e.g.
    ("ENROLL_IP_RATE_LIMIT", "ip", "10.0.0.1"), the config naming "600 per minute".

    Returns None while every limit holds, else the seconds until the window of the one that
    is exceeded resets (for Retry-After, at least 1).
    """
    items = _items([config_key for config_key, _scope, _key in limits])
    lims = limiters(current_app._get_current_object())
    if lims.script is not None and time.monotonic() >= lims.redis_down_until:
        keys = [
            f"{PREFIX}:{scope}:{item.amount}/{item.get_expiry()}:{key}"
            for item, (_c, scope, key) in zip(items, limits, strict=True)
        ]
        try:
            out = _run_script(lims, keys, [item.get_expiry() for item in items])
        except (redis.RedisError, OSError) as exc:
            log.warning("enroll rate limit storage unreachable (%s); limits kept in memory", exc)
            lims.redis_down_until = time.monotonic() + FALLBACK_RETRY_S
        else:
            waits = [
                max(1, int(out[2 * i + 1]))
                for i, item in enumerate(items)
                if int(out[2 * i]) > item.amount
            ]
            return max(waits) if waits else None
    waits = []
    for item, (_c, scope, key) in zip(items, limits, strict=True):
        if not lims.memory.hit(item, PREFIX, scope, key):
            reset = lims.memory.get_window_stats(item, PREFIX, scope, key).reset_time
            waits.append(max(1, math.ceil(reset - time.time())))
    return max(waits) if waits else None
