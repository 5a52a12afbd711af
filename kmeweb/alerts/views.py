"""Admin › Alerts: webhook destinations, Send test alert, recent deliveries."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, url_for
from flask_login import current_user

from kmeweb.alerts import jobs, services
from kmeweb.alerts.forms import ActionForm, DestinationForm
from kmeweb.alerts.models import EVENT_LABELS, TOKEN_DAYS_ALERT_DEFAULT, AlertEvent
from kmeweb.extensions import db
from kmeweb.forms import submit
from kmeweb.htmx import redirect, render
from kmeweb.operations.commit import on_commit
from kmeweb.profiles.services import TOKEN_DAYS_DEFAULT

bp = Blueprint("alerts", __name__, url_prefix="/admin/alerts")

FORM_PAGE = "alerts/form.html"
FORM_PARTIAL = "alerts/_form.html"


def _data(form: DestinationForm) -> dict:
    return {
        "name": form.name.data,
        "url": form.url.data,
        "secret": form.secret.data,
        "clear_secret": form.clear_secret.data,
        "events": form.events.data or [],
        "token_days": form.token_days.data,
        "upload_hours": form.upload_hours.data,
        "enabled": form.enabled.data,
    }


@bp.get("/")
def index():
    """The destinations, what each receives, and the latest deliveries."""
    return render(
        "alerts/index.html",
        "alerts/index.html",
        destinations=services.list_destinations(db.session),
        deliveries=services.recent_deliveries(db.session),
        labels=AlertEvent.labels(),
        action_form=ActionForm(),
        token_life=TOKEN_DAYS_DEFAULT,
        alert_days=TOKEN_DAYS_ALERT_DEFAULT,
    )


@bp.get("/deliveries")
def deliveries():
    """Recent deliveries alone (the table polls itself while one is on its way)."""
    return render(
        "alerts/_deliveries.html",
        "alerts/_deliveries.html",
        deliveries=services.recent_deliveries(db.session),
        labels=AlertEvent.labels(),
    )


@bp.get("/new")
def new():
    """Add a destination."""
    form = DestinationForm(formdata=None, data={"events": list(EVENT_LABELS)})
    return render(FORM_PAGE, FORM_PARTIAL, form=form, destination=None)


@bp.post("/new")
def create():
    """Save a new destination."""
    form = DestinationForm()

    def done(destination):
        flash(
            f"Alert destination “{destination.name}” was added. Send a test alert to check it.",
            "success",
        )
        return redirect(url_for("alerts.index"))

    return submit(
        form,
        lambda: services.create_destination(db.session, _data(form), current_user),
        done,
        page=FORM_PAGE,
        partial=FORM_PARTIAL,
        destination=None,
    )


@bp.get("/<int:destination_id>/edit")
def edit(destination_id: int):
    """Edit a destination (the secret field starts empty: it is write-only)."""
    destination = services.get_destination_or_404(db.session, destination_id)
    form = DestinationForm(obj=destination)
    form.secret.data = ""
    if not current_user.can_write:
        form.url.data = destination.display_url  # a webhook URL is a credential
    form.token_days.data = str(destination.token_days)
    form.upload_hours.data = str(destination.upload_hours)
    return render(FORM_PAGE, FORM_PARTIAL, form=form, destination=destination)


@bp.post("/<int:destination_id>/edit")
def update(destination_id: int):
    """Save a destination."""
    destination = services.get_destination_or_404(db.session, destination_id)
    form = DestinationForm()

    def done(saved):
        flash(f"Alert destination “{saved.name}” was saved.", "success")
        return redirect(url_for("alerts.index"))

    return submit(
        form,
        lambda: services.update_destination(db.session, destination_id, _data(form), current_user),
        done,
        page=FORM_PAGE,
        partial=FORM_PARTIAL,
        destination=destination,
    )


@bp.post("/<int:destination_id>/delete")
def delete(destination_id: int):
    """Delete a destination and its delivery history."""
    name = services.delete_destination(db.session, destination_id, current_user)
    db.session.commit()
    flash(f"Alert destination “{name}” was deleted.", "success")
    return redirect(url_for("alerts.index"))


@bp.post("/<int:destination_id>/test")
def test(destination_id: int):
    """Send test alert: queued for the worker, its result shows under Recent deliveries."""
    delivery_id = services.send_test(
        db.session, destination_id, current_user, current_app.config.get("PUBLIC_URL", "")
    )
    on_commit(db.session, lambda: jobs.enqueue_delivery(delivery_id))
    destination = services.get_destination_or_404(db.session, destination_id)
    name = destination.name
    db.session.commit()
    flash(
        f"A test alert to “{name}” was queued: its result shows under Recent deliveries "
        "in a few seconds (reload the page).",
        "success",
    )
    return redirect(url_for("alerts.index"))
