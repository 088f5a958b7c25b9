"""Data model. Rules about writes live in ``services.py``; here only fields and invariants.

Embeddings are stored as raw little-endian float32 bytes (``embedding_dim`` values), with the
``model_version`` that computed them. They are written at enrolment and again only when the model
version changes (``services/reembedding.py``); a check-in scores only embeddings of its own version.
"""
from __future__ import annotations

import uuid
from pathlib import PurePath

from django.db import models
from django.db.models import Q

from verification import roles
from verification.images import SUFFIX_CONTENT_TYPES


class AuditLogImmutable(Exception):
    """Raised on any attempt to change or delete an audit entry through the ORM."""


def _random_name(folder: str, filename: str) -> str:
    # Random names: a file path must not reveal who is in the photo. Services pass a name whose suffix
    # comes from the decoded format (``ImageInfo.suffix``); any other suffix becomes ``.bin``, which
    # the media view never serves (issue 9, item 1: an image/HTML polyglot named ``x.html``).
    suffix = PurePath(filename).suffix.lower()
    return f"{folder}/{uuid.uuid4().hex}{suffix if suffix in SUFFIX_CONTENT_TYPES else '.bin'}"


def reference_upload_to(instance: models.Model, filename: str) -> str:
    return _random_name("references", filename)


def face_upload_to(instance: models.Model, filename: str) -> str:
    return _random_name("faces", filename)


def snapshot_upload_to(instance: models.Model, filename: str) -> str:
    return _random_name("snapshots", filename)


class TimeStamped(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


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
        return f"Reference #{self.pk} of {self.person_id} ({self.status})"


class Device(TimeStamped):
    name = models.CharField(max_length=100, unique=True)
    # SHA-256 of the token: tokens are 256-bit random strings, so a slow hash adds nothing.
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(max_length=8, editable=False, help_text="First characters, to tell tokens apart.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When the current token was issued: DEVICE_TOKEN_MAX_AGE_DAYS counts from here.
    token_issued_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Opt-in signed requests (issue 9, item 7): with a secret, every API request of this device must carry
    # an HMAC-SHA256 signature (verification/api/signatures.py). HMAC needs the secret itself, so it is
    # stored as issued (not encrypted at rest: docs/SECURITY.md); empty = the device does not sign.
    signing_secret = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta:
        ordering = ["name"]
        permissions = roles.model_permissions("device")

    def __str__(self) -> str:
        return self.name

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def signs_requests(self) -> bool:
        return bool(self.signing_secret)


class CheckIn(TimeStamped):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
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

    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="checkins")
    claimed_external_id = models.CharField(max_length=64)
    person = models.ForeignKey(Person, on_delete=models.SET_NULL, null=True, blank=True, related_name="checkins")
    snapshot = models.ImageField(upload_to=snapshot_upload_to, blank=True)
    snapshot_purged_at = models.DateTimeField(null=True, blank=True, help_text="When retention removed the file.")
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
            # Replay check: "an earlier check-in whose snapshot had these bytes".
            models.Index(fields=["snapshot_sha256"], name="checkin_snapshot_sha256_idx"),
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
        ]

    def __str__(self) -> str:
        return f"Check-in #{self.pk} {self.claimed_external_id} @ {self.device_id} ({self.status})"


