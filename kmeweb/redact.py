"""Secrets kept out of what every signed-in account reads (the audit log's details).

Audit details are shown to viewers too and never expire, so the audit writer
(`kmeweb.audit.services.record`) passes every event's details through `redact_details`:

- a value under a secret's key (password, secret, token, private key, keys.json, credentials,
  authorization...) becomes HIDDEN; empty values, booleans and numbers stay (`without_token:
  true` says nothing secret);
- a URL under a webhook's key (`url`, `webhook_url`) keeps its scheme and host only
  (`mask_url`): the path of a Slack or Teams incoming webhook is its credential;
- every other URL, wherever it appears in a string, loses its `user:password@` and the values
  of credential query parameters (`token=`, `key=`, `sig=`...).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HIDDEN = "(hidden)"
MASK = "…"

SECRET_KEY = re.compile(
    r"(^|_)(password|passwd|passphrase|pin|secret|secrets|token|private|private_key|keys_json|"
    r"keys_file|credential|credentials|authorization|api_key|apikey|client_identifier)$",
    re.IGNORECASE,
)
WEBHOOK_KEY = re.compile(r"^(url|webhook|webhook_url|destination_url|callback_url)$", re.I)
CREDENTIAL_PARAM = re.compile(
    r"(^|_)(token|key|secret|sig|signature|password|pass|auth|code|credential|apikey)$", re.I
)
URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")


def mask_url(url: str) -> str:
    """`scheme://host[:port]/…`: the URL without userinfo, and its path and query masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return HIDDEN
    if not parts.scheme or not host:
        return HIDDEN
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    tail = MASK if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{netloc}/{tail}"


def scrub_url(url: str) -> str:
    """The URL without its userinfo, and with the values of credential query parameters
    masked; the path stays (a server URL is no secret)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return HIDDEN
    netloc = parts.netloc
    if "@" in netloc and host:
        netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(CREDENTIAL_PARAM.search(k) for k, _ in pairs):
            query = urlencode([(k, MASK if CREDENTIAL_PARAM.search(k) else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub_text(text: str) -> str:
    """`text` with every URL in it scrubbed (`scrub_url`)."""
    if "://" not in text:
        return text
    return URL_IN_TEXT.sub(lambda m: scrub_url(m.group(0)), text)


def _is_secret_value(value: Any) -> bool:
    return not (value is None or value == "" or isinstance(value, bool | int | float))


def redact_details(value: Any, key: str = "") -> Any:
    """A copy of audit `details` (nested dicts and lists) that holds no secret."""
    if key and SECRET_KEY.search(key) and _is_secret_value(value):
        return HIDDEN
    if isinstance(value, dict):
        return {k: redact_details(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_details(v, key) for v in value]
    if isinstance(value, str):
        if key and WEBHOOK_KEY.search(key) and "://" in value:
            return mask_url(value.strip())
        return scrub_text(value)
    return value
