"""Check-ins: store and queue (web), decide, fail, release, sweep. The worker's claim, face work and
rules around it are in ``processing``.

"No face", "two faces", "not enrolled" are decisions with a reason, not exceptions; only transient
errors propagate, so the task can retry them.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import IO, Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from verification import selectors
from verification.audit import audit_append, device_actor
from verification.errors import DeviceLockedOut, DomainError, ModelUnavailable, ServiceUnavailable
from verification.formatting import duration_text, local_timestamp
from verification.images import validate_image
from verification.models import AuditEntry, CheckIn, Device, Person, ReferenceImage
from verification.services.access import AccessVerdict, refusal_before_face_work
from verification.services import lockouts, queueing, replays, waits

logger = logging.getLogger(__name__)

# Errors worth retrying: the database, the storage or the model files hiccupped. Anything else is a
# bug or bad data.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseError,
    ConnectionError,
    TimeoutError,
    ModelUnavailable,
)

Reason = CheckIn.Reason


# --- Check-ins -------------------------------------------------------------------------------


def checkin_submit(*, device: Device, person_external_id: str, snapshot_file: IO[bytes]) -> CheckIn:
    """Store the check-in (status pending) and queue verification after commit.

    The row is committed before anything is queued; if the broker is down the row stays pending
    and ``checkins_sweep`` queues it later. Only a failing database makes the device retry (503).
    A locked-out device is refused before anything is read or stored (429, issue 9, item 5).

    At a device under access rules (``services/access.py``), a claim refused without a face (unknown or
    inactive ID, no right at this door, not now) is decided here, in the request, before any face work:
    the row is stored with its snapshot and decided 0 with its audit entry, and nothing is queued.
    """
    locked = lockouts.lockout_active(scope=lockouts.Scope.DEVICE, key=str(device.pk))
    if locked is not None:
        retry_after = lockouts.lockout_retry_after(lockout=locked)
        raise DeviceLockedOut(
            f"This device is locked out after repeated refusals until {local_timestamp(locked.locked_until)} "
            f"(in {duration_text(retry_after)}), or until an operator unlocks it.",
            retry_after=retry_after,
            detail={"retry_after": retry_after, "locked_until": locked.locked_until.isoformat()},
        )
    image = validate_image(snapshot_file, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.IMAGE_MAX_PIXELS)
    external_id = (person_external_id or "").strip()
    if not external_id or len(external_id) > 64:
        raise DomainError("person must be an external ID of 1 to 64 characters.", code="invalid_person")
    received = timezone.now()
    checkin = CheckIn(
        device=device,
        claimed_external_id=external_id,
        queued_at=received,
        snapshot_sha256=replays.snapshot_sha256(snapshot_file),
    )
    try:
        with transaction.atomic():
            checkin.person = selectors.person_by_external_id(external_id=external_id)
            refusal, access_ms = _refusal_in_request(checkin, at=received)
            if refusal is not None:  # decided below, never queued
                checkin.status, checkin.queued_at, checkin.started_at = CheckIn.Status.PROCESSING, None, received
            # The suffix comes from the decoded format, never from the device's file name.
            checkin.snapshot.save(f"snapshot{image.suffix}", snapshot_file, save=False)
            # Fields only: the CHECK constraints and foreign keys are the database's, and Django would
            # validate each with a SELECT on every check-in (the device and person are rows just read).
            checkin.full_clean(validate_constraints=False, exclude=["device", "person"])
            checkin.save()
            checkin_id = checkin.pk
            if refusal is None:
                transaction.on_commit(lambda: queueing.enqueue("checkin_process_task", checkin_id))
            else:
                checkin_decide(
                    checkin_id=checkin_id, decision=0, reason=refusal.reason, person=checkin.person,
                    timings={"access_ms": access_ms}, audit_detail=refusal.audit_detail(),
                )
                checkin.refresh_from_db()
    except DatabaseError as exc:
        logger.exception("check-in could not be stored")
        if checkin.snapshot.name:
            checkin.snapshot.storage.delete(checkin.snapshot.name)  # no row points at it
        raise ServiceUnavailable("The check-in could not be stored; retry shortly.") from exc
    return checkin


def _refusal_in_request(checkin: CheckIn, *, at: datetime) -> tuple[AccessVerdict | None, float]:
    """(the refusal ``checkin_submit`` decides itself, or None: the worker's turn; the ms it took)."""
    started = time.perf_counter()
    verdict = refusal_before_face_work(person=checkin.person, device=checkin.device, at=at)
    return verdict, _ms_since(started)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


@transaction.atomic
def checkin_decide(
    *,
    checkin_id: int,
    decision: int,
    reason: str,
    person: Person | None = None,
    score: float | None = None,
    threshold: float | None = None,
    model_version: str = "",
    best_reference_id: int | None = None,
    timings: dict[str, float] | None = None,
    probe_embedding: bytes | None = None,
    audit_detail: dict[str, Any] | None = None,
    threshold_source: str = "",
    review_threshold: float | None = None,
) -> bool:
    """Write the decision and its audit entry in one transaction. False if already decided/failed.

    Under the lock of the claimed person's and the device's lockout rows, a lockout in force now turns
    any decision into 0 ``locked_out`` (what the face said stays in the audit entry's ``superseded``),
    and a refusal is counted on the same clock (``services/lockouts.py``).
    """
    if decision not in (0, 1):
        raise ValueError(f"decision must be 0 or 1, not {decision!r}")
    if (decision == 0) != bool(reason):
        raise ValueError("a 0 needs a reason and a 1 has none")
    now = timezone.now()
    checkin = CheckIn.objects.select_for_update().select_related("device").get(pk=checkin_id)
    if checkin.status != CheckIn.Status.PROCESSING:
        return False
    lockouts.lockout_guard(checkin=checkin)
    superseded = None
    if reason not in (Reason.LOCKED_OUT, Reason.DEVICE_REVOKED) and lockouts.lockout_blocking(checkin=checkin, at=now):
        # Locked out while this attempt was in flight (another worker decided the last allowed refusal).
        superseded = {"decision": decision, "reason": reason, "score": score, "best_reference_id": best_reference_id}
        decision, reason, score, best_reference_id = 0, Reason.LOCKED_OUT, None, None
    timings = dict(timings or {})
    timings["total_ms"] = round((now - checkin.created_at).total_seconds() * 1000.0, 3)
    CheckIn.objects.filter(pk=checkin_id, status=CheckIn.Status.PROCESSING).update(
        status=CheckIn.Status.DECIDED,
        decision=decision,
        reason=reason,
        person=person,
        score=score,
        threshold=threshold,
        review_threshold=review_threshold,
        model_version=model_version,
        best_reference_id=best_reference_id,
        timings=timings,
        probe_embedding=probe_embedding,
        decided_at=now,
        updated_at=now,
        last_error="",
    )
    waits.checkin_announce_final(checkin_id=checkin_id)  # after commit: wakes the request waiting for it
    _audit_checkin(
        checkin,
        kind=AuditEntry.Kind.DECISION,
        person_name=person.name if person else "",
        decision=decision,
        score=score,
        threshold=threshold,
        reason=reason,
        model_version=model_version,
        processing_ms=timings.get("total_ms"),
        detail={"timings": timings, "best_reference_id": best_reference_id}
        | ({"threshold_source": threshold_source} if threshold_source else {})
        | ({"review_threshold": review_threshold} if review_threshold is not None else {})
        | (audit_detail or {})
        | ({"superseded": superseded} if superseded else {}),
    )
    if decision == 0:
        lockouts.lockout_note_refusal(checkin=checkin, reason=reason, at=now)
    return True


def _audit_checkin(checkin: CheckIn, **fields: Any) -> AuditEntry:
    """Append an audit entry about ``checkin``, copying its device and claimed person as they are now.

    Its actor is the device that asked (the decision itself is the system's, on the device's request)."""
    return audit_append(
        actor=device_actor(checkin.device.name),
        checkin_id=checkin.pk,
        device_ref=checkin.device_id,
        device_name=checkin.device.name,
        person_external_id=checkin.claimed_external_id,
        **fields,
    )


def checkin_release(*, checkin_id: int, error: str = "") -> bool:
    """Put a check-in whose processing hit a transient error back to pending, for the retry."""
    return bool(
        CheckIn.objects.filter(pk=checkin_id, status=CheckIn.Status.PROCESSING).update(
            status=CheckIn.Status.PENDING, last_error=error[:2000], updated_at=timezone.now()
        )
    )


@transaction.atomic
def checkin_fail(*, checkin_id: int, reason: str, error: str = "") -> bool:
    """Mark a check-in that cannot be processed as failed, with an audit entry. False if already final."""
    checkin = CheckIn.objects.select_for_update().select_related("device").filter(pk=checkin_id).first()
    if checkin is None or checkin.status not in (CheckIn.Status.PENDING, CheckIn.Status.PROCESSING):
        return False
    now = timezone.now()
    CheckIn.objects.filter(pk=checkin_id).update(
        status=CheckIn.Status.FAILED, reason=reason, last_error=error[:2000], updated_at=now
    )
    waits.checkin_announce_final(checkin_id=checkin_id)
    _audit_checkin(
        checkin,
        kind=AuditEntry.Kind.FAILURE,
        person_name=checkin.person.name if checkin.person_id else "",
        reason=reason,
        detail={"error": error[:500], "attempts": checkin.attempts},
    )
    return True


def checkins_sweep(*, older_than_seconds: int | None = None) -> dict[str, list[int]]:
    """Re-queue check-ins and references stuck pending/processing for longer than the timeout."""
    seconds = settings.CHECKIN_STUCK_AFTER_SECONDS if older_than_seconds is None else older_than_seconds
    cutoff = timezone.now() - timedelta(seconds=seconds)
    stuck = list(
        CheckIn.objects.filter(
            status__in=[CheckIn.Status.PENDING, CheckIn.Status.PROCESSING], updated_at__lt=cutoff
        ).values_list("pk", flat=True)
    )
    requeued: list[int] = []
    for checkin_id in stuck:
        # Back to pending first, so the queued task can claim it normally.
        CheckIn.objects.filter(pk=checkin_id, status__in=[CheckIn.Status.PENDING, CheckIn.Status.PROCESSING]).update(
            status=CheckIn.Status.PENDING, queued_at=timezone.now(), updated_at=timezone.now()
        )
        if queueing.enqueue("checkin_process_task", checkin_id):
            requeued.append(checkin_id)
    references = list(
        ReferenceImage.objects.filter(status=ReferenceImage.Status.PENDING, updated_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    for reference_id in references:
        queueing.enqueue("reference_embed_task", reference_id)
    return {"checkins": requeued, "references": references}
