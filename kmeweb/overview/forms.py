"""The Overview's funnel filters (a GET form: it changes nothing)."""

from __future__ import annotations

from wtforms import SelectField
from wtforms.fields.choices import SelectChoice

from kmeweb.forms import FilterForm


class FunnelFilterForm(FilterForm):
    reseller = SelectField("Reseller", choices=[SelectChoice("", "All resellers")])
    profile = SelectField("Profile", choices=[SelectChoice("", "All profiles")])

    def set_choices(
        self, resellers: list[tuple[int, str]], profiles: list[tuple[int, str]]
    ) -> None:
        self.reseller.choices = [SelectChoice("", "All resellers")] + [
            SelectChoice(str(rid), name) for rid, name in resellers
        ]
        self.profile.choices = [SelectChoice("", "All profiles")] + [
            SelectChoice(str(pid), name) for pid, name in profiles
        ]

    def selected(self, name: str) -> int | None:
        """The chosen id of a filter that parsed, else None (all)."""
        field = self._fields[name]
        value = field.data
        if field.errors or not value or not str(value).isdigit():
            return None
        return int(value)
