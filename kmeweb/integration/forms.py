"""Forms of the Knox Integration page; the rules live in the kmeweb.integration services
(settings, activation, resellers, uploads, approvals)."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    HiddenField,
    PasswordField,
    RadioField,
    SearchField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from kmeweb.forms import FilterForm
from kmeweb.ids import parse_number
from kmeweb.integration.models import AuthMode, Integration, PortalPolicy
from kmeweb.integration.settings import PORTAL_POLICY_HELP, REGIONS, region_of
from kmeweb.knox.config import DEFAULT_TOKEN_URL

KEYS_JSON_MAX_BYTES = 20_000


class SettingsForm(FlaskForm):
    """The Settings tab. Secrets are write-only: the fields start empty, empty keeps them."""

    name = StringField("Integration Name")
    description = TextAreaField("Description", render_kw={"rows": 2})
    auth_mode = RadioField(
        "Authentication",
        choices=[
            SelectChoice(AuthMode.OAUTH.value, AuthMode.OAUTH.label),
            SelectChoice(AuthMode.LEGACY.value, AuthMode.LEGACY.label),
        ],
        default=AuthMode.OAUTH.value,
        validate_choice=False,
    )
    client_id = StringField("Client ID", render_kw={"autocomplete": "off"})
    client_secret = PasswordField("Client secret", render_kw={"autocomplete": "new-password"})
    keys_file = FileField("keys.json", render_kw={"accept": ".json,application/json"})
    client_identifier = PasswordField(
        "Client identifier", render_kw={"autocomplete": "new-password"}
    )
    region = SelectField(
        "Region",
        choices=[SelectChoice(k, label) for k, (label, _url) in REGIONS.items()],
        default="global",
        validate_choice=False,
    )
    base_url = StringField("Custom URL", render_kw={"placeholder": "https://", "inputmode": "url"})
    token_url = StringField(
        "Token URL", render_kw={"placeholder": DEFAULT_TOKEN_URL, "inputmode": "url"}
    )
    encryption_public_key = TextAreaField(
        "Samsung encryption public key", render_kw={"rows": 3, "spellcheck": "false"}
    )
    customer_id = StringField("Customer ID", render_kw={"autocomplete": "off"})
    sync_interval_min = StringField(
        "Sync interval (minutes)", default="15", render_kw={"inputmode": "numeric"}
    )
    portal_policy = RadioField(
        "Changes made in the Samsung portal",
        choices=[SelectChoice(p.value, p.label) for p in PortalPolicy],
        default=PortalPolicy.ADOPT.value,
        validate_choice=False,
    )
    #: The sentence under each portal policy choice.
    portal_policy_help = PORTAL_POLICY_HELP

    @classmethod
    def for_integration(cls, integration: Integration | None) -> SettingsForm:
        """The form filled from the saved settings (GET); secrets stay empty."""
        if integration is None:
            return cls(formdata=None)
        legacy = integration.auth_mode == AuthMode.LEGACY
        return cls(
            formdata=None,
            name=integration.name,
            description=integration.description,
            auth_mode=integration.auth_mode,
            client_id=None if legacy else integration.client_id,
            region=region_of(integration.base_url),
            base_url=integration.base_url if region_of(integration.base_url) == "custom" else "",
            token_url=integration.token_url or "",
            encryption_public_key=integration.encryption_public_key or "",
            customer_id=integration.customer_id or "",
            sync_interval_min=str(integration.sync_interval_s // 60),
            portal_policy=integration.portal_policy,
        )

    @property
    def legacy(self) -> bool:
        return (self.auth_mode.data or "") == AuthMode.LEGACY

    def field_map(self) -> dict[str, str]:
        """The service's field names mapped to this form's, for the chosen auth mode."""
        if self.legacy:
            return {"secret": "keys_file", "client_id": "client_identifier"}
        return {"secret": "client_secret"}

    def settings_data(self) -> dict[str, Any]:
        """The values for services.save_settings / connection_config."""
        region = self.region.data if self.region.data in REGIONS else "custom"
        base_url = REGIONS[region][1] or (self.base_url.data or "").strip()
        data: dict[str, Any] = {
            "region": region,
            "name": self.name.data,
            "description": self.description.data,
            "auth_mode": self.auth_mode.data,
            "base_url": base_url,
            "token_url": self.token_url.data,
            "customer_id": self.customer_id.data,
            "encryption_public_key": self.encryption_public_key.data,
            "sync_interval_min": self.sync_interval_min.data,
            "portal_policy": self.portal_policy.data,
        }
        if self.legacy:
            data["client_id"] = self.client_identifier.data
            data["secret"] = self._keys_file_text()
        else:
            data["client_id"] = self.client_id.data
            data["secret"] = self.client_secret.data
        return data

    def _keys_file_text(self) -> str:
        upload = self.keys_file.data
        if not upload or not getattr(upload, "filename", ""):
            return ""
        raw = upload.read(KEYS_JSON_MAX_BYTES + 1)
        if len(raw) > KEYS_JSON_MAX_BYTES:
            return "{" + "x" * 20_001  # too long: the service says so next to keys.json
        return raw.decode("utf-8-sig", errors="replace")


class ActionForm(FlaskForm):
    """A button that changes something (Activate, Deactivate, Sync now): only the CSRF token."""


class ApproveForm(FlaskForm):
    """Approve All Devices; `expected_pending` is the count the admin saw (stale page check)."""

    expected_pending = HiddenField()

    def expected(self) -> int | None:
        return parse_number(self.expected_pending.data)


SORT_CHOICES = ("upload_id", "reseller", "order", "uploaded_at", "devices", "pending", "status")


class UploadFilterForm(FilterForm):
    q = SearchField("Search", validators=[Optional(), Length(max=100)])
    sort = HiddenField(default="uploaded_at")
    dir = HiddenField(default="desc")

    def sort_key(self) -> str:
        return self.sort.data if self.sort.data in SORT_CHOICES else "uploaded_at"

    def descending(self) -> bool:
        return self.dir.data != "asc"


class SearchForm(FilterForm):
    q = SearchField("Search", validators=[Optional(), Length(max=100)])
