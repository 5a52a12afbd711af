"""The JSON API, /api/v1: every action of the console's pages for scripts, on the same services.

- Who: a bearer token (kmeweb.apitokens) per request; a session cookie never authorises a call,
  and no call needs a CSRF token. Each route names the one scope it needs (`kmeweb.api.routing`).
- What: each route's request and answer are pydantic models, validated by spectree, which also
  generates the OpenAPI 3.1 document from them (`/api/v1/openapi.json`): the document cannot
  describe a body the code does not check.
- Errors: RFC 9457 problem+json with a stable `code` (kmeweb.errors.problem).
- Lists page by an opaque cursor (kmeweb.api.paging); bulk actions answer 202 with their
  operation; a POST with an Idempotency-Key answers a retry with the first answer
  (kmeweb.api.idempotency); profiles and routing rules carry an ETag and honour If-Match
  (kmeweb.api.etag).

The route modules import `api` from kmeweb.api.routing; `init_app` registers them.
"""

from __future__ import annotations

from flask import Flask

from kmeweb.api import (  # noqa: F401  (each module adds its routes to the blueprint)
    audit,
    devices,
    docs,
    integration,
    operations,
    profiles,
    rules,
    uploads,
    users,
)
from kmeweb.api.routing import bp
from kmeweb.extensions import csrf


def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
