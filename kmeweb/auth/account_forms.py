"""Forms of Admin › Accounts and of the set-password link page; the rules are
kmeweb.auth.accounts's (the forms only parse)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    EmailField,
    HiddenField,
    PasswordField,
    RadioField,
    SearchField,
    SelectField,
    StringField,
)
from wtforms.validators import Length, Optional

from kmeweb.auth.accounts import NAME_MAX, SEARCH_MAX, AccountStatus, Credential
from kmeweb.auth.models import ROLES, SignIn
from kmeweb.forms import FilterForm, choices

ROLE_LABELS = {"admin": "Admin", "viewer": "Viewer"}


def role_choices() -> list:
    return choices((role, ROLE_LABELS[role]) for role in ROLES)


class AccountFilterForm(FilterForm):
    q = SearchField("Search accounts", validators=[Optional(), Length(max=SEARCH_MAX)])
    status = SelectField(
        "Status",
        choices=choices([("", "Any status"), *AccountStatus.labels().items()]),
        default="",
        validate_choice=False,
    )


class NewAccountForm(FlaskForm):
    """Add account: who, the role, how they sign in, and (password) how they get it."""

    email = EmailField("Email", render_kw={"autocomplete": "off", "maxlength": 254})
    name = StringField("Name", render_kw={"autocomplete": "off", "maxlength": NAME_MAX})
    role = RadioField("Role", choices=role_choices(), default="viewer", validate_choice=False)
    sign_in = RadioField(
        "Signs in with",
        choices=choices(SignIn.labels().items()),
        default=SignIn.PASSWORD,
        validate_choice=False,
    )
    credential = RadioField(
        "The first password",
        choices=choices(Credential.labels().items()),
        default=Credential.LINK,
        validate_choice=False,
    )


class RoleForm(FlaskForm):
    role = RadioField("Role", choices=role_choices(), validate_choice=False)


class ResetPasswordForm(FlaskForm):
    credential = RadioField(
        "The new password",
        choices=choices(Credential.labels().items()),
        default=Credential.LINK,
        validate_choice=False,
    )


class BreakGlassForm(FlaskForm):
    """Mark ("1") or unmark ("0"): the state wanted, so a repeated post changes nothing."""

    break_glass = HiddenField()

    @property
    def wanted(self) -> bool:
        return self.break_glass.data == "1"


class ConfirmForm(FlaskForm):
    """Deactivate, reactivate, end sessions (CSRF only; the account is named in the URL)."""


class SetPasswordForm(FlaskForm):
    password = PasswordField(
        "New password", render_kw={"autocomplete": "new-password", "maxlength": 200}
    )
    confirm = PasswordField(
        "The same password again", render_kw={"autocomplete": "new-password", "maxlength": 200}
    )
