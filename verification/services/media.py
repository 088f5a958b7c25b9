"""Reconcile the media folders with the rows that own their files (issue 9, item 10).

A snapshot is deleted only when the database write after it fails; a reference photo survives an admin
rollback; a crash between a file and its row leaves one without the other. ``media_check`` lists every
file under the owned folders (``snapshots/``: ``CheckIn.snapshot``; ``references/``:
``ReferenceImage.image``; ``faces/``: ``ReferenceImage.face_crop``; ``probe_faces/``: ``CheckIn.probe_face``)
and reports:

- orphans: files no row points at (biometric data nobody can see, erase or retain);
- missing: rows whose file is gone (a check-in that cannot be reviewed, a reference that cannot be
  re-embedded).

With ``delete`` it removes orphans older than ``MEDIA_ORPHAN_GRACE_SECONDS``; younger files are kept,
because a file is written before the row that owns it is committed (a check-in being submitted, an
admin form being saved). Missing files are only reported: the row is the record of a decision.
The listing is taken before the rows are read, so a row committed meanwhile protects its file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import Storage
from django.utils import timezone

from verification.models import CheckIn, ReferenceImage

logger = logging.getLogger(__name__)

# folder -> (model, file field) owning the files in it
OWNED_FOLDERS = {
    "snapshots": (CheckIn, "snapshot"),
    "references": (ReferenceImage, "image"),
    "faces": (ReferenceImage, "face_crop"),
    "probe_faces": (CheckIn, "probe_face"),
}


@dataclass
class MediaReport:
    """File names are relative to the storage (``snapshots/<hex>.jpg``); missing rows as ``model:pk:field``."""

    orphans: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept_in_grace: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.orphans and not self.missing

    def as_dict(self) -> dict[str, list[str]]:
        return {"orphans": self.orphans, "missing": self.missing, "deleted": self.deleted}

    def __str__(self) -> str:
        lines = [
            f"{len(self.orphans)} orphan file(s) (no row owns them), {len(self.missing)} row(s) whose file is "
            f"missing, {len(self.deleted)} orphan(s) deleted"
        ]
        lines += [f"orphan: {name}" + (" (deleted)" if name in self.deleted else "") for name in self.orphans]
        lines += [f"missing: {row}" for row in self.missing]
        return "\n".join(lines)


def _files(storage: Storage, folder: str) -> list[str]:
    if not storage.exists(folder):
        return []
    directories, files = storage.listdir(folder)
    names = [f"{folder}/{name}" for name in files]
    for directory in directories:
        names += _files(storage, f"{folder}/{directory}")
    return names


def media_check(*, delete: bool = False, grace_seconds: int | None = None, now: datetime | None = None) -> MediaReport:
    """Report orphan files and rows with missing files; with ``delete``, remove orphans past the grace period."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.MEDIA_ORPHAN_GRACE_SECONDS if grace_seconds is None else grace_seconds)
    report = MediaReport()

    listed: dict[str, tuple[Storage, list[str]]] = {}
    for folder, (model, field_name) in OWNED_FOLDERS.items():
        storage = model._meta.get_field(field_name).storage
        listed[folder] = (storage, _files(storage, folder))

    owned: set[str] = set()
    for folder, (model, field_name) in OWNED_FOLDERS.items():
        storage = listed[folder][0]
        rows = model.objects.exclude(**{field_name: ""}).values_list("pk", field_name)
        for pk, name in rows.iterator(chunk_size=2000):
            owned.add(name)
            if not storage.exists(name):
                report.missing.append(f"{model._meta.label_lower}:{pk}:{field_name}:{name}")

    for folder, (storage, names) in listed.items():
        for name in sorted(set(names) - owned):
            report.orphans.append(name)
            if not delete:
                continue
            try:
                modified = storage.get_modified_time(name)
            except FileNotFoundError:  # gone meanwhile
                continue
            if now - modified < grace:
                report.kept_in_grace.append(name)
                continue
            storage.delete(name)
            report.deleted.append(name)

    if report.clean:
        logger.info("media check: every file has its row and every row its file")
    else:
        logger.warning("media check: %s", report)
    return report
