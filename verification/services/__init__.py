"""Every write, with its rules. Keyword-only, typed, named ``<thing>_<verb>``.

Web-process functions validate and store, then queue work after commit (``queueing``). Worker
functions (``reference_embed``, ``checkin_process``) import the model bridge lazily.
"""
from verification.services.checkins import (
    TRANSIENT_ERRORS,
    checkin_decide,
    checkin_fail,
    checkin_process,
    checkin_release,
    checkin_submit,
    checkins_sweep,
)
from verification.services.enrolment import (
    device_create,
    device_issue_token,
    device_revoke,
    device_seen,
    person_create,
    person_delete,
    person_save,
    reference_add,
    reference_delete,
    reference_embed,
    reference_fail,
    references_requeue_stale,
)

__all__ = [
    "TRANSIENT_ERRORS",
    "checkin_decide",
    "checkin_fail",
    "checkin_process",
    "checkin_release",
    "checkin_submit",
    "checkins_sweep",
    "device_create",
    "device_issue_token",
    "device_revoke",
    "device_seen",
    "person_create",
    "person_delete",
    "person_save",
    "reference_add",
    "reference_delete",
    "reference_embed",
    "reference_fail",
    "references_requeue_stale",
]
