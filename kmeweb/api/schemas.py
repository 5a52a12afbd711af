"""Models every route shares: the problem body, and the base of every answer."""

from __future__ import annotations

from typing import Any

from flask import url_for
from pydantic import BaseModel, ConfigDict, Field


class Out(BaseModel):
    """The base of every answer model: built from ORM rows by attribute."""

    model_config = ConfigDict(from_attributes=True)


class FieldError(BaseModel):
    field: str = Field(description="The field at fault: a body or query field, dotted")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem (application/problem+json)."""

    type: str = Field(description="A link to the code's entry in the API reference")
    title: str
    status: int
    code: str = Field(description="Stable name of this kind of error, for scripts")
    detail: str
    request_id: str
    errors: list[FieldError] | None = None


class Accepted(BaseModel):
    """A 202: the work runs as an operation; follow `operation_url` for progress."""

    operation_id: int | None = Field(description="None when nothing had to go to KME")
    operation_url: str | None
    devices: int = Field(description="How many devices the action covers")

    @classmethod
    def answer(cls, operation_id: int | None, devices: int) -> tuple[Any, ...]:
        """The 202: this body, with `Location` when there is an operation to follow."""
        if operation_id is None:
            return cls(operation_id=None, operation_url=None, devices=devices), 202
        url = url_for("api.get_operation", operation_id=operation_id)
        body = cls(operation_id=operation_id, operation_url=url, devices=devices)
        return body, 202, {"Location": url}


class Counted(BaseModel):
    """A dry run: what the action would cover, with nothing written."""

    dry_run: bool = True
    devices: int


class Message(BaseModel):
    detail: str
