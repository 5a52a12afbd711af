"""Imports every model so metadata (and Alembic autogenerate) sees all tables."""

from kmeweb.alerts.models import AlertDelivery, AlertDestination
from kmeweb.apitokens.models import ApiToken, IdempotencyKey
from kmeweb.audit.models import AuditEvent, HistoryRetention
from kmeweb.auth.models import AdminUser
from kmeweb.devices.models import Device
from kmeweb.directory.models import EndUser
from kmeweb.installation import Installation
from kmeweb.integration.models import Integration, Reseller, Upload
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import Change
from kmeweb.profiles.models import Profile
from kmeweb.rules.models import RoutingRule

__all__ = [
    "AlertDelivery",
    "AlertDestination",
    "AdminUser",
    "ApiToken",
    "AuditEvent",
    "Change",
    "Device",
    "EndUser",
    "HistoryRetention",
    "IdempotencyKey",
    "Installation",
    "Integration",
    "Operation",
    "Profile",
    "Reseller",
    "RoutingRule",
    "Upload",
]
