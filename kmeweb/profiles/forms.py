"""Forms of the Bulk Enrollment pages: WTForms coerces, kmeweb.profiles.services rules.

The configuration fields are flat (`agent_server_url`, `extra_locale`); `config_from_form`
builds the Profile.config layout of kmeweb.profiles.config from them and `CONFIG_FIELDS`
maps the services' dotted field names back to the form's, so a message lands next to its
field.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    Field,
    FieldList,
    Form,
    FormField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SearchField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, Optional

from kmeweb.forms import FilterForm, choices
from kmeweb.profiles.config import CUSTOM_KEY_TYPES, WIFI_SECURITY_TYPES
from kmeweb.profiles.models import ProfileKind
from kmeweb.profiles.services import (
    NAME_MAX,
    TOKEN_DAYS_DEFAULT,
    TOKEN_DAYS_MAX,
    TOKEN_DAYS_MIN,
)

TRI_STATE = choices([("", "Not set"), ("true", "Yes"), ("false", "No")])
PROFILE_SORTS = {"name": "Profile Name", "modified": "Last modified", "type": "Type"}

# (form field, config section, key, kind of value)
AGENT_FIELDS = [
    ("agent_server_url", "agent", "server_url"),
    ("agent_user", "agent", "user"),
    ("agent_support_email", "agent", "support_email"),
    ("agent_support_phone", "agent", "support_phone"),
    ("agent_skip_setup_wizard", "agent", "skip_setup_wizard"),
    ("agent_allow_user_cancel", "agent", "allow_user_cancel"),
]
KME_FIELDS = [
    ("kme_supported_mdm", "kme", "supported_mdm"),
    ("kme_mdm_apk_url", "kme", "mdm_apk_url"),
    ("kme_mdm_server_uri", "kme", "mdm_server_uri"),
    ("kme_mdm_admin_component", "kme", "mdm_admin_component"),
    ("kme_mdm_signature_checksum", "kme", "mdm_signature_checksum"),
    ("kme_company_name", "kme", "company_name"),
    ("kme_do_enabled", "kme", "do_enabled"),
    ("kme_ae_enabled", "kme", "ae_enabled"),
]
EXTRA_FIELDS = [
    ("extra_skip_encryption", "system_extras", "skip_encryption"),
    ("extra_leave_all_system_apps_enabled", "system_extras", "leave_all_system_apps_enabled"),
    ("extra_skip_education_screens", "system_extras", "skip_education_screens"),
    ("extra_locale", "system_extras", "locale"),
    ("extra_time_zone", "system_extras", "time_zone"),
    ("extra_use_mobile_data", "system_extras", "use_mobile_data"),
    ("extra_wifi_ssid", "system_extras", "wifi_ssid"),
    ("extra_wifi_security_type", "system_extras", "wifi_security_type"),
    ("extra_wifi_password", "system_extras", "wifi_password"),
    ("extra_wifi_hidden", "system_extras", "wifi_hidden"),
]
ALL_CONFIG_FIELDS = AGENT_FIELDS + KME_FIELDS + EXTRA_FIELDS
CONFIG_FIELDS = {f"{section}.{key}": name for name, section, key in ALL_CONFIG_FIELDS}
SECRET_FIELDS = {"extra_wifi_password"}
PROFILE_FIELDS = {
    **CONFIG_FIELDS,
    "token_expiry_days": "expiry_days",
    "end_user_id": "end_user_id",
}


class CustomKeyForm(Form):
    """One row of Custom Android System Keys."""

    key = StringField("Key", validators=[Optional(), Length(max=100)])
    type = SelectField("Type", choices=choices((t, t) for t in CUSTOM_KEY_TYPES), default="string")
    value = StringField("Value", validators=[Optional(), Length(max=1000)])


def _opt(label: str, max_len: int = 500) -> StringField:
    return StringField(label, validators=[Optional(), Length(max=max_len)])


class ConfigFields(FlaskForm):
    """The three configuration sections (and the KME profile fields), shared by the profile
    form and Modify Configuration."""

    agent_server_url = _opt("Server URL")
    agent_user = _opt("Default user", 254)
    agent_support_email = _opt("Support email", 254)
    agent_support_phone = _opt("Support phone", 32)
    agent_skip_setup_wizard = BooleanField("Skip setup wizard", default=True)
    agent_allow_user_cancel = BooleanField("Allow user to cancel enrollment", default=False)

    kme_supported_mdm = _opt("MDM (EMM)", 100)
    kme_mdm_apk_url = _opt("Agent APK URL")
    kme_mdm_server_uri = _opt("MDM server URI")
    kme_mdm_admin_component = _opt("Admin component", 255)
    kme_mdm_signature_checksum = _opt("Signature checksum", 128)
    kme_company_name = _opt("Company name", 100)
    kme_do_enabled = BooleanField("Device Owner", default=True)
    kme_ae_enabled = BooleanField("Work profile (Android Enterprise)", default=False)

    extra_skip_encryption = SelectField("Skip encryption", choices=TRI_STATE, default="")
    extra_leave_all_system_apps_enabled = SelectField(
        "Leave all system apps enabled", choices=TRI_STATE, default=""
    )
    extra_skip_education_screens = SelectField(
        "Skip education screens", choices=TRI_STATE, default=""
    )
    extra_locale = _opt("Locale", 16)
    extra_time_zone = _opt("Time zone", 64)
    extra_use_mobile_data = SelectField("Use mobile data", choices=TRI_STATE, default="")
    extra_wifi_ssid = _opt("Wi-Fi SSID", 32)
    extra_wifi_security_type = SelectField(
        "Wi-Fi security type",
        choices=choices([("", "Not set"), *((t, t) for t in WIFI_SECURITY_TYPES)]),
        default="",
    )
    # Write-only: never rendered with its value; blank keeps the stored password.
    extra_wifi_password = PasswordField("Wi-Fi password", validators=[Optional(), Length(max=63)])
    extra_wifi_password_clear = BooleanField("Remove the stored Wi-Fi password")
    extra_wifi_hidden = SelectField("Hidden network", choices=TRI_STATE, default="")

    custom_keys = FieldList(FormField(CustomKeyForm), min_entries=1, max_entries=50)

    def config(self) -> dict[str, Any]:
        """The Profile.config layout from the fields (what the services validate)."""
        return config_from_form(self)

    def secrets(self) -> dict[str, Any]:
        """The write-only values (blank keeps the stored password; clear removes it)."""
        return {
            "wifi_password": self.extra_wifi_password.data or None,
            "wifi_password_clear": bool(self.extra_wifi_password_clear.data),
        }


def config_from_form(form: ConfigFields) -> dict[str, Any]:
    config: dict[str, Any] = {"agent": {}, "kme": {}, "system_extras": {}, "custom_keys": []}
    for name, section, key in ALL_CONFIG_FIELDS:
        field = form[name]
        value = field.data
        if isinstance(field, StringField | PasswordField) and not isinstance(field, SelectField):
            value = (value or "").strip() or None
        elif isinstance(field, SelectField):
            value = value or None
        if value is not None:
            config[section][key] = value
    for entry in form.custom_keys.entries:
        row = entry.form
        config["custom_keys"].append(
            {"key": row.key.data or "", "type": row.type.data or "string", "value": row.value.data}
        )
    return config


def form_data_from_config(config: dict[str, Any]) -> dict[str, Any]:
    """Form field values for a stored config (secrets left out: they are write-only)."""
    data: dict[str, Any] = {}
    for name, section, key in ALL_CONFIG_FIELDS:
        if name in SECRET_FIELDS:
            continue
        value = (config.get(section) or {}).get(key)
        if value is None:
            continue
        if name.startswith("extra_") and isinstance(value, bool):
            value = "true" if value else "false"
        data[name] = value
    rows = []
    for row in config.get("custom_keys") or []:
        value = row.get("value")
        if isinstance(value, bool):
            value = "true" if value else "false"
        rows.append({"key": row.get("key"), "type": row.get("type"), "value": str(value)})
    data["custom_keys"] = [*rows, {}]  # one blank row to add a key without JavaScript
    return data


def _expiry_days() -> IntegerField:
    # The range is the services' rule (their message lands here); a form-only refusal would
    # hide the other fields' errors behind it.
    return IntegerField(
        "Extend Upto (days)",
        default=TOKEN_DAYS_DEFAULT,
        validators=[Optional()],
        render_kw={"min": TOKEN_DAYS_MIN, "max": TOKEN_DAYS_MAX},
    )


PROFILE_FORM_ORDER = ("name", "description", "without_token", "end_user_id", "expiry_days")


class ProfileForm(ConfigFields):
    """Add and Edit of a KME or Self-Maintained profile."""

    # Required, and checked by the services with the other fields (every error at once).
    name = StringField("Profile Name", render_kw={"maxlength": NAME_MAX})
    description = TextAreaField("Description", validators=[Optional(), Length(max=200)])
    # Ticked, the token fields hide and a note says how devices enroll (static/js/app.js).
    without_token = BooleanField(
        "Device registration without token",
        render_kw={"data-hides": "#token-fields", "data-shows": "#without-token-note"},
    )
    end_user_id = SelectField(
        "Select User", choices=choices([("", "No user")]), validate_choice=False
    )
    user_search = SearchField("Search users", validators=[Optional(), Length(max=254)])
    expiry_days = _expiry_days()
    never_expires = BooleanField("Never expires", render_kw={"data-disables": "expiry_days"})
    version = HiddenField()
    original = HiddenField()

    def refused_fields(self) -> list[Field]:
        """The fields with an error, in the order the page shows them (the error summary)."""
        names = [*PROFILE_FORM_ORDER, *(name for name, _s, _k in KME_FIELDS + AGENT_FIELDS)]
        names += [name for name, _s, _k in EXTRA_FIELDS] + ["custom_keys"]
        return [self[name] for name in names if self[name].errors]

    def expiry(self) -> int | str:
        """What the services take as token_expiry_days."""
        if self.never_expires.data:
            return "never"
        return self.expiry_days.data if self.expiry_days.data is not None else TOKEN_DAYS_DEFAULT


class KindForm(FilterForm):
    """Add: which kind of profile (a GET form: nothing is saved until the profile form)."""

    kind = RadioField(
        "Profile type",
        choices=choices(
            (kind.value, kind.label) for kind in (ProfileKind.SELF_MAINTAINED, ProfileKind.KME)
        ),
        validators=[InputRequired("Choose the kind of profile.")],
    )


class ProfileFilterForm(FilterForm):
    """Search and sort of the Bulk Enrollment list."""

    q = SearchField("Search profiles", validators=[Optional(), Length(max=100)])
    sort = SelectField(
        "Sort by", choices=choices(PROFILE_SORTS.items()), default="name", validate_choice=True
    )


class TokenForm(FlaskForm):
    """Refresh Token (a new token, after a confirmation), Extend (the current one, later) and
    Set expiry date (the current one, from a token that never expires)."""

    expiry_days = _expiry_days()
    never_expires = BooleanField("Never expires", render_kw={"data-disables": "expiry_days"})
    action = HiddenField(default="refresh")
    confirmed = HiddenField()
    version = HiddenField()

    def extending(self) -> bool:
        """Extend keeps the token; anything else is Refresh (a new one)."""
        return self.action.data == "extend"

    def setting_expiry(self) -> bool:
        """Set expiry date: the token kept, a date given where it had none."""
        return self.action.data == "set_expiry"

    def refreshing(self) -> bool:
        return not (self.extending() or self.setting_expiry())

    def asks_confirmation(self) -> bool:
        """Refresh stops the current token at once: it runs only once confirmed."""
        return self.refreshing() and self.confirmed.data != "yes"

    def days(self) -> int | None:
        if self.never_expires.data:
            return None
        return self.expiry_days.data if self.expiry_days.data is not None else TOKEN_DAYS_DEFAULT


class UserForm(FlaskForm):
    """Change Associate User."""

    end_user_id = SelectField(
        "Associated user", choices=choices([("", "No user")]), validate_choice=False
    )
    user_search = SearchField("Search users", validators=[Optional(), Length(max=254)])


class ConfigurationForm(ConfigFields):
    """Modify Configuration."""

    version = HiddenField()
