"""Forms of Admin › Routing rules: WTForms coerces, kmeweb.rules.services rules.

The rule editor's fields carry the services' names (`reseller_ids`, `order_patterns`, ...), so
a service's message lands next to its field; `attach` also puts "conditions" (no condition
at all) above the conditions and "attributes.<name>" on that attribute's row.
"""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from werkzeug.datastructures import FileStorage
from wtforms import (
    FieldList,
    Form,
    FormField,
    HiddenField,
    RadioField,
    SearchField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import Length, Optional

from kmeweb.csvimport import ImportRejected, detect_encoding
from kmeweb.directory.models import EndUser
from kmeweb.errors import DomainError
from kmeweb.forms import attach_error, choices, user_search_attrs
from kmeweb.ids import parse_id
from kmeweb.rules import services
from kmeweb.rules.models import RoutingRule, RuleAction

#: The profile select's value of a rule whose profile was deleted: no choice made yet (the
#: services refuse it, so that saving never quietly turns the rule to the Default Profile).
NO_PROFILE = "deleted"
#: The Associated User list: "No user", the chosen one, then the first matches of a search.
USER_CHOICES = 50


class AttributeRowForm(Form):
    """One custom attribute the rule's devices get."""

    key = StringField("Attribute", validators=[Optional(), Length(max=64)])
    value = StringField("Value", validators=[Optional(), Length(max=500)])


class RuleForm(FlaskForm):
    """Add and edit a routing rule (the catch-all: its name and actions only)."""

    name = StringField("Rule name", render_kw={"maxlength": services.NAME_MAX})
    reseller_ids = SelectMultipleField("Reseller", validate_choice=False)
    order_patterns = TextAreaField("Order number", render_kw={"rows": 2, "spellcheck": "false"})
    model_patterns = TextAreaField("Model", render_kw={"rows": 2, "spellcheck": "false"})
    identifiers = TextAreaField(
        "IMEI or serial number in this list", render_kw={"rows": 4, "spellcheck": "false"}
    )
    identifiers_file = FileField("Add from a CSV file", render_kw={"accept": ".csv,.txt"})
    imei_from = StringField(
        "IMEI from", render_kw={"inputmode": "numeric", "maxlength": 15, "autocomplete": "off"}
    )
    imei_to = StringField(
        "IMEI to", render_kw={"inputmode": "numeric", "maxlength": 15, "autocomplete": "off"}
    )
    action = RadioField(
        "What happens to a matching device",
        choices=choices(RuleAction.labels().items()),
        default=RuleAction.HOLD.value,
        validate_choice=False,
    )
    profile_id = SelectField("Profile", validate_choice=False)
    # A list box: the matches of a search show at once, no dropdown to open.
    end_user_id = SelectField(
        "Associated user",
        choices=choices([("", "No user")]),
        validate_choice=False,
        render_kw={"size": 4},
    )
    user_search = SearchField("Search users", validators=[Optional(), Length(max=254)])
    attributes = FieldList(FormField(AttributeRowForm), min_entries=1, max_entries=50)
    version = HiddenField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.condition_errors: list[str] = []

    @classmethod
    def of(cls, rule: RoutingRule) -> RuleForm:
        """The editor of a saved rule, filled with it (one blank attribute row to add one)."""
        rows = [{"key": k, "value": str(v)} for k, v in sorted((rule.attributes or {}).items())]
        profile = (
            services.DEFAULT_CHOICE
            if rule.to_default
            else str(rule.profile_id)
            if rule.profile_id
            else NO_PROFILE
        )
        data = {
            "name": rule.name,
            "reseller_ids": [str(i) for i in rule.reseller_ids or []],
            "order_patterns": "\n".join(rule.order_patterns or []),
            "model_patterns": "\n".join(rule.model_patterns or []),
            "identifiers": "\n".join(rule.identifiers or []),
            "imei_from": rule.imei_from or "",
            "imei_to": rule.imei_to or "",
            "action": rule.action,
            "profile_id": profile,
            "end_user_id": str(rule.end_user_id or ""),
            "attributes": [*rows, {}],
            "version": str(rule.version),
        }
        return cls(formdata=None, data=data)

    def with_choices(
        self,
        resellers: list[tuple[int, str]],
        profiles: list[tuple[str, str]],
        users: list[tuple[str, str]],
    ) -> RuleForm:
        """The options of the reseller, profile and user fields; a rule whose profile was
        deleted shows that first, chosen, until another is chosen."""
        self.reseller_ids.choices = choices((str(i), name) for i, name in resellers)
        if self.profile_id.data == NO_PROFILE:
            profiles = [(NO_PROFILE, "Deleted profile: choose another"), *profiles]
        self.profile_id.choices = choices(profiles)
        self.end_user_id.choices = choices(users)
        # Search as you type: the Select User picker's options (kmeweb.profiles.views.users).
        self.user_search.render_kw = user_search_attrs(url_for("profiles.users"))
        return self

    def merge_file(self) -> bool:
        """Add the identifiers of the CSV file chosen (if any) to the list field, without
        repeats. False, with the reason on the file field, when the file cannot be read."""
        upload = self.identifiers_file.data
        if not isinstance(upload, FileStorage) or not upload.filename:
            return True
        try:
            encoding = detect_encoding(upload.stream, services.IDENTIFIERS_FILE_MAX)
        except ImportRejected as err:
            self.identifiers_file.errors = [*self.identifiers_file.errors, str(err)]
            return False
        text = upload.stream.read().decode(encoding, errors="replace")
        have = (self.identifiers.data or "").strip()
        known = set(have.split())
        new = [i for i in dict.fromkeys(services.identifiers_in_csv(text)) if i not in known]
        self.identifiers.data = "\n".join(filter(None, [have, *new]))
        return True

    def rule_data(self) -> dict[str, Any]:
        """What kmeweb.rules.services takes from the editor."""
        attributes: dict[str, Any] = {}
        for entry in self.attributes.entries:
            key = (entry.form.key.data or "").strip()
            value = entry.form.value.data or ""
            if key or value.strip():
                attributes[key] = value
        return {
            "name": self.name.data,
            "reseller_ids": list(self.reseller_ids.data or []),
            "order_patterns": self.order_patterns.data or "",
            "model_patterns": self.model_patterns.data or "",
            "identifiers": self.identifiers.data or "",
            "imei_from": self.imei_from.data or "",
            "imei_to": self.imei_to.data or "",
            "action": self.action.data,
            "profile_id": self.profile_id.data or NO_PROFILE,
            "end_user_id": self.end_user_id.data or None,
            "attributes": attributes,
        }

    def attach(self, err: DomainError) -> None:
        """Each of the service's messages next to its field ("conditions" above the
        conditions, "attributes.<name>" on the row of that name, the rest on the form)."""
        for one in err.each():
            field = one.field or ""
            row = _attribute_row(self, field.partition(".")[2]) if "." in field else None
            if field == "conditions":
                self.condition_errors.append(one.message)
            elif row is not None:
                row.key.errors = [*row.key.errors, one.message]
            elif field.startswith("attributes"):
                self.attributes.errors = [*self.attributes.errors, one.message]
            else:
                attach_error(self, one)


def _attribute_row(form: RuleForm, name: str) -> AttributeRowForm | None:
    """The attribute row named `name` (for "", the row with a value and no name)."""
    for entry in form.attributes.entries:
        key = (entry.form.key.data or "").strip()
        if key == name.strip() and (key or (entry.form.value.data or "").strip()):
            return entry.form
    return None


def user_label(user: EndUser) -> str:
    return f"{user.display_name} ({user.username})" if user.display_name else user.username


def user_choices(chosen: EndUser | None, matches: list[EndUser]) -> list[tuple[str, str]]:
    """ "No user", the chosen user, then the users a search matched."""
    out = [("", "No user")]
    if chosen is not None:
        out.append((str(chosen.id), user_label(chosen)))
    out += [(str(u.id), user_label(u)) for u in matches if chosen is None or u.id != chosen.id]
    return out


def chosen_user_id(form: RuleForm) -> int | None:
    return parse_id(form.end_user_id.data)


class OrderForm(FlaskForm):
    """Reorder the rules: one rule `direction` "up" or "down" (the buttons), or the whole
    `order` (drag and drop); `expected_order` is the order the page showed (ids, with commas)."""

    direction = HiddenField()
    order = HiddenField()
    expected_order = HiddenField()

    def order_ids(self) -> list[str]:
        return [part.strip() for part in (self.order.data or "").split(",") if part.strip()]


class ConfirmForm(FlaskForm):
    """Delete a rule (CSRF and the version the admin saw)."""

    version = HiddenField()


class ApplyForm(FlaskForm):
    """Apply rules to existing devices: the number of devices the admin saw change."""

    expected_changes = HiddenField()

    def expected(self) -> int | None:
        value = (self.expected_changes.data or "").strip()
        return int(value) if value.isdigit() and len(value) < 10 else None
