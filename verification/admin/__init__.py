"""Django admin: enrolment (people + inline reference photos), devices, check-ins, the audit log.

Admin classes hold no rules: every write goes through ``services``. The audit log is read-only for
everyone, superusers included. Who may do what comes from ``verification.roles``: every action names
the permission it needs, and biometric images (thumbnails, links) are shown only to users who may view
that kind of image (issue 9, item 2). ``site`` names the product in the header and leads "View site" home;
the front page is the dashboard (``dashboard``; issue 11, item 2).
"""

from verification.admin import site  # noqa: F401 (the header, "View site", the dashboard as front page)
from verification.admin import (  # noqa: F401 (registers)
    access,
    audit_log,
    calibration,
    checkins,
    devices,
    lockouts,
    people,
    reviews,
)
from verification.admin.audit_log import CSV_COLUMNS  # noqa: F401
from verification.admin.common import ReadOnlyAdmin, thumbnail  # noqa: F401
