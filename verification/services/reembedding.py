"""Re-embedding reference photos after the model version changed.

Embeddings of two model versions are not comparable, so every stored embedding carries the version
that computed it and a check-in scores only embeddings of the worker's own version:

- at decision time a worker re-embeds the claimed person's stale references itself (a few photos,
  ``INLINE_REEMBED_LIMIT`` at most) before scoring; a person left with stale references only is
  refused ``references_stale``, never scored against another model's embeddings;
- in the background a sweep (Celery beat, worker start-up, ``manage.py reembed_references``) claims
  stale references in batches and queues ``reference_embed_task`` for each.

A stale reference stays ``ready`` with its old version until the new embedding replaces it; the
replacement goes through ``reference_embed``, whose write is conditional on the old version, so two
workers cannot both store one. The claim of the sweep is a conditional update of
``reembed_queued_at``: a row is queued once, and again only if its task was lost (after
``CHECKIN_STUCK_AFTER_SECONDS``).
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from verification import selectors
from verification.models import Person, ReferenceImage
from verification.services import queueing
from verification.services.enrolment import reference_embed

logger = logging.getLogger(__name__)

# Stale references a check-in re-embeds itself before deciding; any more are left to the sweep.
# Each costs a decode, a detection and an embedding (tens of ms): a few keep the door fast.
INLINE_REEMBED_LIMIT = 5


def references_refresh(
    *, person: Person, model_version: str, timings: dict[str, float] | None = None
) -> tuple[list[ReferenceImage], bool]:
    """Worker: the person's ready references embedded by ``model_version``, re-embedding stale ones first.

    Returns the references to score and whether stale ones are left (re-embedding failed or was
    left to the sweep). Transient errors propagate so the check-in is retried; any other failure
    leaves the reference stale for the background sweep, which marks it failed if it keeps failing.
    """
    from verification.services.checkins import TRANSIENT_ERRORS

    stale = list(
        selectors.references_stale(model_version=model_version)
        .filter(person=person)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if stale:
        started = time.perf_counter()
        for reference_id in stale[:INLINE_REEMBED_LIMIT]:
            try:
                reference_embed(reference_id=reference_id)
            except (*TRANSIENT_ERRORS, SoftTimeLimitExceeded):
                raise
            except Exception:  # noqa: BLE001 - one bad photo must not decide the check-in; the sweep retries it
                logger.exception("re-embedding reference %s at decision time failed", reference_id)
        if len(stale) > INLINE_REEMBED_LIMIT:
            references_reembed_queue(model_version=model_version, reference_ids=stale[INLINE_REEMBED_LIMIT:])
        if timings is not None:
            timings["reembed_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
    references = selectors.references_ready(person=person, model_version=model_version)
    still_stale = bool(stale) and selectors.references_stale(model_version=model_version).filter(person=person).exists()
    return references, still_stale


def references_reembed_queue(
    *, model_version: str, limit: int | None = None, reference_ids: list[int] | None = None
) -> list[int]:
    """Claim up to ``limit`` stale references (not queued, or queued too long ago) and queue each.

    Idempotent and safe with two sweeps at once: a row is claimed by a conditional UPDATE, so only
    one of them queues it. Returns the claimed ids.
    """
    now = timezone.now()
    requeue_before = now - timedelta(seconds=settings.CHECKIN_STUCK_AFTER_SECONDS)
    claimable = Q(reembed_queued_at__isnull=True) | Q(reembed_queued_at__lt=requeue_before)
    candidates = selectors.references_stale(model_version=model_version).filter(claimable).order_by("pk")
    if reference_ids is not None:
        candidates = candidates.filter(pk__in=reference_ids)
    candidate_ids = list(candidates.values_list("pk", flat=True)[:limit])
    claimed: list[int] = []
    for reference_id in candidate_ids:
        won = ReferenceImage.objects.filter(
            Q(pk=reference_id, status=ReferenceImage.Status.READY) & ~Q(model_version=model_version) & claimable
        ).update(reembed_queued_at=now, updated_at=now)
        if won:
            claimed.append(reference_id)
            transaction.on_commit(lambda reference_id=reference_id: queueing.enqueue("reference_embed_task", reference_id))
    if claimed:
        logger.info("queued %d reference(s) for re-embedding by model %s", len(claimed), model_version)
    return claimed


def references_reembed_sweep(*, model_version: str | None = None, batch_size: int | None = None) -> list[int]:
    """Worker (beat, start-up): queue one batch of references stale for this worker's model version."""
    if model_version is None:
        from verification import inference

        model_version = inference.model_info().version
    return references_reembed_queue(model_version=model_version, limit=batch_size or settings.REEMBED_BATCH_SIZE)


def references_requeue_stale(*, model_version: str) -> list[int]:
    """Operators (``reembed_references``, ``setup_demo``): queue every stale reference now.

    Photos rejected for a processing error get another try as well.
    """
    failed = Q(status=ReferenceImage.Status.REJECTED, reason="processing_error")
    retried: list[int] = []
    for reference_id in ReferenceImage.objects.filter(failed).values_list("pk", flat=True):
        if ReferenceImage.objects.filter(Q(pk=reference_id) & failed).update(
            status=ReferenceImage.Status.PENDING, reason="", attempts=0, updated_at=timezone.now()
        ):
            retried.append(reference_id)
            transaction.on_commit(lambda reference_id=reference_id: queueing.enqueue("reference_embed_task", reference_id))
    return references_reembed_queue(model_version=model_version) + retried
