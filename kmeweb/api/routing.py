"""How an API route is declared: one decorator that names the method, the path, the scope the
caller needs and the models of the query, the body and each answer::

    @api.get("/operations/<int:operation_id>", scope=Scope.OPERATIONS_READ,
             answers={200: OperationOut, 404: None}, tag="operations")
    def operation(operation_id: int) -> OperationOut:
        ...

spectree validates the query and body against the models (a mismatch is a 422 problem naming
the field) and puts the route in the OpenAPI document; the common refusals (401, 403, 422,
429) are documented on every route. Every POST honours Idempotency-Key.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, current_app, g, request
from flask import Response as FlaskResponse
from pydantic import BaseModel
from spectree import Response, SecurityScheme, SpecTree
from spectree.models import SecureType, SecuritySchemeData

from kmeweb.api.auth import authenticate, rate_key, require_scope
from kmeweb.api.idempotency import idempotent
from kmeweb.api.schemas import Problem
from kmeweb.apitokens.models import Scope
from kmeweb.errors import ApiProblem
from kmeweb.extensions import limiter

API_VERSION = "1.0.0"
DESCRIPTION = """\
Every action of the kmeweb console, for scripts and other systems. A change made here is
queued, sent to Samsung Knox Mobile Enrollment, audited and shown in the console exactly like
one made in a browser.

Authenticate with `Authorization: Bearer <token>`; create tokens under Admin › API tokens.
Each route names the scope it needs. Errors are `application/problem+json` (RFC 9457) with a
stable `code`. Lists page with `limit` (up to 1,000) and the opaque `next_cursor` of the
previous page. Actions on many devices answer 202 with an operation to follow; send an
`Idempotency-Key` header to make a POST safe to retry. Timestamps are ISO 8601 in UTC.
"""


def _validation_problem(_req: Any, _resp: Any, error: Any, _instance: Any, *_: Any) -> None:
    """spectree's hook before each view: a request that does not match its models is a 422
    problem naming each field at fault (instead of spectree's own error body)."""
    if error is None:
        return
    errors = [
        {"field": ".".join(str(p) for p in e.get("loc", ())) or "body", "message": e["msg"]}
        for e in error.errors()
    ]
    raise ApiProblem(422, "invalid", "The request does not match its schema.", errors)


spec = SpecTree(
    "flask",
    title="kmeweb API",
    version=API_VERSION,
    description=DESCRIPTION,
    # spectree leaves every rule under /<path> out of the document (its own pages would live
    # there; kmeweb serves none): a path no route has, or /api/v1/... would all be left out.
    path="_spectree",
    mode="strict",
    page_templates={},
    before=_validation_problem,
    validation_error_model=Problem,
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
    security_schemes=[
        SecurityScheme(
            name="bearer",
            data=SecuritySchemeData(
                type=SecureType.HTTP, scheme="bearer", description="An API token"
            ),
        )
    ],
)

# Text no database column holds: a NUL (PostgreSQL refuses it) or a lone UTF-16 surrogate
# (no encoding writes it), which a JSON body can carry as an escape ("\u0000", "\ud800").
NOT_TEXT = re.compile("[\x00\ud800-\udfff]")


def _unstorable(value: Any, where: str) -> str | None:
    """The dotted field of the first string in `value` (keys too) that is not text."""
    if isinstance(value, str):
        return (where or "body") if NOT_TEXT.search(value) else None
    if isinstance(value, dict):
        pairs: Any = value.items()
    elif isinstance(value, list):
        pairs = enumerate(value)
    else:
        return None
    for key, item in pairs:
        field = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and NOT_TEXT.search(key):
            return field
        if found := _unstorable(item, field):
            return found
    return None


def refuse_unstorable_text() -> None:
    """before_request of the API, after the token: a JSON body with text no column can hold
    is a 400 naming the field, never a database error (query strings: kmeweb.security)."""
    if request.method in ("GET", "HEAD", "DELETE") or not request.is_json:
        return
    field = _unstorable(request.get_json(silent=True), "")
    if field is not None:
        raise ApiProblem(
            400,
            "bad_request",
            "Text may not contain NUL characters or lone surrogates.",
            [{"field": field, "message": "Not text a database can store."}],
        )


bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.before_request(authenticate)
bp.before_request(refuse_unstorable_text)
limiter.limit(
    lambda: current_app.config.get("API_RATE_LIMIT", "600 per minute"),
    key_func=rate_key,
    scope="api",
)(bp)

# Refusals every authenticated route may answer.
COMMON_ANSWERS: dict[int, str] = {
    400: "Text no database can store (a NUL character or a lone surrogate)",
    401: "No token, or one that is unknown, revoked or expired",
    403: "The token lacks the route's scope",
    422: "The request does not match its schema, or a rule refused it",
    429: "Too many requests for this token; see Retry-After",
}


def _streamed(view: Callable[..., Any]) -> Callable[..., Any]:
    """A raw route's Response (CSV, NDJSON) handed to spectree as its body iterable, status and
    headers: spectree reads a Response's whole body (get_data) to validate it, which would
    build a 100,000-row download in memory instead of streaming it."""

    @wraps(view)
    def unwrapped(*args: Any, **kwargs: Any) -> Any:
        result = view(*args, **kwargs)
        if isinstance(result, FlaskResponse) and result.is_streamed:
            return result.response, result.status_code, list(result.headers.items())
        return result

    return unwrapped


class ApiRoutes:
    """The decorators route modules declare their routes with (see the module docstring)."""

    def route(
        self,
        method: str,
        rule: str,
        *,
        scope: Scope | None,
        tag: str,
        answers: dict[int, type[BaseModel] | None],
        query: type[BaseModel] | None = None,
        body: type[BaseModel] | None = None,
        raw: bool = False,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            codes = {f"HTTP_{code}": model for code, model in answers.items()}
            for code in COMMON_ANSWERS:
                codes.setdefault(f"HTTP_{code}", Problem)
            for code, model in list(codes.items()):
                if model is None and int(code[5:]) >= 400:
                    codes[code] = Problem
            validated = spec.validate(
                query=query,
                json=body,
                resp=Response(**codes),
                tags=[tag],
                security={"bearer": [scope.value]} if scope else {"bearer": []},
                operation_id=view.__name__,
                skip_validation=raw and query is None and body is None,
            )(_streamed(view) if raw else view)
            handler = require_scope(scope)(validated)
            if method == "POST":
                handler = idempotent(handler)
            handler.api_scope = scope  # type: ignore[attr-defined]
            bp.add_url_rule(rule, view.__name__, handler, methods=[method])
            return view

        return decorate

    def get(self, rule: str, **kwargs: Any):
        return self.route("GET", rule, **kwargs)

    def post(self, rule: str, **kwargs: Any):
        return self.route("POST", rule, **kwargs)

    def patch(self, rule: str, **kwargs: Any):
        return self.route("PATCH", rule, **kwargs)

    def put(self, rule: str, **kwargs: Any):
        return self.route("PUT", rule, **kwargs)

    def delete(self, rule: str, **kwargs: Any):
        return self.route("DELETE", rule, **kwargs)


api = ApiRoutes()


def caller() -> Any:
    """Who the request acts as (kmeweb.apitokens.services.Caller): the actor every service
    call of an API route is given."""
    return g.api_caller


def arg(name: str) -> str | None:
    return request.args.get(name)
