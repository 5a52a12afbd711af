"""Configuration read from the environment.

Every setting has a development default except the secrets, which production
requires: `Config.from_env()` raises `ConfigError` naming the missing variable.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("KMEWEB_INSTANCE_DIR", BASE_DIR / "instance")).resolve()

MIN_SECRET_KEY_LENGTH = 32
REQUIRED_IN_PRODUCTION = (
    "SECRET_KEY",
    "KMEWEB_ENCRYPTION_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "KMEWEB_METRICS_TOKEN",
)

#: The one source of every tuning default: config key -> (type, default). Each is read from the
#: environment variable `KMEWEB_<key>`; code reads `app.config[key]` and never repeats a default.
TUNING: dict[str, tuple[type, str]] = {
    "KNOX_BATCH_SIZE": (int, "500"),  # device ids per KME request
    # werkzeug's password hash method for admin passwords (scrypt, its strong default)
    "PASSWORD_HASH_METHOD": (str, "scrypt"),
    "KNOX_MAX_CONCURRENCY": (int, "4"),  # KME calls in flight across all workers
    "KNOX_PAGE_SIZE": (int, "1000"),  # devices per devices/list page when pulling
    "KNOX_RETRY_ATTEMPTS": (int, "5"),
    "KNOX_RETRY_BASE_S": (float, "0.5"),
    "KNOX_RETRY_MAX_S": (float, "30"),
    "KNOX_CONNECT_TIMEOUT_S": (float, "5"),
    "KNOX_READ_TIMEOUT_S": (float, "30"),
    "CHANGE_LEASE_S": (float, "300"),
    "CHANGE_MAX_ATTEMPTS": (int, "8"),
    "CHANGE_RETRY_BASE_S": (float, "5"),
    "CHANGE_RETRY_MAX_S": (float, "600"),
    "SWEEP_INTERVAL_S": (float, "60"),
    "PULL_CURSOR_SKEW_S": (float, "2"),
    "PULL_STALE_S": (float, "600"),
    "PULL_TIMEOUT_S": (float, "3600"),  # RQ job_timeout of a pull (a million-device full pull)
    "PUSH_BUDGET_S": (float, "240"),
    "JOB_FAILURE_TTL_S": (float, "604800"),  # how long RQ keeps a failed job (7 days)
    "OVERVIEW_CACHE_S": (float, "30"),  # how long the Overview's funnel counts are reused
    "ALERT_INTERVAL_S": (float, "60"),  # how often alert conditions are checked
    "ALERT_MAX_ATTEMPTS": (int, "5"),  # attempts per alert before its destination is failing
    "ALERT_RETRY_BASE_S": (int, "30"),  # backoff: 30 s, 60 s, 120 s, ... between attempts
    "ALERT_TIMEOUT_S": (float, "10"),  # connect and read timeout of one webhook POST
    "CSV_MAX_ROWS": (int, "200000"),  # data rows per imported CSV file (design 6.4)
    "CSV_PREVIEW_TTL_S": (float, "3600"),  # how long a device import preview waits for Confirm
    "IMPORT_TIMEOUT_S": (float, "1800"),  # RQ job_timeout of a device import
    # The history purge (kmeweb.ops.retention): how often it runs while a retention is set,
    # how long one run may work (a worker runs one job at a time: short runs, often, keep the
    # pushes flowing), rows per transaction, and the pause between batches on SQLite.
    "PURGE_INTERVAL_S": (float, "600"),
    "PURGE_BUDGET_S": (float, "30"),
    "PURGE_BATCH_SIZE": (int, "5000"),
    "PURGE_PAUSE_S": (float, "0.1"),
}


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names it in one line."""


