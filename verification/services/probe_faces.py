"""The snapshot's aligned face: stored by the worker beside its check-in, removed with the snapshot.

The audit entry's page shows it next to each reference's aligned face and score (issue 11, item 2), so a
security officer sees the face the model compared, not only the whole camera frame. It is biometric data
derived from the snapshot: seen with the right to see snapshots (``roles.MEDIA_FOLDER_PERMISSIONS``), and
deleted whenever the snapshot is (retention, erasure).
"""
from __future__ import annotations

import logging
from typing import Any

from django.core.files.base import ContentFile

from verification.images import png_bytes
from verification.models import CheckIn

logger = logging.getLogger(__name__)


def probe_face_store(*, checkin_id: int, crop: Any) -> str:
    """Save ``crop`` (RGB uint8 HxWx3) as the check-in's probe face while the worker holds the row.

    Conditional on the row still being processed and having none yet, so a redelivered task cannot
    leave two; the file is removed again when the row did not take it. Returns the stored name, or "".
    """
    field = CheckIn._meta.get_field("probe_face")
    name = field.storage.save(field.generate_filename(None, "face.png"), ContentFile(png_bytes(crop)))
    taken = CheckIn.objects.filter(pk=checkin_id, status=CheckIn.Status.PROCESSING, probe_face="").update(
        probe_face=name
    )
    if not taken:
        field.storage.delete(name)
        return ""
    return name


def probe_face_delete(*, checkin: CheckIn) -> bool:
    """Delete the check-in's probe face file (the caller clears the field); True if there was one."""
    if not checkin.probe_face:
        return False
    checkin.probe_face.storage.delete(checkin.probe_face.name)
    return True
