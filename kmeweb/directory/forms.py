"""Forms of Admin › Users; kmeweb.directory.services rules."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import SearchField, StringField
from wtforms.validators import InputRequired, Length, Optional

from kmeweb.forms import FilterForm


class UserFilterForm(FilterForm):
    q = SearchField("Search users", validators=[Optional(), Length(max=254)])


class UserForm(FlaskForm):
    """Add and Edit of an end user."""

    username = StringField("Username", validators=[InputRequired("A username is required.")])
    email = StringField("Email", validators=[Optional()])
    display_name = StringField("Display name", validators=[Optional()])


class ImportForm(FlaskForm):
    """CSV import of users: username, email, display_name."""

    file = FileField("CSV file", validators=[InputRequired("Choose a CSV file.")])


class DeleteUserForm(FlaskForm):
    """Delete user (CSRF only; the user is named in the URL)."""
