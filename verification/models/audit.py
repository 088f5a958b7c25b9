"""The append-only, hash-chained audit log."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from verification import roles
from verification.models.base import (
    TimeStamped,
)
from verification.models.checkins import CheckIn


class AuditLogImmutable(Exception):
    """Raised on any attempt to change or delete an audit entry through the ORM."""


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):  # type: ignore[override]
        raise AuditLogImmutable("Audit entries are append-only.")

    def delete(self):  # type: ignore[override]
        raise AuditLogImmutable("Audit entries are append-only.")

    def _raw_delete(self, using):  # noqa: ANN001 - Django internal used by fast deletes
        raise AuditLogImmutable("Audit entries are append-only.")


class AuditEntry(models.Model):
    """Append-only, hash-chained record of every decision and security event.

    No foreign key can cascade into it: device and person are copied as they were at the time.
    The person's name and external ID enter the chain only through ``person_digest`` (salted), so a
    later erasure can blank the name, ID and salt while the chain still verifies.
    """

    class Kind(models.TextChoices):
        DECISION = "decision", "Decision"
        FAILURE = "failure", "Processing failed"
        # The model's verdict "review" (score in the band); the guard's answer or the timeout follows as
        # the check-in's one ``decision`` entry (``services/reviews.py``).
        REVIEW = "review", "Sent to a guard (score in the review band)"
        LOCKOUT = "lockout", "Lockout"
        UNLOCK = "unlock", "Unlock"
        ERASURE = "erasure", "Erasure receipt"
        DEVICE_REVOKED = "device_revoked", "Device revoked"
        DEVICE_REINSTATED = "device_reinstated", "Device reinstated (new token)"
        CALIBRATION = "calibration", "Site thresholds applied"
        REFERENCE_ACCEPTED = "reference_accepted", "Inconsistent reference photo accepted by an operator"
        # Admin changes (issue 9, item 3): who changed whom or what, with what changed.
        PERSON_CREATED = "person_created", "Person created"
        PERSON_CHANGED = "person_changed", "Person changed"
        PERSON_DELETED = "person_deleted", "Person deleted"
        REFERENCE_ADDED = "reference_added", "Reference photo added"
        REFERENCE_DELETED = "reference_deleted", "Reference photo deleted"
        DEVICE_CREATED = "device_created", "Device created (first token)"
        DEVICE_TOKEN_ISSUED = "device_token_issued", "Device token issued"
        DEVICE_SIGNING_SECRET_ISSUED = "device_signing_issued", "Device request-signing secret issued"
        DEVICE_SIGNING_SECRET_REMOVED = "device_signing_removed", "Device request-signing secret removed"
        MODEL_CHANGED = "model_changed", "Face model version first loaded"
        # Access rules (issue 11, item 1; ``services/access_rules.py``).
        ZONE_CREATED = "zone_created", "Zone created"
        ZONE_CHANGED = "zone_changed", "Zone changed"
        ZONE_DELETED = "zone_deleted", "Zone deleted"
        DOOR_CREATED = "door_created", "Door created"
        DOOR_CHANGED = "door_changed", "Door changed"
        DOOR_DELETED = "door_deleted", "Door deleted"
        DEVICE_DOOR_CHANGED = "device_door_changed", "Device moved to another door"
        ACCESS_GROUP_CREATED = "access_group_created", "Access group created"
        ACCESS_GROUP_CHANGED = "access_group_changed", "Access group changed (zones, windows)"
        ACCESS_GROUP_DELETED = "access_group_deleted", "Access group deleted"
        ACCESS_MEMBER_ADDED = "access_member_added", "Person added to an access group"
        ACCESS_MEMBER_REMOVED = "access_member_removed", "Person removed from an access group"
        HOLIDAY_ADDED = "holiday_added", "Holiday added"
        HOLIDAY_CHANGED = "holiday_changed", "Holiday changed"
        HOLIDAY_REMOVED = "holiday_removed", "Holiday removed"

    # Position in the chain; the chain is walked in this order.
    seq = models.PositiveBigIntegerField(unique=True, editable=False)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # Append-only rows are never updated, so there is created_at but deliberately no updated_at.
    created_at = models.DateTimeField(editable=False)
    checkin = models.ForeignKey(
        CheckIn, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="audit_entries"
    )
    device_ref = models.BigIntegerField(null=True, blank=True, help_text="Device id at the time.")
    device_name = models.CharField(max_length=100, blank=True, default="")
    person_external_id = models.CharField(max_length=64, blank=True, default="")
    person_name = models.CharField(max_length=200, blank=True, default="")
    person_salt = models.CharField(max_length=32, blank=True, default="")
    person_digest = models.CharField(max_length=64, blank=True, default="")
    person_erased_at = models.DateTimeField(null=True, blank=True)
    decision = models.PositiveSmallIntegerField(null=True, blank=True)
    score = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    reason = models.CharField(max_length=32, blank=True, default="")
    model_version = models.CharField(max_length=64, blank=True, default="")
    processing_ms = models.FloatField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    # Who did it: a staff user name, ``device:<name>`` for a door's check-in, ``cli:<os user>``, ``system``.
    # Empty only on entries written before issue 9, item 3 (their ``detail`` may name an ``operator``).
    actor = models.CharField(max_length=150, blank=True, default="")
    # How ``entry_hash`` was computed (``verification.audit.SCHEMES``); rows from before migration 0013
    # are the original plain SHA-256 without ``actor``.
    hash_scheme = models.CharField(max_length=16, default="sha256-v1")
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64, unique=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        verbose_name_plural = "audit entries"
        permissions = roles.model_permissions("auditentry")
        indexes = [
            # Admin audit list: newest first, filtered by date.
            models.Index(fields=["created_at"], name="audit_created_idx"),
            # Admin filters / search by claimed person and by device.
            models.Index(fields=["person_external_id", "created_at"], name="audit_person_created_idx"),
            models.Index(fields=["device_name", "created_at"], name="audit_device_created_idx"),
        ]
        constraints = [
            # At most one decision row per check-in, even if two workers raced.
            models.UniqueConstraint(
                fields=["checkin"], condition=Q(kind="decision"), name="audit_one_decision_per_checkin"
            ),
            # One model_changed entry per model version, however many worker processes load it.
            models.UniqueConstraint(
                fields=["model_version"], condition=Q(kind="model_changed"), name="audit_one_model_changed_per_version"
            ),
        ]

    def __str__(self) -> str:
        return f"Audit #{self.seq} {self.kind}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AuditLogImmutable("Audit entries are append-only.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditLogImmutable("Audit entries are append-only.")


class AuditChainHead(models.Model):
    """Single row holding the last seq and hash; locking it serialises appends across workers.

    Updated in the transaction of every append, so verification notices entries cut off the tail.
    With ``AUDIT_HMAC_KEY`` set, ``mac`` is a keyed MAC of (seq, last_hash): a database writer who also
    rewinds this row cannot make a valid one.
    """

    seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64)
    mac = models.CharField(max_length=64, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(name="audit_head_singleton", condition=Q(pk=1))]


class AuditCheck(TimeStamped):
    """One walk of the audit chain (beat, daily, or an auditor in the admin) and what it found.

    The newest row drives the admin's front-page banner; ``problem`` is empty when the chain was intact.
    """

    source = models.CharField(max_length=32, help_text="beat, admin:<user>, ...")
    checked = models.PositiveBigIntegerField(default=0, help_text="Entries verified before the break, or all.")
    broken_seq = models.PositiveBigIntegerField(null=True, blank=True)
    problem = models.CharField(max_length=300, blank=True, default="")
    head_seq = models.PositiveBigIntegerField(default=0)
    head_hash = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # audit_check_latest (admin banner): the newest check.
            models.Index(fields=["created_at"], name="audit_check_created_idx"),
        ]

    @property
    def ok(self) -> bool:
        return self.broken_seq is None and not self.problem

    def __str__(self) -> str:
        return f"Audit check {self.created_at:%Y-%m-%d %H:%M} ({'intact' if self.ok else 'BROKEN'})"
