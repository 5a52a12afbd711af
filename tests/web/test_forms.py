"""The form pattern every page copies: kmeweb.forms.submit() with a real Flask-WTF form."""

from __future__ import annotations

import pytest
from flask import url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from jinja2 import ChoiceLoader, DictLoader
from sqlalchemy import func, select
from wtforms import IntegerField, StringField
from wtforms.validators import InputRequired, Length

from kmeweb.audit import services as audit
from kmeweb.audit.models import AuditEvent
from kmeweb.errors import ValidationError
from kmeweb.extensions import db
from kmeweb.forms import submit
from kmeweb.htmx import redirect
from tests.conftest import csrf_token_from

TEMPLATES = {
    "widgets/_form.html": """{% from "_macros/forms.html" import field, form_errors %}
<form id="widget-form" method="post" novalidate>{{ form.csrf_token }}
{{ form_errors(form) }}{{ field(form.name) }}{{ field(form.size) }}</form>""",
    "widgets/new.html": """{% extends "base.html" %}{% block content %}<h1>New widget</h1>
{% include "widgets/_form.html" %}<p>{{ hint }}</p>{% endblock %}""",
}


class WidgetForm(FlaskForm):
    name = StringField("Name", validators=[InputRequired(), Length(max=40)])
    size = IntegerField("Size", validators=[InputRequired()])


def create_widget(session, name: str, size: int, actor) -> AuditEvent:
    """A stand-in service: flushes an audit row, then applies its rules."""
    event = audit.record(session, actor, "widget.create", "widget", None, {"name": name})
    session.flush()
    if name == "taken":
        raise ValidationError("a widget called taken exists", field="name")
    if size > 10:
        raise ValidationError("the shelf holds widgets up to size 10")  # no field
    return event


@pytest.fixture
def widgets(app):
    app.jinja_loader = ChoiceLoader([DictLoader(TEMPLATES), app.jinja_loader])

    @app.route("/_test/widgets/new", methods=["GET", "POST"], endpoint="widgets_new")
    def _new():
        form = WidgetForm()
        return submit(
            form,
            lambda: create_widget(db.session, form.name.data, form.size.data, current_user),
            lambda event: redirect(url_for("audit.index")),
            page="widgets/new.html",
            partial="widgets/_form.html",
            context=lambda: {"hint": "sizes go up to 10"},
        )

    return "/_test/widgets/new"


def _widget_events(session) -> int:
    return session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "widget.create")
    )


def _post(client, path, data, htmx=False):
    token = csrf_token_from(client.get("/audit/").get_data(as_text=True))
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(path, data={**data, "csrf_token": token}, headers=headers)


def test_success_commits_and_redirects(client, login, widgets, session):
    login("admin")
    response = _post(client, widgets, {"name": "bolt", "size": "3"})
    assert response.status_code == 303 and response.headers["Location"] == "/audit/"
    session.expire_all()
    assert _widget_events(session) == 1


def test_service_error_lands_on_its_field_with_values_kept_and_nothing_written(
    client, login, widgets, session
):
    login("admin")
    response = _post(client, widgets, {"name": "taken", "size": "3"})
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "<h1>New widget</h1>" in body and "sizes go up to 10" in body  # the whole page
    assert 'id="name-error"' in body and "a widget called taken exists" in body
    assert 'aria-invalid="true"' in body
    assert 'value="taken"' in body and 'value="3"' in body
    session.expire_all()
    assert _widget_events(session) == 0  # the flushed audit row was rolled back


def test_error_without_a_field_is_shown_on_the_form(client, login, widgets, session):
    login("admin")
    response = _post(client, widgets, {"name": "crate", "size": "11"}, htmx=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "the shelf holds widgets up to size 10" in body
    assert "<html" not in body and 'id="widget-form"' in body  # the partial alone for htmx
    assert 'value="crate"' in body
    assert "HX-Request" in response.headers["Vary"]


def test_form_validators_answer_422_before_the_service_runs(client, login, widgets, session):
    login("admin")
    response = _post(client, widgets, {"name": "", "size": "many"})
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="name-error"' in body and 'id="size-error"' in body
    assert 'value="many"' in body
    assert _widget_events(session) == 0
