"""Every write, with its rules. Keyword-only, typed, named ``<thing>_<verb>``.

Web-process functions validate and store, then queue work after commit. Worker functions
(``reference_embed``, ``checkin_process``) import the model bridge lazily. "No face", "two faces",
"not enrolled" are decisions with a reason, not exceptions; only transient errors propagate so the
task can retry them.
"""
from __future__ import annotations

import io
import logging
import secrets
import time
from datetime import datetime, timedelta
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from verification import selectors
from verification.audit import audit_append
from verification.errors import DomainError, ServiceUnavailable
from verification.images import validate_image
from verification.models import AuditEntry, CheckIn, Device, Person, ReferenceImage

logger = logging.getLogger(__name__)

# Errors worth retrying: the database or the storage hiccupped. Anything else is a bug or bad data.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (DatabaseError, ConnectionError, TimeoutError)

Reason = CheckIn.Reason


# --- People and reference photos -------------------------------------------------------------


@transaction.atomic
def person_create(
    *,
    name: str,
    external_id: str,
    is_active: bool = True,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
) -> Person:
    person = Person(
        name=name, external_id=external_id, is_active=is_active, valid_from=valid_from, valid_until=valid_until
    )
    person.full_clean()
    person.save()
    return person


@transaction.atomic
def person_save(*, person: Person) -> Person:
    """Validate and save a person built by a form (the admin's add and change pages)."""
    person.full_clean()
    person.save()
    return person


@transaction.atomic
def reference_add(*, person: Person, image_file: IO[bytes]) -> ReferenceImage:
    """Store a reference photo (limits checked here) and queue its embedding after commit."""
    validate_image(image_file, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.IMAGE_MAX_PIXELS)
    reference = ReferenceImage(person=person)
    reference.image.save(getattr(image_file, "name", "") or "reference.jpg", image_file, save=False)
    reference.full_clean()
    reference.save()
    reference_id = reference.pk
    transaction.on_commit(lambda: _enqueue("reference_embed_task", reference_id))
    return reference


