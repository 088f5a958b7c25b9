"""Celery tasks: ids in, one service call. Retry policy lives here; rules live in services.

Only transient errors (database, connection, timeouts) are retried, with exponential backoff and a
cap; when retries run out, or on any other error, the row is marked failed with a reason.
"""
from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_process_shutdown, worker_ready
from django.conf import settings

from verification import services
from verification.audit import AuditHeadBusy

logger = logging.getLogger(__name__)

RETRY_BACKOFF_BASE_SECONDS = 2
RETRY_BACKOFF_MAX_SECONDS = 60
RETRYABLE = services.TRANSIENT_ERRORS + (SoftTimeLimitExceeded,)


@worker_process_init.connect
def _load_model_before_first_task(sender: str | None = None, **kwargs) -> None:
    """Each worker process loads and warms the model once, before it takes a task, then starts beating
    (``/readyz`` waits for a heartbeat with the model loaded; a failed load beats with the error)."""
    from verification import inference
    from verification.monitoring import heartbeat

    model_error = ""
    try:
        inference.get_model()
    except Exception as exc:  # noqa: BLE001 - the first task retries the load and records the failure
        logger.exception("could not load the face model at worker start")
        model_error = repr(exc)
    heartbeat.heartbeat_start(hostname=sender, model_error=model_error)


@worker_process_shutdown.connect
def _stop_heartbeat(**kwargs) -> None:
    from verification.monitoring import heartbeat

    heartbeat.heartbeat_stop()


@worker_ready.connect
def _queue_reembedding_at_start(**kwargs) -> None:
    """A worker that starts (perhaps with a new model) queues the re-embedding of stale references."""
    try:
        reembed_stale_task.delay()
    except Exception:  # noqa: BLE001 - broker down: the beat schedule queues it later
        logger.exception("could not queue the re-embedding sweep at worker start")


def _backoff(retries: int) -> int:
    return min(RETRY_BACKOFF_MAX_SECONDS, RETRY_BACKOFF_BASE_SECONDS * 2**retries)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def checkin_process_task(self, checkin_id: int) -> None:
    # A message redelivered after its worker died finds the row in "processing": allow the reclaim.
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    try:
        services.checkin_process(checkin_id=checkin_id, reclaim=redelivered)
    except RETRYABLE as exc:
        services.checkin_release(checkin_id=checkin_id, error=repr(exc))
        if self.request.retries + 1 >= settings.CHECKIN_MAX_ATTEMPTS:
            services.checkin_fail(checkin_id=checkin_id, reason="processing_error", error=repr(exc))
            return
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
    except Exception as exc:
        logger.exception("check-in %s failed permanently", checkin_id)
        services.checkin_fail(checkin_id=checkin_id, reason="processing_error", error=repr(exc))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def reference_embed_task(self, reference_id: int) -> None:
    try:
        services.reference_embed(reference_id=reference_id)
    except RETRYABLE as exc:
        if self.request.retries + 1 >= settings.CHECKIN_MAX_ATTEMPTS:
            services.reference_fail(reference_id=reference_id, error=repr(exc))
            return
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
    except Exception as exc:
        logger.exception("reference %s failed permanently", reference_id)
        services.reference_fail(reference_id=reference_id, error=repr(exc))


@shared_task
def sweep_stuck_task() -> dict[str, list[int]]:
    """For Celery beat: re-queue stuck check-ins and references."""
    return services.checkins_sweep()


@shared_task
def reviews_expire_task() -> list[int]:
    """For Celery beat (every few seconds): reviews no guard answered by their deadline become
    ``review_timeout``; the door's poll does the same for its own, so this only has to be roughly on time."""
    return services.checkin_reviews_expire()


@shared_task
def retention_task() -> dict[str, list[int]]:
    """For Celery beat: delete biometric files past their retention period; the result says which."""
    return services.retention_apply().as_dict()


@shared_task
def media_check_task() -> dict[str, list[str]]:
    """For Celery beat: report (WARNING) media files no row owns and rows whose file is missing; deletes nothing."""
    return services.media_check(delete=False).as_dict()


@shared_task
def reembed_stale_task() -> list[int]:
    """For Celery beat and worker start-up: queue a batch of references another model version embedded.

    Runs on a worker, so "stale" means "not embedded by the model this worker loaded". A full batch
    queues the next one at once, so a large enrolment drains without waiting for the next beat.
    """
    # This worker's model version in the audit log, once per version (issue 9, item 3). Never waits for
    # the chain head (decisions hold it; this runs at every worker start): if it is busy, the next sweep
    # tries again, and the re-embedding below goes ahead regardless.
    try:
        services.model_change_record(wait=False)
    except AuditHeadBusy:
        logger.info("audit chain head busy: model_changed left to the next re-embedding sweep")
    queued = services.references_reembed_sweep(batch_size=settings.REEMBED_BATCH_SIZE)
    if len(queued) >= settings.REEMBED_BATCH_SIZE:
        reembed_stale_task.delay()
    return queued


@shared_task
def audit_verify_task() -> dict[str, object]:
    """For Celery beat (daily): walk the audit chain; a break is logged at ERROR, posted to
    ALERT_WEBHOOK_URL and shown on the admin's front page."""
    check = services.audit_chain_check(source="beat")
    return {"ok": check.ok, "checked": check.checked, "broken_seq": check.broken_seq, "problem": check.problem}
