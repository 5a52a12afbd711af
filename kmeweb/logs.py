"""Process logging: text lines (default) or, with KMEWEB_LOG_FORMAT=json, one JSON object per
line (python-json-logger) carrying time, level, logger, request id or job id, user id, message.

No code logs a credential and the Knox client scrubs its error texts; `RedactFilter` is the
safety net: it replaces this process's configured secrets (SECRET_KEY, the encryption keys, the
metrics token) and `Bearer ...` / `password=...` shaped text before a record is written.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import IO, Any

from flask import Flask, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter
from rq import get_current_job

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_REDACTED = "[redacted]"
_SHAPES = re.compile(
    r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}|((?:password|secret|token)[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&]{4,}"
)


class ContextFilter(logging.Filter):
    """Adds request_id, job_id and user_id (None when not known) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = None
        record.user_id = None
        if has_request_context():
            record.request_id = request.environ.get("kmeweb.request_id")
            user = g.get("_login_user")  # only if this request already loaded it: no query here
            record.user_id = getattr(user, "id", None)
        record.job_id = _job_id()
        return True


def _job_id() -> str | None:
    try:
        job = get_current_job()
    except Exception:  # noqa: BLE001 - outside a job or without Redis
        return None
    return job.id if job is not None else None


class RedactFilter(logging.Filter):
    """Replaces known secret values and secret-shaped text in the formatted message."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = [s for s in (secrets or []) if s and len(s) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _SHAPES.sub(lambda m: (m.group(1) or m.group(2) or "") + _REDACTED, message)
        for secret in self.secrets:
            cleaned = cleaned.replace(secret, _REDACTED)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(request_id)s %(job_id)s %(user_id)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def make_handler(fmt: str, secrets: list[str], stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter(secrets))
    handler.setFormatter(json_formatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler._kmeweb = True  # type: ignore[attr-defined]  # ours: replaced, never doubled
    return handler


def _secrets(config: Any) -> list[str]:
    return [
        config.get("SECRET_KEY") or "",
        config.get("KMEWEB_ENCRYPTION_KEY") or "",
        *config.get("KMEWEB_ENCRYPTION_KEYS_OLD", []),
        config.get("METRICS_TOKEN") or "",
    ]


def install(app: Flask, stream: IO[str] | None = None, fmt: str | None = None) -> logging.Handler:
    """Put one kmeweb handler on the root logger (replacing an earlier one) at INFO."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_kmeweb", False)]:
        root.removeHandler(old)
    fmt = fmt or app.config.get("LOG_FORMAT", "text")
    handler = make_handler(fmt, _secrets(app.config), stream)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def configure(app: Flask) -> None:
    """Logging for a served or worker process; tests keep pytest's capture (caplog)."""
    if app.debug or app.testing:
        return
    install(app)