class Lockout(TimeStamped):
    """Attempt limiting (NIST SP 800-53 AC-7): a claimed person or a device refused for a while.

    Active while ``unlocked_at`` is empty and ``locked_until`` is in the future; an operator's unlock
    or the passing of ``locked_until`` ends it. Rows are kept as history.
    """

    class Scope(models.TextChoices):
        PERSON = "person", "Claimed person"
        DEVICE = "device", "Device"

    scope = models.CharField(max_length=8, choices=Scope.choices)
    # The claimed external ID (person scope) or the device id as text (device scope).
    key = models.CharField(max_length=64)
    # Shown in the admin: the device's name, or the claimed ID again.
    label = models.CharField(max_length=200, blank=True, default="")
    failures = models.PositiveIntegerField(help_text="Failed decisions in the window that triggered it.")
    # 1 for a first lockout; n for the n-th in a row (each began within LOCKOUT_ESCALATION_SECONDS of the
    # previous one's end): it lasts LOCKOUT_SECONDS * 2^(n-1), at most LOCKOUT_MAX_SECONDS.
    level = models.PositiveSmallIntegerField(default=1)
    locked_until = models.DateTimeField()
    unlocked_at = models.DateTimeField(null=True, blank=True)
    unlocked_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        permissions = roles.model_permissions("lockout")
        indexes = [
            # lockout_active / lockout_note_failure: "latest lockout of (scope, key)".
            models.Index(fields=["scope", "key", "created_at"], name="lockout_scope_key_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                name="lockout_unlock_has_time", condition=Q(unlocked_by="") | Q(unlocked_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"Lockout of {self.scope} {self.label or self.key}"

    def ends_at(self):  # noqa: ANN201 - datetime
        return self.unlocked_at or self.locked_until


class LockoutSubject(TimeStamped):
    """One row per claimed person / device ever refused: the row a deciding transaction locks.

    ``checkin_decide`` locks (SELECT ... FOR UPDATE) the rows of its check-in's claimed person and
    device before it reads the lockouts in force and counts refusals, so two workers deciding attempts
    of the same person or device do it one after the other (issue 9, item 5).
    """

    scope = models.CharField(max_length=8, choices=Lockout.Scope.choices)
    key = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="lockout_subject_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"


class SiteCalibration(TimeStamped):
    """A site's own thresholds for one model version, measured on its ready references (``manage.py
    calibrate --apply``). The newest row of the deciding model's version wins; one with no thresholds
    sends that version back to the model's own. Rows are kept as history (``services/thresholds.py``).
    """

    model_version = models.CharField(max_length=64)
    target_far = models.FloatField(help_text="The false-accept rate the thresholds were chosen for.")
    # {"1": t1, "2": t2, ...}: threshold of the mean rule per reference count. Empty: the model's thresholds.
    thresholds = models.JSONField(default=dict, blank=True)
    # Per reference count: trials, FAR and FRR with 95 % intervals at the previous and the new thresholds.
    figures = models.JSONField(default=dict, blank=True)
    people = models.PositiveIntegerField(default=0, help_text="People with ready references measured.")
    references = models.PositiveIntegerField(default=0, help_text="Ready references measured.")
    created_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # thresholds_effective, on every check-in: "newest calibration of model version V".
            models.Index(fields=["model_version", "created_at"], name="sitecal_version_created_idx"),
        ]

    def __str__(self) -> str:
        return f"Site calibration #{self.pk} of {self.model_version}"


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


class WorkerHeartbeat(TimeStamped):
    """One row per Celery pool process: it answered at ``beat_at`` with ``model_version`` loaded.

    Each pool process upserts its row every ``WORKER_HEARTBEAT_INTERVAL_SECONDS`` from a thread
    started at process start (``verification/monitoring/heartbeat.py``); ``/readyz`` needs one younger
    than ``WORKER_HEARTBEAT_MAX_AGE_SECONDS`` with a model, and ``/metrics`` lists the fresh ones. Rows
    of processes that died stop beating and are pruned after a day.
    """

    # The Celery node name and the process id, "celery@host:1234": unique per live process.
    worker = models.CharField(max_length=200, unique=True)
    # Empty while the process has not loaded the model (``model_error`` says why, if it failed).
    model_version = models.CharField(max_length=64, blank=True, default="")
    model_error = models.CharField(max_length=500, blank=True, default="")
    beat_at = models.DateTimeField()

    class Meta:
        ordering = ["worker"]
        indexes = [
            # workers_fresh (/readyz, /metrics): "heartbeats since T"; pruning: "older than T".
            models.Index(fields=["beat_at"], name="worker_heartbeat_beat_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.worker} ({self.model_version or 'no model'})"