def _dev_secret(name: str, make) -> str:
    """Return a development secret kept under instance/ (never in the repo)."""
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    path = INSTANCE_DIR / f"dev-{name.lower()}"
    if not path.exists():
        write_private(path, make())
    return path.read_text().strip()


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, created 0600 (never readable, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o600)


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _json_object(env: dict[str, str], name: str) -> dict:
    raw = env.get(name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object")
    return value


OIDC_ROLES = ("admin", "viewer")


def _csv(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _oidc(env: dict[str, str]) -> dict:
    """Sign-in with an OpenID Connect provider: off unless KMEWEB_OIDC_ISSUER is set.

    KMEWEB_OIDC_ROLE_MAP maps the provider's groups to console roles as `group=role` pairs
    separated by commas (`kme-admins=admin,kme-viewers=viewer`); KMEWEB_OIDC_CLIENT_SECRET is
    the client secret encrypted with KMEWEB_ENCRYPTION_KEY (`flask oidc-encrypt-secret`).
    """
    issuer = env.get("KMEWEB_OIDC_ISSUER", "").strip().rstrip("/")
    role_map: dict[str, str] = {}
    for pair in _csv(env.get("KMEWEB_OIDC_ROLE_MAP")):
        group, sep, role = pair.rpartition("=")
        if not sep or not group.strip() or role.strip() not in OIDC_ROLES:
            raise ConfigError(
                "KMEWEB_OIDC_ROLE_MAP takes group=role pairs separated by commas, each role "
                f"admin or viewer (for example kme-admins=admin,kme-viewers=viewer), not {pair!r}"
            )
        role_map[group.strip()] = role.strip()
    if issuer:
        for name in ("KMEWEB_OIDC_CLIENT_ID", "KMEWEB_OIDC_CLIENT_SECRET"):
            if not env.get(name, "").strip():
                raise ConfigError(f"{name} is required when KMEWEB_OIDC_ISSUER is set")
        if not role_map:
            raise ConfigError(
                "KMEWEB_OIDC_ROLE_MAP is required when KMEWEB_OIDC_ISSUER is set: without it "
                "no group of the provider may use the console"
            )
    return {
        "OIDC_ISSUER": issuer,
        "OIDC_NAME": env.get("KMEWEB_OIDC_NAME", "").strip() or "your identity provider",
        "OIDC_DISCOVERY_URL": env.get("KMEWEB_OIDC_DISCOVERY_URL", "").strip(),
        "OIDC_CLIENT_ID": env.get("KMEWEB_OIDC_CLIENT_ID", "").strip(),
        "OIDC_CLIENT_SECRET": env.get("KMEWEB_OIDC_CLIENT_SECRET", "").strip(),
        "OIDC_SCOPES": env.get("KMEWEB_OIDC_SCOPES", "").strip() or "openid email profile",
        "OIDC_GROUPS_CLAIM": env.get("KMEWEB_OIDC_GROUPS_CLAIM", "").strip() or "groups",
        "OIDC_ROLE_MAP": role_map,
        "OIDC_ALLOWED_DOMAINS": [
            d.lower().lstrip("@") for d in _csv(env.get("KMEWEB_OIDC_ALLOWED_DOMAINS"))
        ],
        "OIDC_CREATE_ACCOUNTS": _bool(env.get("KMEWEB_OIDC_CREATE_ACCOUNTS"), default=True),
        "OIDC_ONLY": _bool(env.get("KMEWEB_OIDC_ONLY"), default=False),
        "OIDC_TIMEOUT_S": float(env.get("KMEWEB_OIDC_TIMEOUT_S", "5") or "5"),
    }


def from_env(environ: dict[str, str] | None = None) -> dict:
    """Build the Flask config mapping from environment variables.

    Raises ConfigError when KMEWEB_ENV=production and a secret is missing.
    """
    env = dict(os.environ if environ is None else environ)
    mode = env.get("KMEWEB_ENV", "development")
    if mode not in {"development", "production"}:
        raise ConfigError(f"KMEWEB_ENV must be development or production, not {mode!r}")
    if mode == "production":
        for name in REQUIRED_IN_PRODUCTION:
            if not env.get(name):
                raise ConfigError(f"{name} is required when KMEWEB_ENV=production")
        if len(env["SECRET_KEY"]) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(
                f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters in production"
            )

    secret_key = env.get("SECRET_KEY") or _dev_secret("SECRET_KEY", lambda: secrets.token_hex(32))
    enc_key = env.get("KMEWEB_ENCRYPTION_KEY") or _dev_secret("ENCRYPTION_KEY", _fernet_key)
    database_url = env.get("DATABASE_URL") or f"sqlite:///{INSTANCE_DIR / 'kmeweb.sqlite'}"
    redis_url = env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    secure = _bool(env.get("SESSION_COOKIE_SECURE"), default=mode == "production")

    csv_max_bytes = int(env.get("KMEWEB_CSV_MAX_BYTES", str(20 * 1024 * 1024)))
    try:
        proxy_hops = int(env.get("KMEWEB_PROXY_HOPS", "0") or "0")
    except ValueError:
        raise ConfigError("KMEWEB_PROXY_HOPS must be a whole number (0 without a proxy)") from None
    if proxy_hops < 0:
        raise ConfigError("KMEWEB_PROXY_HOPS must be a whole number (0 without a proxy)")
    log_format = env.get("KMEWEB_LOG_FORMAT", "text").strip().lower() or "text"
    if log_format not in {"text", "json"}:
        raise ConfigError(f"KMEWEB_LOG_FORMAT must be text or json, not {log_format!r}")
    old_keys = [k.strip() for k in env.get("KMEWEB_ENCRYPTION_KEYS_OLD", "").split(",")]
    old_keys = [k for k in old_keys if k]
    return {
        "KMEWEB_ENV": mode,
        # A request body may carry one CSV upload plus the form around it; larger is a 413.
        "MAX_CONTENT_LENGTH": csv_max_bytes + 1024 * 1024,
        "SECRET_KEY": secret_key,
        "KMEWEB_ENCRYPTION_KEY": enc_key,
        # Keys stored secrets may still be encrypted with (newest first); see rotate-encryption-key.
        "KMEWEB_ENCRYPTION_KEYS_OLD": old_keys,
        # Reverse proxies in front of gunicorn whose X-Forwarded-For/-Proto are trusted.
        "PROXY_HOPS": proxy_hops,
        # Bearer token for GET /metrics; unset in development means /metrics is open.
        "METRICS_TOKEN": env.get("KMEWEB_METRICS_TOKEN", ""),
        "LOG_FORMAT": log_format,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": redis_url,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": secure,
        "WTF_CSRF_TIME_LIMIT": None,
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI", redis_url),
        "RATELIMIT_HEADERS_ENABLED": True,
        # Redis down must not lock everyone out: limits go on per process, with a warning.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "CSV_MAX_BYTES": csv_max_bytes,
        "LOGIN_RATE_LIMIT": env.get("KMEWEB_LOGIN_RATE_LIMIT", "5 per minute"),
        "LOGIN_IP_RATE_LIMIT": env.get("KMEWEB_LOGIN_IP_RATE_LIMIT", "30 per minute"),
        # POST /enroll (the device side): body cap, and limits per client IP and per device.
        # A site enrolling a whole delivery behind one NAT address needs the IP limit high.
        "ENROLL_MAX_BYTES": int(env.get("KMEWEB_ENROLL_MAX_BYTES", "8192")),
        "ENROLL_IP_RATE_LIMIT": env.get("KMEWEB_ENROLL_IP_RATE_LIMIT", "600 per minute"),
        "ENROLL_DEVICE_RATE_LIMIT": env.get("KMEWEB_ENROLL_DEVICE_RATE_LIMIT", "10 per minute"),
        # Requests per API token (kmeweb.api): over it, 429 with Retry-After.
        "API_RATE_LIMIT": env.get("KMEWEB_API_RATE_LIMIT", "600 per minute"),
        "PAGE_SIZE": int(env.get("KMEWEB_PAGE_SIZE", "50")),
        "RQ_QUEUE_PREFIX": env.get("KMEWEB_RQ_PREFIX", ""),
        "KNOX_PATHS": _json_object(env, "KMEWEB_KNOX_PATHS"),
        # The console's address as admins reach it, for links in alerts (none when empty).
        "PUBLIC_URL": env.get("KMEWEB_PUBLIC_URL", "").rstrip("/"),
        "KNOX_CHANGED_AFTER_FORMAT": env.get("KMEWEB_KNOX_CHANGED_AFTER_FORMAT", "epoch_ms"),
        **_oidc(env),
        **{key: kind(env.get(f"KMEWEB_{key}", default)) for key, (kind, default) in TUNING.items()},
    }
