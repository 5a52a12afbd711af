"""The one hook of the pull: what happens to uploads that wait for approval after a pull.

Why it exists: the pull mirrors KME (uploads, devices, profiles) and knows nothing of what an
admin decided about them. Auto-approval, a reseller's default profile and, next, routing rules
are the integration room's rules, and the integration room sits above sync (integration ->
sync -> knox): sync must not know what approval means, nor import the code that does it. So
the integration registers its function here when create_app builds the app, and the pull calls
whatever is registered. The RQ worker builds its app with create_app too (`flask worker`), so
the pull finds the same function there.

The hook gets the session and the ids of the uploads waiting for approval after the pull (new
ones and ones still waiting from before), may commit after each piece of work (the pull commits
as it goes), and returns counts that the pull adds to its summary. Without a registered hook the
uploads stay as the pull left them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from flask import Flask, current_app
from sqlalchemy.orm import Session

#: (session, upload ids) -> counts for the pull's summary, e.g. {"uploads_auto_approved": 2}.
UploadsHook = Callable[[Session, Sequence[int]], Mapping[str, int]]

_KEY = "kmeweb.sync.uploads_hook"


def register_uploads_hook(app: Flask, hook: UploadsHook) -> None:
    """Make `hook` the function the app's pulls call for uploads waiting for approval."""
    app.extensions[_KEY] = hook


def run_uploads_hook(session: Session, upload_ids: Sequence[int]) -> Mapping[str, int]:
    """Call the current app's uploads hook; nothing happens (and no counts) without one."""
    hook: UploadsHook | None = current_app.extensions.get(_KEY)
    if hook is None or not upload_ids:
        return {}
    return hook(session, upload_ids)
