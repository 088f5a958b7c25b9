"""Retention: biometric files are kept no longer than the settings say.

- Check-in snapshots older than ``RETENTION_SNAPSHOT_DAYS``: the file (and the aligned face the worker
  cut from it, ``probe_face``) is deleted, the check-in row stays (it is the record of the decision) with
  ``snapshot_purged_at`` set; audit rows are never touched.
- Rejected enrolment photos older than ``RETENTION_REJECTED_REFERENCE_DAYS``: photo and row deleted
  (they were never usable for verification).

Files are deleted before the row is updated: if the update fails, the next run finds the row again and
deleting an already missing file is a no-op, so no file outlives its retention because of a crash.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from verification.models import CheckIn, ReferenceImage
from verification.services.enrolment import reference_delete
from verification.services.probe_faces import probe_face_delete

logger = logging.getLogger(__name__)


@dataclass
class RetentionReport:
    """What one retention run deleted (ids, so an operator can look them up)."""

    snapshot_checkin_ids: list[int] = field(default_factory=list)
    rejected_reference_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[int]]:
        return {"snapshots": self.snapshot_checkin_ids, "rejected_references": self.rejected_reference_ids}

    def __str__(self) -> str:
        return (
            f"deleted {len(self.snapshot_checkin_ids)} check-in snapshot(s) {self.snapshot_checkin_ids} "
            f"and {len(self.rejected_reference_ids)} rejected enrolment photo(s) {self.rejected_reference_ids}"
        )


def retention_apply(*, now: datetime | None = None) -> RetentionReport:
    """Delete every biometric file past its retention period; return what was deleted."""
    now = now or timezone.now()
    report = RetentionReport()
    snapshot_cutoff = now - timedelta(days=settings.RETENTION_SNAPSHOT_DAYS)
    expired = CheckIn.objects.filter(created_at__lt=snapshot_cutoff).exclude(snapshot="", probe_face="")
    for checkin in expired.only("pk", "snapshot", "probe_face").iterator(chunk_size=500):
        if checkin.snapshot:
            checkin.snapshot.storage.delete(checkin.snapshot.name)
        probe_face_delete(checkin=checkin)
        CheckIn.objects.filter(pk=checkin.pk).update(
            snapshot="", probe_face="", snapshot_purged_at=now, updated_at=now,
            probe_embedding=None,  # derived from the snapshot, as probe_face is
        )
        report.snapshot_checkin_ids.append(checkin.pk)

    reference_cutoff = now - timedelta(days=settings.RETENTION_REJECTED_REFERENCE_DAYS)
    rejected = ReferenceImage.objects.filter(status=ReferenceImage.Status.REJECTED, updated_at__lt=reference_cutoff)
    for reference in list(rejected):
        reference_id = reference.pk
        reference_delete(reference=reference)
        report.rejected_reference_ids.append(reference_id)
    logger.info("retention: %s", report)
    return report
