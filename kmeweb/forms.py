"""The form pattern every page follows: WTForms parses, services rule, one helper joins them.

A view builds its Flask-WTF form and hands `submit()` the service call. Bad input (the
form's own validators, or a `ValidationError` a service raises) re-renders the form with
422 and every typed value kept: the whole page for a plain POST, the form partial alone for
htmx. Nothing a failed service call flushed survives: the session is rolled back. On success
the helper commits and returns what `on_success` builds (a redirect, usually). See
docs/web.md for an example.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import Response, request
from flask_wtf import FlaskForm
from wtforms import Form
from wtforms.fields.choices import SelectChoice

from kmeweb.errors import DomainError, ValidationError
from kmeweb.extensions import db
from kmeweb.htmx import render

T = TypeVar("T")


def attach_error(form: Form, err: DomainError, fields: Mapping[str, str] | None = None) -> None:
    """Put a service's message on the form field it names, or on the form itself (each of
    them for ValidationErrors). `fields` maps a service's field name to the form's where they
    differ.
    """
    for one in err.each():
        name = (fields or {}).get(one.field or "", one.field)
        field = form._fields.get(name) if name else None
        if field is not None:
            field.errors = [*field.errors, one.message]
        else:
            form.form_errors.append(one.message)


def submit(
    form: FlaskForm,
    action: Callable[[], T],
    on_success: Callable[[T], Response],
    *,
    page: str,
    partial: str,
    fields: Mapping[str, str] | None = None,
    context: Callable[[], dict[str, Any]] | None = None,
    **values: Any,
) -> Response:
    """Validate `form`, run `action`, commit and answer `on_success(result)`.

    On invalid input (the form's validators or a service's ValidationError) rolls the
    session back and renders `page` (plain request) or `partial` (htmx) with status 422;
    the template gets `form`, `values` and whatever `context()` returns (computed only
    then). Other DomainErrors (Conflict, NotFound) go to the central handlers.
    """
    if form.validate_on_submit():
        try:
            result = action()
        except ValidationError as err:
            db.session.rollback()
            attach_error(form, err, fields)
        else:
            db.session.commit()
            return on_success(result)
    return invalid(form, page=page, partial=partial, context=context, **values)


def invalid(
    form: Form,
    *,
    page: str,
    partial: str,
    context: Callable[[], dict[str, Any]] | None = None,
    **values: Any,
) -> Response:
    """The form again, with its errors, as a 422 page or partial."""
    extra = context() if context is not None else {}
    return render(page, partial, code=422, form=form, **extra, **values)


class FilterForm(Form):
    """A GET form over the query string (no CSRF: it changes nothing)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(formdata=request.args, **kwargs)

    def validate_query(self) -> bool:
        """Validate only when the query string carries any of this form's fields."""
        if not any(name in request.args for name in self._fields):
            return True
        return self.validate()


def choices(pairs: Any) -> list[SelectChoice]:
    """SelectChoice options from (value, label) pairs (WTForms 3.3 deprecates tuples)."""
    return [SelectChoice(value, label) for value, label in pairs]


def user_search_attrs(options_url: str) -> dict[str, str]:
    """The Select User picker's search box, wired for htmx: what is typed asks `options_url`
    for the matching options of the `end_user_id` list (Enter does not submit the form)."""
    return {
        "hx-get": options_url,
        "hx-trigger": "input changed delay:250ms, search",
        "hx-target": "#end_user_id",
        "hx-include": "#end_user_id",
        "hx-swap": "innerHTML",
        "data-no-enter": "",
        "autocomplete": "off",
    }
