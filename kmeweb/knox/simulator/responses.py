"""JSON answers shared by the simulator's API and control endpoints."""

from __future__ import annotations

import json
from typing import Any

from flask import Response


class RawJson(str):
    """A response body that is already JSON text."""


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (RawJson text as is; None as an empty body)."""
    if isinstance(body, RawJson):
        text = str(body)
    else:
        text = "" if body is None else json.dumps(body, separators=(",", ":"))
    return Response(text, status=status, mimetype="application/json", headers=headers)


def bool_arg(value: Any) -> bool:
    """A JSON or query boolean ("true", "1", "yes", or a truthy value)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)
