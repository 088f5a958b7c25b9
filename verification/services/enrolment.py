"""Enrolment: people and their reference photos (embedded by a worker). Devices: ``devices.py``."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from verification import quality, selectors
from verification.audit import audit_append
from verification.errors import InvalidImage
from verification.images import png_bytes, validate_image
from verification.models import AuditEntry, Person, ReferenceImage
from verification.services import queueing

logger = logging.getLogger(__name__)


# --- People and reference photos -------------------------------------------------------------


# Person fields an audit entry records. The personal ones (name, external ID) go only into the entry's
# person columns, which an erasure can blank; the hashed ``detail`` never holds them, so a change entry
# says that they changed and the previous values are in the person's earlier entries.
PERSON_AUDITED_FIELDS = ("name", "external_id", "is_active", "valid_from", "valid_until")
PERSON_PERSONAL_FIELDS = ("name", "external_id")


@transaction.atomic
def person_create(
    *,
    name: str,
    external_id: str,
    is_active: bool = True,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    operator: str = "",
    source: str = "",
) -> Person:
    person = Person(
        name=name, external_id=external_id, is_active=is_active, valid_from=valid_from, valid_until=valid_until
    )
    return person_save(person=person, operator=operator, source=source)


@transaction.atomic
def person_save(*, person: Person, operator: str = "", source: str = "") -> Person:
    """Validate and save a person built by a form (the admin's add and change pages); audited.

    A new person appends ``person_created``; a change appends ``person_changed`` with each changed field
    (old and new value; for name and external ID only that they changed); a save that changed nothing
    appends nothing. ``source`` (e.g. ``csv import people.csv line 4``) goes into the entry's detail.
    """
    before = Person.objects.select_for_update().filter(pk=person.pk).first() if person.pk else None
    person.full_clean()
    person.save()
    origin = {"source": source} if source else {}
    if before is None:
        _audit_person(AuditEntry.Kind.PERSON_CREATED, person, operator, fields=_person_fields(person), **origin)
        return person
    changes = {
        field: {"changed": True} if field in PERSON_PERSONAL_FIELDS
        else {"old": _json_value(getattr(before, field)), "new": _json_value(getattr(person, field))}
        for field in PERSON_AUDITED_FIELDS
        if getattr(before, field) != getattr(person, field)
    }
    if changes:
        _audit_person(AuditEntry.Kind.PERSON_CHANGED, person, operator, changes=changes, **origin)
    return person


@transaction.atomic
def person_delete(*, person: Person, operator: str = "") -> None:
    """Delete a person with their reference photos, face crops and embeddings (files included); audited.

    Check-ins keep their claimed ID (the person link becomes empty); the audit log is untouched.
    """
    references = list(person.references.all())
    for reference in references:
        reference_remove(reference=reference)
    _audit_person(
        AuditEntry.Kind.PERSON_DELETED, person, operator, fields=_person_fields(person), references_deleted=len(references)
    )
    person.delete()


def _person_fields(person: Person) -> dict[str, Any]:
    return {
        field: _json_value(getattr(person, field))
        for field in PERSON_AUDITED_FIELDS
        if field not in PERSON_PERSONAL_FIELDS
    }


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _audit_person(kind: str, person: Person, operator: str, **detail: Any) -> AuditEntry:
    return audit_append(
        kind=kind,
        actor=operator,
        person_external_id=person.external_id,
        person_name=person.name,
        detail={"person_id": person.pk, **detail},
    )


@transaction.atomic
def reference_add(*, person: Person, image_file: IO[bytes], operator: str = "") -> ReferenceImage:
    """Store a reference photo (limits checked here), audit it, and queue its embedding after commit."""
    image = validate_image(image_file, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.IMAGE_MAX_PIXELS)
    reference = ReferenceImage(person=person)
    # The suffix comes from the decoded format, never from the uploaded file's name.
    reference.image.save(f"reference{image.suffix}", image_file, save=False)
    reference.full_clean()
    reference.save()
    # What was added, never the image: its stored name, format and size.
    _audit_person(
        AuditEntry.Kind.REFERENCE_ADDED, person, operator, reference_id=reference.pk, file=reference.image.name,
        format=image.format, width=image.width, height=image.height, size_bytes=image.size_bytes,
    )
    reference_id = reference.pk
    transaction.on_commit(lambda: queueing.enqueue("reference_embed_task", reference_id))
    return reference


@dataclass(frozen=True)
class PhotoRefused:
    """A chosen photo that was not added, by the name it had on the operator's computer."""

    name: str
    message: str
    code: str


def references_add(
    *, person: Person, image_files: Iterable[IO[bytes]], operator: str = ""
) -> tuple[list[tuple[str, ReferenceImage]], list[PhotoRefused]]:
    """Add each photo on its own (``reference_add``): one that fails the checks is reported by its file
    name and the others are still added (issue 11, item 2: one bad file dropped every chosen file).

    Returns ([(file name, new reference)], [refused photos]), both in the order given.
    """
    added: list[tuple[str, ReferenceImage]] = []
    refused: list[PhotoRefused] = []
    for number, image_file in enumerate(image_files, start=1):
        name = PurePath(getattr(image_file, "name", "") or f"photo {number}").name
        try:
            reference = reference_add(person=person, image_file=image_file, operator=operator)
        except InvalidImage as problem:
            refused.append(PhotoRefused(name=name, message=problem.message, code=problem.code))
        else:
            added.append((name, reference))
    return added, refused


def reference_embed(*, reference_id: int) -> ReferenceImage | None:
    """Worker: detect, align, embed one reference; mark it ready or rejected with a reason.

    Embeds a pending reference (a new photo) or re-embeds a ready one that another model version
    embedded (``reembedding``). The write is conditional on the row being as it was read, so two
    workers (or a redelivered task) cannot both store an embedding.

    A new photo must also pass the quality bounds (``verification/quality.py``: too_dark, too_bright,
    blurred, face_turned) and match the person's other ready photos: mean score at least the model's
    one-reference threshold, else ``inconsistent_reference`` (embedding kept, so an operator can accept
    it: ``reference_accept``). A re-embedded photo was accepted once and is not judged again.
    """
    from verification import inference

    reference = ReferenceImage.objects.filter(pk=reference_id).first()
    if reference is None or reference.status == ReferenceImage.Status.REJECTED:
        return reference  # Deleted meanwhile, or final.
    info = inference.model_info()
    if reference.status == ReferenceImage.Status.PENDING:
        claim = Q(status=ReferenceImage.Status.PENDING)
    elif reference.model_version != info.version:
        claim = Q(status=ReferenceImage.Status.READY, model_version=reference.model_version)
    else:
        return reference  # Already embedded by this model (redelivered task, or another worker won).
    ReferenceImage.objects.filter(pk=reference_id).update(attempts=F("attempts") + 1)
    try:
        with reference.image.open("rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return _reference_finish(
            reference_id, claim, status=ReferenceImage.Status.REJECTED, reason="unreadable_image",
            embedding=None, embedding_dim=None,
        )
    try:
        face = inference.embed_reference_face(data)
    except inference.FaceRejected as rejected:
        return _reference_finish(
            reference_id, claim, status=ReferenceImage.Status.REJECTED, reason=rejected.reason,
            embedding=None, embedding_dim=None,
        )
    status, reason, measured = ReferenceImage.Status.READY, "", dict(reference.quality or {})
    if reference.status == ReferenceImage.Status.PENDING:
        status, reason, measured = _reference_judge(reference=reference, face=face, info=info)
        if reason and reason != ReferenceImage.Reason.INCONSISTENT_REFERENCE:
            return _reference_finish(
                reference_id, claim, status=status, reason=reason, embedding=None, embedding_dim=None, quality=measured,
            )

    previous_crop = reference.face_crop.name
    crop_name = reference.face_crop.field.generate_filename(reference, "face.png")
    stored_name = reference.face_crop.storage.save(crop_name, ContentFile(png_bytes(face.crop)))
    embedding = face.embedding.astype("<f4")
    updated = _reference_finish(
        reference_id,
        claim,
        status=status,
        reason=reason,
        quality=measured,
        face_crop=stored_name,
        embedding=embedding.tobytes(),
        embedding_dim=int(embedding.shape[0]),
        model_version=info.version,
        embedded_at=timezone.now(),
    )
    if updated is None or updated.face_crop.name != stored_name:
        reference.face_crop.storage.delete(stored_name)  # Another worker finished first.
    elif previous_crop:
        reference.face_crop.storage.delete(previous_crop)  # Re-embedded by a new model.
    return updated


def _reference_judge(*, reference: ReferenceImage, face: Any, info: Any) -> tuple[str, str, dict[str, Any]]:
    """Status, reason and measurements of a new photo: quality bounds, then consistency with the
    person's other ready photos of this model version."""
    from verification import inference

    measured = quality.measure(crop=face.crop, landmarks=face.landmarks)
    result: dict[str, Any] = measured.as_dict()
    problem = quality.problem(measured)
    if problem:
        return ReferenceImage.Status.REJECTED, problem, result
    others = list(
        ReferenceImage.objects.filter(
            person_id=reference.person_id, status=ReferenceImage.Status.READY, model_version=info.version
        ).exclude(pk=reference.pk)
    )
    if others:
        # The door's own question: would this photo be admitted as a probe against the others? The
        # model's rule over k references (mean of scores, or the template) at its threshold for k.
        matrix = selectors.embeddings_matrix(others)
        scores, _ = inference.score(face.embedding, matrix)
        consistency = inference.decision_score(face.embedding, matrix, scores)
        threshold = info.threshold_for(len(others))
        result |= {"consistency": round(consistency, 6), "consistency_threshold": threshold,
                   "consistency_rule": info.rule, "compared_with": [r.pk for r in others]}
        if consistency < threshold:
            return ReferenceImage.Status.REJECTED, ReferenceImage.Reason.INCONSISTENT_REFERENCE, result
    return ReferenceImage.Status.READY, "", result


@transaction.atomic
def reference_accept(*, reference: ReferenceImage, operator: str) -> bool:
    """An operator accepts a photo refused as ``inconsistent_reference`` (it is the person after all):
    it becomes ready with the embedding it was refused with; audited. False if it is not such a photo."""
    if not operator:
        raise ValueError("accepting a reference photo needs the operator's name for the audit log")
    locked = ReferenceImage.objects.select_for_update().select_related("person").filter(pk=reference.pk).first()
    if (
        locked is None
        or locked.status != ReferenceImage.Status.REJECTED
        or locked.reason != ReferenceImage.Reason.INCONSISTENT_REFERENCE
        or not locked.embedding
    ):
        return False
    now = timezone.now()
    measured = dict(locked.quality or {}) | {"accepted_by": operator, "accepted_at": now.isoformat()}
    ReferenceImage.objects.filter(pk=locked.pk).update(
        status=ReferenceImage.Status.READY, reason="", quality=measured, updated_at=now
    )
    audit_append(
        kind=AuditEntry.Kind.REFERENCE_ACCEPTED,
        person_external_id=locked.person.external_id,
        person_name=locked.person.name,
        score=measured.get("consistency"),
        threshold=measured.get("consistency_threshold"),
        reason=ReferenceImage.Reason.INCONSISTENT_REFERENCE,
        model_version=locked.model_version,
        detail={"operator": operator, "reference_id": locked.pk, "compared_with": measured.get("compared_with", [])},
    )
    reference.refresh_from_db()
    return True


@transaction.atomic
def reference_delete(*, reference: ReferenceImage, operator: str = "") -> None:
    """Delete a reference photo with its files and embedding; audited."""
    person = reference.person
    _audit_person(
        AuditEntry.Kind.REFERENCE_DELETED, person, operator, reference_id=reference.pk, file=reference.image.name,
        status=reference.status, model_version=reference.model_version,
    )
    reference_remove(reference=reference)


def reference_remove(*, reference: ReferenceImage) -> None:
    """Delete a reference's files and row, unaudited: for callers that audit the whole act (person
    deletion, erasure)."""
    for file in (reference.image, reference.face_crop):
        if file:
            file.storage.delete(file.name)
    reference.delete()


def reference_fail(*, reference_id: int, error: str = "") -> ReferenceImage | None:
    """A reference whose (re-)embedding kept failing: rejected with ``processing_error``."""
    logger.warning("reference %s rejected after errors: %s", reference_id, error)
    # Pending, or ready but queued for re-embedding by a new model (its old embedding is of no use).
    claim = Q(status=ReferenceImage.Status.PENDING) | Q(
        status=ReferenceImage.Status.READY, reembed_queued_at__isnull=False
    )
    return _reference_finish(
        reference_id, claim, status=ReferenceImage.Status.REJECTED, reason="processing_error",
        embedding=None, embedding_dim=None,
    )


def _reference_finish(reference_id: int, claim: Q, *, status: str, reason: str = "", **fields: Any) -> ReferenceImage | None:
    # Conditional on the row still being as the worker read it: two deliveries cannot both write.
    ReferenceImage.objects.filter(Q(pk=reference_id) & claim).update(
        status=status, reason=reason, reembed_queued_at=None, updated_at=timezone.now(), **fields
    )
    return ReferenceImage.objects.filter(pk=reference_id).first()


