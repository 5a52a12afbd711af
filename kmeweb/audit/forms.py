from __future__ import annotations

from wtforms import DateField, SearchField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional, ValidationError

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
