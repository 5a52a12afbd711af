"""Admin › Users: the end users profiles and devices are associated with."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, flash, request, url_for
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from kmeweb import dialogs
from kmeweb.csvimport import ImportRejected, RowError, too_large_message
from kmeweb.directory import services
from kmeweb.directory.forms import DeleteUserForm, ImportForm, UserFilterForm, UserForm
from kmeweb.directory.models import EndUser
from kmeweb.extensions import db
from kmeweb.forms import submit
from kmeweb.htmx import is_htmx, redirect, render
from kmeweb.pagination import page_args, paginate

bp = Blueprint("directory", __name__, url_prefix="/admin/users")


@bp.get("/")
def index():
    """The end users, searchable, with where each is associated."""
    form = UserFilterForm()
    valid = form.validate_query()
    page, per_page = page_args(current_app.config.get("PAGE_SIZE", 50))
    search = None if form.q.errors else form.q.data
    users = paginate(db.session, services.users_query(search), page, per_page)
    usage = services.usage_counts(db.session, [u.id for u in users.items])
    return render(
        "directory/index.html",
        "directory/_list.html",
        code=200 if valid else 422,
        form=form,
        users=users,
        usage=usage,
    )


@bp.get("/new")
def new():
    """Add a user."""
    return render("directory/form.html", "directory/_form.html", form=UserForm(), user=None)


@bp.post("/new")
def create():
    """Save a new user."""
    form = UserForm()

    def done(user):
        flash(f"User {user.username} was added.", "success")
        return redirect(url_for("directory.index"))

    return submit(
        form,
        lambda: services.create_user(db.session, form.data, current_user),
        done,
        page="directory/form.html",
        partial="directory/_form.html",
        user=None,
    )


@bp.get("/<int:user_id>/edit")
def edit(user_id: int):
    """Edit a user."""
    user = services.get_user_or_404(db.session, user_id)
    form = UserForm(obj=user)
    return render("directory/form.html", "directory/_form.html", form=form, user=user)


@bp.post("/<int:user_id>/edit")
def update(user_id: int):
    """Save a user; a new username reaches KME for its profiles and devices."""
    user = services.get_user_or_404(db.session, user_id)
    form = UserForm()

    def done(saved):
        flash(f"User {saved.username} was saved.", "success")
        return redirect(url_for("directory.index"))

    return submit(
        form,
        lambda: services.update_user(db.session, user_id, form.data, current_user),
        done,
        page="directory/form.html",
        partial="directory/_form.html",
        user=user,
    )


def _delete_dialog(user: EndUser, form: DeleteUserForm, code: int = 200) -> Response:
    return render(
        "directory/delete.html",
        "directory/_delete.html",
        code=code,
        user=user,
        form=form,
        in_use=services.usage_words(db.session, user),
        modal=is_htmx(),
    )


@bp.get("/<int:user_id>/delete")
def delete_dialog(user_id: int):
    """Delete user: what still uses the user is said before anything is deleted."""
    user = services.get_user_or_404(db.session, user_id)
    return _delete_dialog(user, DeleteUserForm(formdata=None))


@bp.post("/<int:user_id>/delete")
def delete(user_id: int):
    """Delete a user; refused inside the dialog (409) while a profile or device uses it."""
    user = services.get_user_or_404(db.session, user_id)
    form = DeleteUserForm()

    def done(username: str) -> Response:
        flash(f"User {username} was deleted.", "success")
        return redirect(url_for("directory.index"))

    return dialogs.submit(
        form,
        lambda: services.delete_user(db.session, user_id, current_user),
        done,
        lambda code: _delete_dialog(user, form, code),
    )


@bp.get("/import")
def import_form():
    """CSV import of users."""
    return render("directory/import.html", "directory/_import.html", form=ImportForm(), report=None)


def _import_users(form: ImportForm, report: list[RowError]) -> tuple[int, int]:
    """Import the chosen file: (added, updated); a refused file's per-row errors go to
    `report` before ImportRejected (a ValidationError) goes on to the form."""
    config = current_app.config
    try:
        return services.import_users(
            db.session,
            form.file.data.stream,
            current_user,
            config["CSV_MAX_BYTES"],
            config["CSV_MAX_ROWS"],
        )
    except ImportRejected as err:
        report.extend(err.errors)
        raise


@bp.post("/import")
def import_csv():
    """Import the file: all rows or, with a per-row report, none."""
    form = ImportForm()
    report: list[RowError] = []

    def done(result: tuple[int, int]) -> Response:
        created, updated = result
        flash(f"Imported users: {created:,} added, {updated:,} updated.", "success")
        return redirect(url_for("directory.index"))

    return submit(
        form,
        lambda: _import_users(form, report),
        done,
        page="directory/import.html",
        partial="directory/_import.html",
        context=lambda: {"report": report},
    )


@bp.errorhandler(RequestEntityTooLarge)
def _body_too_large(err: RequestEntityTooLarge):
    """A body past MAX_CONTENT_LENGTH is refused (413) before any view reads it; for the
    import its message goes next to the file field, elsewhere the central answer."""
    if request.endpoint != "directory.import_csv":
        return err
    form = ImportForm(formdata=None)
    form.file.errors = [too_large_message(current_app.config["CSV_MAX_BYTES"])]
    response = render(
        "directory/import.html", "directory/_import.html", code=413, form=form, report=None
    )
    response.headers["Connection"] = "close"  # the rest of the body is never read
    return response