def reference_embed(*, reference_id: int) -> ReferenceImage | None:
    """Worker: detect, align, embed one pending reference; mark it ready or rejected with a reason."""
    from verification import inference

    reference = ReferenceImage.objects.filter(pk=reference_id).first()
    if reference is None or reference.status != ReferenceImage.Status.PENDING:
        return reference  # Already handled (redelivered task) or deleted meanwhile.
    ReferenceImage.objects.filter(pk=reference_id).update(attempts=F("attempts") + 1)
    try:
        with reference.image.open("rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return _reference_finish(reference_id, status=ReferenceImage.Status.REJECTED, reason="unreadable_image")
    info = inference.model_info()
    try:
        face = inference.embed_face(data)
    except inference.FaceRejected as rejected:
        return _reference_finish(reference_id, status=ReferenceImage.Status.REJECTED, reason=rejected.reason)

    crop_name = reference.face_crop.field.generate_filename(reference, "face.png")
    stored_name = reference.face_crop.storage.save(crop_name, ContentFile(_png_bytes(face.crop)))
    embedding = face.embedding.astype("<f4")
    updated = _reference_finish(
        reference_id,
        status=ReferenceImage.Status.READY,
        face_crop=stored_name,
        embedding=embedding.tobytes(),
        embedding_dim=int(embedding.shape[0]),
        model_version=info.version,
        embedded_at=timezone.now(),
    )
    if updated is None or updated.face_crop.name != stored_name:
        reference.face_crop.storage.delete(stored_name)  # Another worker finished first.
    return updated


@transaction.atomic
def reference_delete(*, reference: ReferenceImage) -> None:
    """Delete a reference photo with its files and embedding."""
    for file in (reference.image, reference.face_crop):
        if file:
            file.storage.delete(file.name)
    reference.delete()


def reference_fail(*, reference_id: int, error: str = "") -> ReferenceImage | None:
    """A reference whose embedding kept failing: rejected with ``processing_error``."""
    logger.warning("reference %s rejected after errors: %s", reference_id, error)
    return _reference_finish(reference_id, status=ReferenceImage.Status.REJECTED, reason="processing_error")


def _reference_finish(reference_id: int, *, status: str, reason: str = "", **fields: Any) -> ReferenceImage | None:
    # Conditional on still pending: two deliveries of the same task cannot both write.
    ReferenceImage.objects.filter(pk=reference_id, status=ReferenceImage.Status.PENDING).update(
        status=status, reason=reason, updated_at=timezone.now(), **fields
    )
    return ReferenceImage.objects.filter(pk=reference_id).first()


def _png_bytes(rgb: Any) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


# --- Devices ---------------------------------------------------------------------------------


@transaction.atomic
def device_create(*, name: str) -> tuple[Device, str]:
    """Create a device and return it with its raw token. Only the hash is stored: show it once."""
    device = Device(name=name)
    return device, device_issue_token(device=device)


@transaction.atomic
def device_issue_token(*, device: Device) -> str:
    """Give a (new or existing) device a fresh token, replacing any old one; return the raw token."""
    raw_token = secrets.token_urlsafe(32)
    device.token_hash = selectors.token_hash(raw_token)
    device.token_prefix = raw_token[:8]
    device.revoked_at = None
    device.full_clean()
    device.save()
    return raw_token


@transaction.atomic
def device_revoke(*, device: Device) -> Device:
    if device.revoked_at is None:
        device.revoked_at = timezone.now()
        device.save(update_fields=["revoked_at", "updated_at"])
        audit_append(kind=AuditEntry.Kind.DEVICE_REVOKED, device_ref=device.pk, device_name=device.name)
    return device


# --- Check-ins -------------------------------------------------------------------------------


def checkin_submit(*, device: Device, person_external_id: str, snapshot_file: IO[bytes]) -> CheckIn:
    """Store the check-in (status pending) and queue verification after commit.

    The row is committed before anything is queued; if the broker is down the row stays pending
    and ``checkins_sweep`` queues it later. Only a failing database makes the device retry (503).
    """
    validate_image(snapshot_file, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.IMAGE_MAX_PIXELS)
    external_id = (person_external_id or "").strip()
    if not external_id or len(external_id) > 64:
        raise DomainError("person must be an external ID of 1 to 64 characters.", code="invalid_person")
    try:
        with transaction.atomic():
            checkin = CheckIn(
                device=device,
                claimed_external_id=external_id,
                person=selectors.person_by_external_id(external_id=external_id),
                queued_at=timezone.now(),
            )
            checkin.snapshot.save(getattr(snapshot_file, "name", "") or "snapshot.jpg", snapshot_file, save=False)
            checkin.full_clean()
            checkin.save()
            checkin_id = checkin.pk
            transaction.on_commit(lambda: _enqueue("checkin_process_task", checkin_id))
    except DatabaseError as exc:
        logger.exception("check-in could not be stored")
        raise ServiceUnavailable("The check-in could not be stored; retry shortly.") from exc
    return checkin


def checkin_process(*, checkin_id: int, reclaim: bool = False) -> CheckIn | None:
    """Worker: claim the check-in, verify the face, decide. Idempotent.

    The claim is a conditional UPDATE: only one worker moves a row from pending to processing. A
    redelivered task (``reclaim``, after a worker died) or a row stuck past the timeout may be
    claimed again; ``checkin_decide`` is conditional too, so a row is never decided twice.
    """
    from verification import inference

    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.CHECKIN_STUCK_AFTER_SECONDS)
    claimable = Q(status=CheckIn.Status.PENDING) | Q(status=CheckIn.Status.PROCESSING, started_at__lt=stale_before)
    if reclaim:
        claimable |= Q(status=CheckIn.Status.PROCESSING)
    claimed = CheckIn.objects.filter(Q(pk=checkin_id) & claimable).update(
        status=CheckIn.Status.PROCESSING, started_at=now, attempts=F("attempts") + 1, updated_at=now
    )
    if not claimed:
        return CheckIn.objects.filter(pk=checkin_id).first()
    checkin = CheckIn.objects.select_related("device").get(pk=checkin_id)
    if checkin.attempts > settings.CHECKIN_MAX_ATTEMPTS:
        checkin_fail(checkin_id=checkin_id, reason=Reason.PROCESSING_ERROR, error="too many attempts")
        return CheckIn.objects.get(pk=checkin_id)

    started = time.perf_counter()
    timings: dict[str, float] = {}
    if checkin.queued_at is not None:
        timings["queue_ms"] = round((now - checkin.queued_at).total_seconds() * 1000.0, 3)
    info = inference.model_info()
    verdict: dict[str, Any] = {"threshold": info.threshold, "model_version": info.version}

    person = selectors.person_by_external_id(external_id=checkin.claimed_external_id)
    if person is None:
        return _decide_zero(checkin_id, Reason.UNKNOWN_PERSON, None, timings, started, verdict)
    if not selectors.person_is_admitted(person=person, at=checkin.created_at):
        return _decide_zero(checkin_id, Reason.INACTIVE_PERSON, person, timings, started, verdict)
    references = selectors.references_ready(person=person, model_version=info.version)
    if not references:
        return _decide_zero(checkin_id, Reason.NO_REFERENCES, person, timings, started, verdict)
    try:
        with checkin.snapshot.open("rb") as handle:
            data = handle.read()
    except (FileNotFoundError, ValueError):
        checkin_fail(checkin_id=checkin_id, reason=Reason.SNAPSHOT_MISSING, error="snapshot file missing")
        return CheckIn.objects.get(pk=checkin_id)
    try:
        face = inference.embed_face(data)
    except inference.FaceRejected as rejected:
        timings.update(rejected.timings)
        return _decide_zero(checkin_id, rejected.reason, person, timings, started, verdict)
    timings.update(face.timings)
    scores, timings["score_ms"] = inference.score(face.embedding, selectors.embeddings_matrix(references))
    best = int(scores.argmax())
    best_score = float(scores[best])
    decision = 1 if best_score >= info.threshold else 0
    timings["process_ms"] = _ms_since(started)
    checkin_decide(
        checkin_id=checkin_id,
        decision=decision,
        reason="" if decision else Reason.NO_MATCH,
        person=person,
        score=best_score,
        best_reference_id=references[best].pk,
        timings=timings,
        **verdict,
    )
    return CheckIn.objects.get(pk=checkin_id)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def _decide_zero(
    checkin_id: int, reason: str, person: Person | None, timings: dict[str, float], started: float, verdict: dict[str, Any]
) -> CheckIn:
    timings["process_ms"] = _ms_since(started)
    checkin_decide(checkin_id=checkin_id, decision=0, reason=reason, person=person, timings=timings, **verdict)
    return CheckIn.objects.get(pk=checkin_id)


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
) -> bool:
    """Write the decision and its audit entry in one transaction. False if already decided/failed."""
    if decision not in (0, 1):
        raise ValueError(f"decision must be 0 or 1, not {decision!r}")
    if (decision == 0) != bool(reason):
        raise ValueError("a 0 needs a reason and a 1 has none")
    now = timezone.now()
    checkin = CheckIn.objects.select_for_update().select_related("device").get(pk=checkin_id)
    if checkin.status != CheckIn.Status.PROCESSING:
        return False
    timings = dict(timings or {})
    timings["total_ms"] = round((now - checkin.created_at).total_seconds() * 1000.0, 3)
    CheckIn.objects.filter(pk=checkin_id, status=CheckIn.Status.PROCESSING).update(
        status=CheckIn.Status.DECIDED,
        decision=decision,
        reason=reason,
        person=person,
        score=score,
        threshold=threshold,
        model_version=model_version,
        best_reference_id=best_reference_id,
        timings=timings,
        decided_at=now,
        updated_at=now,
        last_error="",
    )
    audit_append(
        kind=AuditEntry.Kind.DECISION,
        checkin_id=checkin_id,
        device_ref=checkin.device_id,
        device_name=checkin.device.name,
        person_external_id=checkin.claimed_external_id,
        person_name=person.name if person else "",
        decision=decision,
        score=score,
        threshold=threshold,
        reason=reason,
        model_version=model_version,
        processing_ms=timings.get("total_ms"),
        detail={"timings": timings, "best_reference_id": best_reference_id},
    )
    return True


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
    audit_append(
        kind=AuditEntry.Kind.FAILURE,
        checkin_id=checkin_id,
        device_ref=checkin.device_id,
        device_name=checkin.device.name,
        person_external_id=checkin.claimed_external_id,
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
        if _enqueue("checkin_process_task", checkin_id):
            requeued.append(checkin_id)
    references = list(
        ReferenceImage.objects.filter(status=ReferenceImage.Status.PENDING, updated_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    for reference_id in references:
        _enqueue("reference_embed_task", reference_id)
    return {"checkins": requeued, "references": references}


def _enqueue(task_name: str, object_id: int) -> bool:
    """Queue a task by id. A broker that is down is logged, not raised: the row waits for the sweep."""
    from verification import tasks

    try:
        getattr(tasks, task_name).delay(object_id)
    except Exception:  # noqa: BLE001 - kombu raises many types when the broker is unreachable
        logger.exception("could not queue %s(%s); the sweep will retry", task_name, object_id)
        return False
    return True
