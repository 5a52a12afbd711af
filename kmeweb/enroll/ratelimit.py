"""Rate limits of the enrollment endpoint: per client IP and per device, in Redis.

The counters live in the same storage as the sign-in limits (Flask-Limiter's storage,
RATELIMIT_STORAGE_URI, fixed windows). They are checked inside the view rather than by
decorators because the per-device key comes from the JSON body, which may only be read after
the size and content-type checks. When Redis does not answer, the limits go on in this
process's memory (as Flask-Limiter's in-memory fallback does for sign-in) and Redis is tried
again after FALLBACK_RETRY_S.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from flask import Flask, current_app
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from kmeweb.extensions import limiter

log = logging.getLogger("kmeweb.enroll")
FALLBACK_RETRY_S = 30.0
PREFIX = "kmeweb-enroll"


@dataclass
class _Limiters:
    redis: FixedWindowRateLimiter
    memory: FixedWindowRateLimiter
    redis_down_until: float = 0.0


def _limiters(app: Flask) -> _Limiters:
    found = app.extensions.get("kmeweb.enroll.limiters")
    if found is None:
        found = _Limiters(
            FixedWindowRateLimiter(limiter.storage), FixedWindowRateLimiter(MemoryStorage())
        )
        app.extensions["kmeweb.enroll.limiters"] = found
    return found


def _item(config_key: str) -> RateLimitItem:
    return parse(current_app.config[config_key])


def hit(config_key: str, scope: str, key: str) -> int | None:
    """Count one request against the limit named by `config_key` (e.g. "60 per minute").

    Returns None while under the limit, else the seconds until the window resets (for
    Retry-After, at least 1).
    """
    item = _item(config_key)
    lims = _limiters(current_app._get_current_object())
    ids = (PREFIX, scope, key)
    if time.monotonic() >= lims.redis_down_until:
        try:
            if lims.redis.hit(item, *ids):
                return None
            reset = lims.redis.get_window_stats(item, *ids).reset_time
            return max(1, math.ceil(reset - time.time()))
        except Exception as exc:  # noqa: BLE001 - any storage failure: fall back, never 500
            log.warning("enroll rate limit storage unreachable (%s); limits kept in memory", exc)
            lims.redis_down_until = time.monotonic() + FALLBACK_RETRY_S
    if lims.memory.hit(item, *ids):
        return None
    reset = lims.memory.get_window_stats(item, *ids).reset_time
    return max(1, math.ceil(reset - time.time()))
