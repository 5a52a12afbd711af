"""Import devices: a CSV file into a Self-Maintained profile, previewed first, then applied all
or nothing by a background job (design.md 1 step 6 and 6.4).

1. `preview_import` checks the file by its own rules (parse.py) and then against the database
   (check.py: unknown usernames; devices already somewhere, and what each row does), and keeps
   what it parsed server side for Confirm import (preview.py). Nothing is written.
2. `start_import` (Confirm import, only for a preview without errors) adds the operation whose
   job (`import_job`) checks the rows against the database again and writes every device in
   one transaction (apply.py).

This module is the importer's public face: what the views, the job queue, the tests and
bench/import.py call.
"""

from kmeweb.devices.importer.apply import import_job, run_import, start_import
from kmeweb.devices.importer.check import get_profile
from kmeweb.devices.importer.parse import check_file, template_rows
from kmeweb.devices.importer.preview import (
    ERRORS_SHOWN,
    KEY_PREFIX,
    REPORT_HEADER,
    Preview,
    error_report,
    load_preview,
    preview_import,
)

__all__ = [
    "ERRORS_SHOWN",
    "KEY_PREFIX",
    "REPORT_HEADER",
    "Preview",
    "check_file",
    "error_report",
    "get_profile",
    "import_job",
    "load_preview",
    "preview_import",
    "run_import",
    "start_import",
    "template_rows",
]
