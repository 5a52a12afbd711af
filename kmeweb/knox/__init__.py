"""Knox Mobile Enrollment cloud API: a Flask-free client and a local simulator.

Import the client API from here; the simulator lives in `kmeweb.knox.simulator` (it needs Flask).
"""

from kmeweb.knox.client import KnoxClient
from kmeweb.knox.config import KnoxConfig, RetryPolicy
from kmeweb.knox.errors import (
    KnoxAuthError,
    KnoxConfigError,
    KnoxError,
    KnoxRejectedError,
    KnoxTransientError,
)
from kmeweb.knox.types import (
    BatchResult,
    Device,
    DeviceAssignment,
    DeviceBatchResult,
    DeviceOutcome,
    DevicePage,
    Profile,
    ProfileAlias,
    Reseller,
    Transaction,
    Upload,
)

__all__ = [
    "BatchResult",
    "Device",
    "DeviceAssignment",
    "DeviceBatchResult",
    "DeviceOutcome",
    "DevicePage",
    "KnoxAuthError",
    "KnoxClient",
    "KnoxConfig",
    "KnoxConfigError",
    "KnoxError",
    "KnoxRejectedError",
    "KnoxTransientError",
    "Profile",
    "ProfileAlias",
    "Reseller",
    "RetryPolicy",
    "Transaction",
    "Upload",
]
