"""What every model shares: timestamps and random upload names."""

from __future__ import annotations

import uuid
from pathlib import PurePath

from django.db import models

from verification.images import SUFFIX_CONTENT_TYPES


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


def probe_face_upload_to(instance: models.Model, filename: str) -> str:
    # The snapshot's aligned face: a folder of its own, seen with the right to see snapshots (roles.py).
    return _random_name("probe_faces", filename)


class TimeStamped(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
