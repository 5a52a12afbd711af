"""Forms of Admin › API tokens; kmeweb.apitokens.services rules (names, scopes a role may
hold, expiry)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import RadioField, SearchField, SelectMultipleField, StringField
from wtforms.validators import Length, Optional

from kmeweb.apitokens.models import READ_SCOPES, Scope, TokenKind
from kmeweb.apitokens.services import EXPIRY_DEFAULT_DAYS, EXPIRY_MAX_DAYS
from kmeweb.auth.models import AdminUser
from kmeweb.forms import FilterForm, choices


class TokenFilterForm(FilterForm):
    q = SearchField("Search tokens", validators=[Optional(), Length(max=80)])


class NewTokenForm(FlaskForm):
    """New token: a name, the kind (a service client for admins only), the scopes the
    signed-in person's role may hold, and the days until it expires."""

    name = StringField("Name", render_kw={"autocomplete": "off", "maxlength": 80})
    kind = RadioField(
        "Kind", choices=choices(TokenKind.labels().items()), default=TokenKind.PERSONAL
    )
    scopes = SelectMultipleField("Scopes", validate_choice=False)
    expires_in_days = StringField(
        "Expires in (days)",
        default=str(EXPIRY_DEFAULT_DAYS),
        description=f"1 to {EXPIRY_MAX_DAYS} days.",
        render_kw={"inputmode": "numeric", "autocomplete": "off"},
    )

    def offer(self, person: AdminUser) -> NewTokenForm:
        """Offer the scopes `person` may give a token: a viewer's token can only read."""
        scopes = Scope if person.can_write else READ_SCOPES
        self.scopes.choices = choices((s.value, s.label) for s in scopes)
        return self

    @property
    def service(self) -> bool:
        return self.kind.data == TokenKind.SERVICE


class RevokeForm(FlaskForm):
    """Revoke (CSRF only; the token is named in the URL)."""
