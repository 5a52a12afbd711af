"""Forms of the device table and its actions: WTForms coerces, kmeweb.devices.services rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    PasswordField,
    SearchField,
    SelectField,
    StringField,
)
from wtforms.validators import InputRequired, Length, Optional

from kmeweb.devices.selection import (
    KME_FILTERS,
    REGISTRATION_FILTERS,
    SYNC_FILTERS,
    DeviceFilter,
    DeviceSelection,
    kme_value,
    rule_value,
)
from kmeweb.forms import FilterForm, choices, user_search_attrs
from kmeweb.ids import parse_number
from kmeweb.profiles.models import Profile

DEVICE_SORTS = {
    "imei": "IMEI",
    "serial": "Serial",
    "model": "Model",
    "registered": "Registration",
    "sync": "Sync state",
}


class DeviceFilterForm(FilterForm):
    """Search, filters and sort of a profile's device table."""

    q = SearchField("Search devices", validators=[Optional(), Length(max=100)])
    registration = SelectField(
        "Registration",
        choices=choices(REGISTRATION_FILTERS.items()),
        default="",
    )
    sync = SelectField(
        "Sync state",
        choices=choices(SYNC_FILTERS.items()),
        default="",
    )
    # Its choices are the rules that placed devices in the profile (with_rules); another id
    # filters too (the table then says no device matches), anything else filters nothing.
    rule = SelectField(
        "Placed by rule", choices=choices([("", "Any")]), default="", validate_choice=False
    )
    kme = SelectField("Samsung", choices=choices(KME_FILTERS.items()), default="")
    sort = SelectField("Sort by", choices=choices(DEVICE_SORTS.items()), default="imei")
    order = SelectField(
        "Order", choices=choices([("asc", "Ascending"), ("desc", "Descending")]), default="asc"
    )

    def _value(self, name: str) -> Any:
        field = self[name]
        return None if field.errors else field.data

    def device_filter(self) -> DeviceFilter:
        """The filter the table shows (a field with an error filters nothing)."""
        return DeviceFilter(
            q=self._value("q") or "",
            registration=self._value("registration") or "",
            sync=self._value("sync") or "",
            rule=rule_value(self._value("rule")),
            kme=kme_value(self._value("kme")),
        )

    def with_rules(self, rules: Iterable[tuple[int, str]]) -> DeviceFilterForm:
        """The "Placed by rule" choices: Any, then `rules` ((id, name) pairs), and the rule
        filtered by now when it is not among them."""
        pairs = [(str(rule_id), name) for rule_id, name in rules]
        chosen = rule_value(self.rule.data)
        if chosen and chosen not in {value for value, _name in pairs}:
            pairs.append((chosen, f"Rule #{chosen}"))
        self.rule.choices = choices([("", "Any"), *pairs])
        self.rule.data = chosen
        return self

    def ordering(self) -> tuple[str, bool]:
        """(DEVICE_SORTS key, descending)."""
        sort = self._value("sort")
        return (sort if sort in DEVICE_SORTS else "imei"), self._value("order") == "desc"


class SelectionForm(FlaskForm):
    """A device selection carried by a dialog: ids, or "all N matching" the table's filters."""

    # The ids themselves are repeated `device_ids` inputs (templates/profiles/_dialog.html).
    all_matching = HiddenField()
    q = HiddenField()
    registration = HiddenField()
    sync = HiddenField()
    rule = HiddenField()
    kme = HiddenField()
    from_profile_id = HiddenField()
    #: The device page the dialog was opened from (its id): the action goes back there.
    back = HiddenField()

    def carry(self, selection: DeviceSelection) -> None:
        """Fill the hidden fields, so that the dialog posts the same selection back."""
        self.from_profile_id.data = str(selection.profile_id)
        if selection.all_matching:
            self.all_matching.data = "1"
            self.q.data = selection.filter.q
            self.registration.data = selection.filter.registration
            self.sync.data = selection.filter.sync
            self.rule.data = selection.filter.rule
            self.kme.data = selection.filter.kme


class MoveForm(SelectionForm):
    # Nothing chosen until the admin chooses: the first option is no profile.
    profile_id = SelectField(
        "Move to",
        choices=[],
        validate_choice=False,
        validators=[InputRequired("Choose a Samsung Knox Mobile Enrollment profile.")],
    )

    def with_targets(self, targets: Iterable[Profile]) -> MoveForm:
        """The profiles the devices can move to, after a blank "Choose a profile" option."""
        self.profile_id.choices = choices(
            [("", "Choose a profile"), *((str(p.id), p.name) for p in targets)]
        )
        return self


class DeleteDevicesForm(SelectionForm):
    """Delete (Default Profile) and Unassign: the selection is all they take."""


class PortalForm(SelectionForm):
    """Send ours again / Take Samsung's: the selection, and how many devices it held when the
    dialog showed its counts (nothing is done when that changed meanwhile)."""

    expected_count = HiddenField()

    def expected(self) -> int | None:
        return parse_number(self.expected_count.data)


class AttributeRowForm(Form):
    key = StringField("Attribute", validators=[Optional(), Length(max=64)])
    value = StringField("Value", validators=[Optional(), Length(max=500)])
    remove = BooleanField("Remove")


class AttributesForm(SelectionForm):
    rows = FieldList(FormField(AttributeRowForm), min_entries=1, max_entries=50)

    def row_values(self) -> list[dict[str, Any]]:
        """The rows as kmeweb.devices.services.attribute_changes takes them."""
        return [
            {"key": e.form.key.data, "value": e.form.value.data, "remove": bool(e.form.remove.data)}
            for e in self.rows.entries
        ]


class ImportForm(FlaskForm):
    """Import devices: the CSV file (kmeweb.devices.importer rules it)."""

    file = FileField("CSV file", validators=[InputRequired("Choose a CSV file.")])


class ConfirmImportForm(FlaskForm):
    """Confirm import of a preview (CSRF only; the preview is named in the URL)."""


class DeviceUserForm(FlaskForm):
    """Change Associated User of one device (the device page): a user picker and, optionally,
    a new enrollment password."""

    end_user_id = SelectField(
        "Associated User", choices=choices([("", "No user")]), validate_choice=False
    )
    user_search = SearchField("Search users", validators=[Optional(), Length(max=254)])
    password = PasswordField("Enrollment password", validators=[Optional(), Length(max=245)])

    def with_users(self, users: Iterable[tuple[int, str]], options_url: str) -> DeviceUserForm:
        """The picker's options ("No user", then `users` as (id, label)) and its search box
        wired for htmx (`options_url` answers the options for what was typed)."""
        self.end_user_id.choices = choices(
            [("", "No user"), *((str(i), label) for i, label in users)]
        )
        self.end_user_id.render_kw = {"size": 5}
        self.user_search.render_kw = user_search_attrs(options_url)
        return self
