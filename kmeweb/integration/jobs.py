"""Jobs of the integration room: "Apply rules to existing devices"
(kmeweb.integration.routing.start_apply)."""

from __future__ import annotations

from kmeweb.devices.jobs import run_preparing_job
from kmeweb.integration import routing


def apply_rules_job(operation_id: int) -> int | None:
    """Apply the routing rules now (RQ job on the default queue): write the approvals and
    moves under the operation (routing.run_apply), then hand them to the push, which finishes
    the operation when KME has them. Returns how many devices changed."""
    return run_preparing_job(operation_id, routing.run_apply, "Applying the rules failed")
