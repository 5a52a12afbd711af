"""Forms of Admin › Alerts; kmeweb.alerts.services rules."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from kmeweb.alerts.models import EVENT_LABELS, TOKEN_DAYS_ALERT_DEFAULT
from kmeweb.profiles.services import TOKEN_DAYS_DEFAULT

# Admin › Alerts says how the threshold meets the token life of a new profile.
TOKEN_DAYS_HELP = (
    f"Token expiring: alert this many days before (1 to 365). A new profile's token lasts "
    f"{TOKEN_DAYS_DEFAULT} days, so with {TOKEN_DAYS_ALERT_DEFAULT} the alert comes "
    f"{TOKEN_DAYS_DEFAULT - TOKEN_DAYS_ALERT_DEFAULT} days after the profile was made unless "
    "its token is extended. Only tokens that devices still need alert: profiles with devices "
    "not registered yet, not using registration without token."
)


class DestinationForm(FlaskForm):
    """Add and Edit of a webhook destination. The shared secret is write-only: the field
    starts empty and an empty field keeps the stored secret."""

    name = StringField("Name", render_kw={"autocomplete": "off"})
    url = StringField(
        "Webhook URL",
        render_kw={"type": "url", "inputmode": "url", "autocomplete": "off", "spellcheck": "false"},
    )
    secret = PasswordField("Shared secret", render_kw={"autocomplete": "new-password"})
    clear_secret = BooleanField("Remove the stored secret (send unsigned alerts)")
    events = SelectMultipleField(
        "Events",
        choices=[SelectChoice(key, label) for key, label in EVENT_LABELS.items()],
        validate_choice=False,
        validators=[Optional()],
    )
    token_days = StringField(
        "Days before expiry",
        default=str(TOKEN_DAYS_ALERT_DEFAULT),
        description=TOKEN_DAYS_HELP,
        render_kw={"inputmode": "numeric"},
    )
    upload_hours = StringField("Hours waiting", default="24", render_kw={"inputmode": "numeric"})
    enabled = BooleanField("Send alerts to this destination", default=True)


class ActionForm(FlaskForm):
    """A button that changes something (Send test alert, Delete): only the CSRF token."""
