"""People and their reference photos."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from verification import roles
from verification.models.base import (
    TimeStamped,
    face_upload_to,
    reference_upload_to,
)


class Person(TimeStamped):
    name = models.CharField(max_length=200)
    external_id = models.CharField(
        max_length=64, unique=True, help_text="Badge number or other ID the door device sends."
    )
    is_active = models.BooleanField(default=True)
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "people"
        permissions = roles.model_permissions("person")
        constraints = [
            models.CheckConstraint(
                name="person_validity_ordered",
                condition=Q(valid_from__isnull=True) | Q(valid_until__isnull=True) | Q(valid_from__lt=models.F("valid_until")),
            ),
            models.CheckConstraint(name="person_external_id_not_blank", condition=~Q(external_id="")),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.external_id})"

    def clean(self) -> None:
        # ``person_validity_ordered`` in plain words, on the field (issue 11, item 2): without this the form
        # said "Constraint “person_validity_ordered” is violated." A field error here also skips that check.
        if self.valid_from is not None and self.valid_until is not None and self.valid_from >= self.valid_until:
            raise ValidationError({
                "valid_until": "“Valid until” must be later than “valid from”: the person may enter from the first "
                "time up to, but not including, the second.",
            })


class ReferenceImage(TimeStamped):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        REJECTED = "rejected", "Rejected"

    class Reason(models.TextChoices):
        NONE = "", "-"
        NO_FACE = "no_face", "No face found"
        FACE_TOO_SMALL = "face_too_small", "Face too small to verify"
        MULTIPLE_FACES = "multiple_faces", "More than one face"
        UNREADABLE_IMAGE = "unreadable_image", "Unreadable image"
        PROCESSING_ERROR = "processing_error", "Processing error"
        # Enrolment quality (verification/quality.py; bounds measured in the README).
        TOO_DARK = "too_dark", "Face too dark"
        TOO_BRIGHT = "too_bright", "Face too bright (washed out)"
        BLURRED = "blurred", "Face blurred"
        FACE_TURNED = "face_turned", "Face turned too far from the camera"
        INCONSISTENT_REFERENCE = "inconsistent_reference", "Does not match the person's other photos"

    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="references")
    image = models.ImageField(upload_to=reference_upload_to, width_field="width", height_field="height")
    width = models.PositiveIntegerField(null=True, blank=True, editable=False)
    height = models.PositiveIntegerField(null=True, blank=True, editable=False)
    face_crop = models.ImageField(upload_to=face_upload_to, blank=True, editable=False)
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    embedding_dim = models.PositiveIntegerField(null=True, blank=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, editable=False)
    reason = models.CharField(max_length=32, choices=Reason.choices, blank=True, default="", editable=False)
    model_version = models.CharField(max_length=64, blank=True, default="", editable=False)
    embedded_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when a sweep queued re-embedding by a newer model (the claim: one sweep queues a row once);
    # cleared when the new embedding is stored.
    reembed_queued_at = models.DateTimeField(null=True, blank=True, editable=False)
    attempts = models.PositiveIntegerField(default=0, editable=False)
    # Enrolment measurements: luminance, sharpness, yaw (verification/quality.py), the mean score against
    # the person's other ready photos and its threshold, and who accepted an inconsistent photo.
    quality = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ["created_at"]
        verbose_name = "reference photo"
        permissions = roles.model_permissions("referenceimage")
        indexes = [
            # checkin_process: "ready references of person X" on every check-in.
            models.Index(fields=["person", "status"], name="ref_person_status_idx"),
            # Re-embedding sweep and the admin's progress: "ready references not embedded by model V".
            models.Index(fields=["status", "model_version"], name="ref_status_version_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                name="ref_ready_has_embedding",
                condition=~Q(status="ready") | (Q(embedding__isnull=False) & Q(embedding_dim__gt=0)),
            ),
            models.CheckConstraint(
                name="ref_rejected_has_reason", condition=~Q(status="rejected") | ~Q(reason="")
            ),
        ]

    def __str__(self) -> str:
        # Shown as the inline's heading on the person's own page: "of 2" read like a count there.
        return f"Photo #{self.pk} ({self.get_status_display().lower()})"
