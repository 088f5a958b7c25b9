"""Check-ins: one row per door request, one decision each."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from verification import roles
from verification.models.base import (
    TimeStamped,
    probe_face_upload_to,
    snapshot_upload_to,
)
from verification.models.devices import Device
from verification.models.people import Person, ReferenceImage


class CheckIn(TimeStamped):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        # The score fell in the review band: a guard admits or refuses (``services/reviews.py``).
        REVIEW = "review", "Waiting for a guard"
        DECIDED = "decided", "Decided"
        FAILED = "failed", "Failed"

    class Reason(models.TextChoices):
        NONE = "", "-"
        NO_MATCH = "no_match", "Face does not match"
        NO_FACE = "no_face", "No face found"
        FACE_TOO_SMALL = "face_too_small", "Face too small to verify"
        MULTIPLE_FACES = "multiple_faces", "More than one face"
        UNKNOWN_PERSON = "unknown_person", "Unknown person"
        INACTIVE_PERSON = "inactive_person", "Inactive or outside validity dates"
        NO_REFERENCES = "no_references", "No usable reference photos"
        REFERENCES_STALE = "references_stale", "Reference photos not yet re-embedded by this model"
        UNREADABLE_IMAGE = "unreadable_image", "Unreadable image"
        LOCKED_OUT = "locked_out", "Locked out after repeated failures"
        PROCESSING_ERROR = "processing_error", "Processing error"
        SNAPSHOT_MISSING = "snapshot_missing", "Snapshot file missing"
        DEVICE_REVOKED = "device_revoked", "Device revoked before the check-in was processed"
        REPLAYED = "replayed", "Replayed snapshot (seen before, or a near-duplicate of a recent probe)"
        GUARD_REFUSED = "guard_refused", "Refused by a guard (score in the review band)"
        REVIEW_TIMEOUT = "review_timeout", "No guard answered the review in time"
        # Access rights (issue 11, item 1; ``services/access.py``): refused before any face work.
        NOT_AUTHORIZED_HERE = "not_authorized_here", "No access group grants this door's zone"
        OUTSIDE_SCHEDULE = "outside_schedule", "Outside the access groups' time windows"

    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="checkins")
    claimed_external_id = models.CharField(max_length=64)
    person = models.ForeignKey(Person, on_delete=models.SET_NULL, null=True, blank=True, related_name="checkins")
    snapshot = models.ImageField(upload_to=snapshot_upload_to, blank=True)
    snapshot_purged_at = models.DateTimeField(null=True, blank=True, help_text="When retention removed the file.")
    # The face the worker found in the snapshot, aligned as the model saw it (PNG), for the audit entry's page
    # beside the references (issue 11, item 2). Derived from the snapshot: purged and erased with it.
    probe_face = models.ImageField(upload_to=probe_face_upload_to, blank=True, editable=False)
    # SHA-256 of the snapshot's bytes: the same bytes twice are a replay (issue 9, item 7). Kept when the
    # file is purged, so a replay is recognised for as long as the row exists.
    snapshot_sha256 = models.CharField(max_length=64, blank=True, default="", editable=False)
    # The probe's embedding (raw float32, the decision's model_version), compared with the same claimed
    # person's recent probes to refuse near-duplicates; cleared with the snapshot (retention, erasure).
    probe_embedding = models.BinaryField(null=True, blank=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    decision = models.PositiveSmallIntegerField(null=True, blank=True)
    score = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    reason = models.CharField(max_length=32, choices=Reason.choices, blank=True, default="")
    model_version = models.CharField(max_length=64, blank=True, default="")
    # The review band's lower edge in force for this check-in (null: band off, or decided before any
    # face was scored). Between it and ``threshold`` a guard decides (``services/reviews.py``).
    review_threshold = models.FloatField(null=True, blank=True)
    # Set when the model's verdict was "review": since when a guard may decide, and when the review
    # lapses into 0 ``review_timeout`` (fixed at the start, so a settings change never moves a deadline).
    review_started_at = models.DateTimeField(null=True, blank=True)
    review_expires_at = models.DateTimeField(null=True, blank=True)
    # The guard (user name) who admitted or refused it; empty for the model's own decisions and timeouts.
    reviewed_by = models.CharField(max_length=150, blank=True, default="")
    best_reference = models.ForeignKey(
        ReferenceImage, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Milliseconds per stage: queue, decode, detect, embed, score, total (issue 5's breakdown).
    timings = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "check-in"
        verbose_name_plural = "check-ins"
        permissions = roles.model_permissions("checkin")
        indexes = [
            # sweep_checkins: "pending/processing rows older than T".
            models.Index(fields=["status", "updated_at"], name="checkin_status_updated_idx"),
            # Attempt limiting: "recent failed decisions for claimed person X" (and per device).
            models.Index(fields=["claimed_external_id", "created_at"], name="checkin_claimed_created_idx"),
            models.Index(fields=["device", "created_at"], name="checkin_device_created_idx"),
            # Attempt limiting counts refusals on the decision's clock (issue 9, item 5): "refusals of
            # claimed person X / at device D decided since T".
            models.Index(fields=["claimed_external_id", "decided_at"], name="checkin_claimed_decided_idx"),
            models.Index(fields=["device", "decided_at"], name="checkin_device_decided_idx"),
            # "Received in [since, until)" and "older than T": the dashboard's counts on every admin page
            # view, the admin list (newest first) and the retention sweep.
            models.Index(fields=["created_at"], name="checkin_created_idx"),
            # Replay check: "an earlier check-in whose snapshot had these bytes".
            models.Index(fields=["snapshot_sha256"], name="checkin_snapshot_sha256_idx"),
            # Review queue "in review, oldest first", the waiting-reviews metric and the timeout sweep
            # "in review" (a handful of rows, read in start order).
            models.Index(fields=["status", "review_started_at"], name="checkin_review_queue_idx"),
        ]
        constraints = [
            # One decision per check-in: a decided row has exactly one 0/1, an undecided row none.
            models.CheckConstraint(
                name="checkin_decision_iff_decided",
                # (IS NOT NULL spelled out: a CHECK that evaluates to NULL passes.)
                condition=(
                    Q(status="decided")
                    & Q(decision__isnull=False)
                    & Q(decision__in=[0, 1])
                    & Q(decided_at__isnull=False)
                )
                | (~Q(status="decided") & Q(decision__isnull=True)),
            ),
            # Every 0 says why; a 1 has no reason.
            models.CheckConstraint(
                name="checkin_reason_matches_decision",
                condition=Q(decision__isnull=True) | (Q(decision=0) & ~Q(reason="")) | (Q(decision=1) & Q(reason="")),
            ),
            models.CheckConstraint(
                name="checkin_failed_has_reason", condition=~Q(status="failed") | ~Q(reason="")
            ),
            # A row in review carries what sent it there: its score, both band edges and its deadline.
            models.CheckConstraint(
                name="checkin_review_has_band",
                condition=~Q(status="review")
                | (
                    Q(score__isnull=False)
                    & Q(threshold__isnull=False)
                    & Q(review_threshold__isnull=False)
                    & Q(review_started_at__isnull=False)
                    & Q(review_expires_at__isnull=False)
                ),
            ),
            # Only a decided row that went through review names a guard; a guard's refusal always does,
            # a timeout never does.
            models.CheckConstraint(
                name="checkin_reviewed_by_after_review",
                condition=(Q(reviewed_by="") | (Q(status="decided") & Q(review_started_at__isnull=False)))
                & (~Q(reason="guard_refused") | ~Q(reviewed_by=""))
                & (~Q(reason="review_timeout") | (Q(reviewed_by="") & Q(review_started_at__isnull=False))),
            ),
        ]

    def __str__(self) -> str:
        return f"Check-in #{self.pk} {self.claimed_external_id} @ {self.device_id} ({self.status})"
