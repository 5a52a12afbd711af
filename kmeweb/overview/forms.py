"""The Overview's funnel filters (a GET form: it changes nothing)."""

from __future__ import annotations

from markupsafe import Markup, escape
from wtforms import SelectField, ValidationError

from kmeweb.forms import FilterForm

NOT_A_CHOICE = "Not a valid choice: pick one from the list."


class FunnelFilterForm(FilterForm):
    """Reseller and profile filters. A tenant may have a thousand profiles: the options are
    plain (value, label) pairs that the template writes out, and a value is checked against
    a set of ids (WTForms' own select widget and choice check are slow at that size)."""

    reseller = SelectField("Reseller", validate_choice=False)
    profile = SelectField("Profile", validate_choice=False)

    def set_choices(
        self, resellers: list[tuple[int, str]], profiles: list[tuple[int, str]]
    ) -> None:
        self.options = {
            "reseller": [("", "All resellers")] + [(str(i), name) for i, name in resellers],
            "profile": [("", "All profiles")] + [(str(i), name) for i, name in profiles],
        }
        self._ids = {
            "reseller": {str(i) for i, _ in resellers},
            "profile": {str(i) for i, _ in profiles},
        }

    def options_html(self, name: str) -> Markup:
        """The <option>s of one filter, the chosen one selected (built here: a template loop
        over a thousand profiles costs more than the rest of the page)."""
        chosen = str(self._fields[name].data or "")
        return Markup(
            "".join(
                f'<option value="{escape(value)}"{" selected" if value == chosen else ""}>'
                f"{escape(label)}</option>"
                for value, label in self.options[name]
            )
        )

    def _check(self, name: str, value: str | None) -> None:
        if value and value not in self._ids[name]:
            raise ValidationError(NOT_A_CHOICE)

    def validate_reseller(self, field: SelectField) -> None:
        self._check("reseller", field.data)

    def validate_profile(self, field: SelectField) -> None:
        self._check("profile", field.data)

    def selected(self, name: str) -> int | None:
        """The chosen id of a filter that parsed, else None (all)."""
        field = self._fields[name]
        value = field.data
        if field.errors or not value or value not in self._ids[name]:
            return None
        return int(value)
