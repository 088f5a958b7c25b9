"""Enrolment: people and their reference photos (embedded by a worker). Devices: ``devices.py``."""
from __future__ import annotations

import io
import logging
from datetime import datetime
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from verification.images import validate_image
from verification.models import Person, ReferenceImage
from verification.services import queueing

logger = logging.getLogger(__name__)


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
def person_delete(*, person: Person) -> None:
    """Delete a person with their reference photos, face crops and embeddings (files included).

    Check-ins keep their claimed ID (the person link becomes empty); the audit log is untouched.
    """
    for reference in list(person.references.all()):
        reference_delete(reference=reference)
    person.delete()


@transaction.atomic
def reference_add(*, person: Person, image_file: IO[bytes]) -> ReferenceImage:
    """Store a reference photo (limits checked here) and queue its embedding after commit."""
    image = validate_image(image_file, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.IMAGE_MAX_PIXELS)
    reference = ReferenceImage(person=person)
    # The suffix comes from the decoded format, never from the uploaded file's name.
    reference.image.save(f"reference{image.suffix}", image_file, save=False)
    reference.full_clean()
    reference.save()
    reference_id = reference.pk
    transaction.on_commit(lambda: queueing.enqueue("reference_embed_task", reference_id))
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
        return _reference_finish(
            reference_id, status=ReferenceImage.Status.REJECTED, reason=rejected.reason, embedding=None, embedding_dim=None
        )

    previous_crop = reference.face_crop.name
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
    elif previous_crop:
        reference.face_crop.storage.delete(previous_crop)  # Re-embedded by a new model.
    return updated


def references_requeue_stale(*, model_version: str) -> list[int]:
    """Queue re-embedding of every reference not embedded by ``model_version``.

    Embeddings of different models are not comparable, so after a model change the check-ins only
    use references the new model embedded. Photos rejected for a processing error get another try.
    """
    stale = ReferenceImage.objects.filter(
        Q(status=ReferenceImage.Status.READY) & ~Q(model_version=model_version)
        | Q(status=ReferenceImage.Status.REJECTED, reason="processing_error")
    )
    reference_ids = list(stale.values_list("pk", flat=True))
    for reference_id in reference_ids:
        with transaction.atomic():
            # Pending, not ready: check-ins skip another model's embedding anyway.
            ReferenceImage.objects.filter(pk=reference_id).update(
                status=ReferenceImage.Status.PENDING, reason="", attempts=0, updated_at=timezone.now()
            )
            transaction.on_commit(lambda reference_id=reference_id: queueing.enqueue("reference_embed_task", reference_id))
    return reference_ids


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

