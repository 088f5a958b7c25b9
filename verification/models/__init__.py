"""Data model. Rules about writes live in ``services.py``; here only fields and invariants.

Embeddings are stored as raw little-endian float32 bytes (``embedding_dim`` values), with the
``model_version`` that computed them. They are written at enrolment and again only when the model
version changes (``services/reembedding.py``); a check-in scores only embeddings of its own version.
"""

from verification.models.access import AccessGroup, AccessGroupMembership, AccessWindow, Door, Holiday, Zone
from verification.models.audit import (
    AuditChainHead,
    AuditCheck,
    AuditEntry,
    AuditLogImmutable,
    AuditQuerySet,
)
from verification.models.base import (
    TimeStamped,
    face_upload_to,
    reference_upload_to,
    snapshot_upload_to,
)
from verification.models.calibration import SiteCalibration
from verification.models.checkins import CheckIn
from verification.models.devices import Device
from verification.models.lockouts import Lockout, LockoutSubject
from verification.models.people import Person, ReferenceImage
from verification.models.reviews import CheckInReview
from verification.models.workers import WorkerHeartbeat

__all__ = [
    "AccessGroup", "AccessGroupMembership", "AccessWindow", "Door", "Holiday", "Zone",
    "AuditChainHead", "AuditCheck", "AuditEntry", "AuditLogImmutable", "AuditQuerySet", "CheckIn", "CheckInReview", "Device", "Lockout",
    "LockoutSubject", "Person", "ReferenceImage", "SiteCalibration", "TimeStamped", "WorkerHeartbeat", "face_upload_to",
    "reference_upload_to", "snapshot_upload_to",
]
