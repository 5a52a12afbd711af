from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, SearchField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional, ValidationError

from kmeweb.audit.retention import Retention
from kmeweb.forms import FilterForm


class AuditFilterForm(FilterForm):
    """Filters of the audit log page; a bad date is shown next to its field."""

    actor = SearchField("Actor", validators=[Optional(), Length(max=254)])
    action = SelectField("Action", choices=[SelectChoice("", "All actions")], validate_choice=False)
    date_from = DateField(
        "From", validators=[Optional()], format="%Y-%m-%d", render_kw={"type": "date"}
    )
    date_to = DateField(
        "To", validators=[Optional()], format="%Y-%m-%d", render_kw={"type": "date"}
    )

    def set_actions(self, actions: list[str]) -> None:
        self.action.choices = [SelectChoice("", "All actions"), *(SelectChoice(a) for a in actions)]

    def validate_date_to(self, field: DateField) -> None:
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("“To” is before “From”.")


class RetentionForm(FlaskForm):
    """Audit log › Retention; the service (kmeweb.audit.retention) checks the days."""

    days = StringField(
        "Keep history for",
        validators=[Optional(), Length(max=12)],
        render_kw={"inputmode": "numeric", "autocomplete": "off", "placeholder": "forever"},
    )
    legal_hold = BooleanField("Legal hold")

    @classmethod
    def for_settings(cls, retention: Retention) -> RetentionForm:
        """The form showing the saved settings (never reads the request)."""
        days = "" if retention.days is None else str(retention.days)
        return cls(formdata=None, data={"days": days, "legal_hold": retention.legal_hold})

    def settings_data(self) -> dict[str, Any]:
        return {"days": self.days.data, "legal_hold": self.legal_hold.data}
