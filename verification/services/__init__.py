"""Every write, with its rules. Keyword-only, typed, named ``<thing>_<verb>``.

Web-process functions validate and store, then queue work after commit (``queueing``). Worker
functions (``reference_embed``, ``checkin_process``) import the model bridge lazily.
"""
from verification.services.alerts import alert_send
from verification.services.audit_checks import audit_chain_check
from verification.services.checkins import (
    TRANSIENT_ERRORS,
    checkin_decide,
    checkin_fail,
    checkin_release,
    checkin_submit,
    checkins_sweep,
)
from verification.services.devices import (
    device_create,
    device_issue_signing_secret,
    device_issue_token,
    device_reinstate,
    device_remove_signing_secret,
    device_revoke,
    device_seen,
)
from verification.services.enrolment import (
    person_create,
    person_delete,
    person_save,
    reference_accept,
    reference_add,
    reference_delete,
    reference_embed,
    reference_fail,
)
from verification.services.erasure import person_erase
from verification.services.processing import checkin_process
from verification.services.media import MediaReport, media_check
from verification.services.model_changes import model_change_record
from verification.services.lockouts import lockout_active, lockout_blocking, lockout_note_refusal, lockout_release
from verification.services.reembedding import (
    references_reembed_queue,
    references_reembed_sweep,
    references_refresh,
    references_requeue_stale,
)
from verification.services.retention import RetentionReport, retention_apply
from verification.services.reviews import (
    checkin_review_decide,
    checkin_review_expire,
    checkin_review_lapse_if_due,
    checkin_review_open,
    checkin_reviews_expire,
)
from verification.services.waits import CheckinRowReader, checkin_announce_final, checkin_wait_final
from verification.services.workers import worker_heartbeat_record, worker_heartbeat_remove, worker_heartbeats_prune

__all__ = [
    "CheckinRowReader",
    "MediaReport",
    "RetentionReport",
    "TRANSIENT_ERRORS",
    "alert_send",
    "audit_chain_check",
    "checkin_announce_final",
    "checkin_decide",
    "checkin_fail",
    "checkin_process",
    "checkin_release",
    "checkin_review_decide",
    "checkin_review_expire",
    "checkin_review_lapse_if_due",
    "checkin_review_open",
    "checkin_reviews_expire",
    "checkin_submit",
    "checkin_wait_final",
    "checkins_sweep",
    "device_create",
    "device_issue_signing_secret",
    "device_issue_token",
    "device_reinstate",
    "device_remove_signing_secret",
    "device_revoke",
    "device_seen",
    "lockout_active",
    "lockout_blocking",
    "lockout_note_refusal",
    "lockout_release",
    "media_check",
    "model_change_record",
    "person_create",
    "person_delete",
    "person_erase",
    "person_save",
    "reference_accept",
    "reference_add",
    "reference_delete",
    "reference_embed",
    "reference_fail",
    "references_reembed_queue",
    "references_reembed_sweep",
    "references_refresh",
    "references_requeue_stale",
    "retention_apply",
    "worker_heartbeat_record",
    "worker_heartbeat_remove",
    "worker_heartbeats_prune",
]
