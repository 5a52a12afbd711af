"""Idempotency-Key: a POST retried with the same key gets the first answer (the same
operation), never a second action; the same key with another body is a 422. Keys are kept per
token for 24 hours (kmeweb.apitokens.services.forget_old_idempotency_keys).

The key is claimed (a row with no answer yet) and committed before the route runs, so two
copies of a request sent at once cannot both act: the second finds the claim and gets a 409
until the first has answered. An answer that is not a success releases the key, so a
corrected retry may use it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Response, g, make_response, request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from kmeweb.apitokens.models import IdempotencyKey
from kmeweb.errors import ApiProblem
from kmeweb.extensions import db

HEADER = "Idempotency-Key"
KEY_MAX = 255


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.query_string.decode(), ""):
        digest.update(part.encode() + b"\0")
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def _replay(row: IdempotencyKey) -> Response:
    response = Response(row.body or "", status=row.status, mimetype="application/json")
    if row.location:
        response.headers["Location"] = row.location
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _claim(token_id: int, key: str, fingerprint: str) -> Response | None:
    """The stored answer of an earlier request with this key, or None once claimed."""
    row = db.session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.token_id == token_id, IdempotencyKey.key == key)
    )
    if row is None:
        db.session.add(IdempotencyKey(token_id=token_id, key=key, fingerprint=fingerprint))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            raise ApiProblem(
                409, "idempotency_in_progress", "A request with this key is being answered."
            ) from None
        return None
    if row.fingerprint != fingerprint:
        raise ApiProblem(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was used with another request; use a new key.",
            [{"field": HEADER, "message": "Already used with a different body."}],
        )
    if row.status is None:
        raise ApiProblem(
            409, "idempotency_in_progress", "A request with this key is being answered."
        )
    return _replay(row)


def _settle(token_id: int, key: str, response: Response | None) -> None:
    """Keep a success for replays; release the key after anything else."""
    db.session.rollback()
    where = (IdempotencyKey.token_id == token_id, IdempotencyKey.key == key)
    if response is None or not 200 <= response.status_code < 300:
        db.session.execute(delete(IdempotencyKey).where(*where))
    else:
        row = db.session.scalar(select(IdempotencyKey).where(*where))
        if row is not None:
            row.status = response.status_code
            row.body = response.get_data(as_text=True)
            row.location = response.headers.get("Location")
    db.session.commit()


def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def honoured(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        if not key.strip() or len(key) > KEY_MAX:
            raise ApiProblem(
                422,
                "invalid",
                f"An Idempotency-Key is 1 to {KEY_MAX} characters.",
                [{"field": HEADER, "message": "Use a fresh random value, such as a UUID."}],
            )
        token_id = g.api_caller.token_id
        replay = _claim(token_id, key, _fingerprint())
        if replay is not None:
            return replay
        response = None
        try:
            response = make_response(view(*args, **kwargs))
        finally:
            _settle(token_id, key, response)
        return response

    return honoured
