"""Helpers shared by the integration tests: post a check-in, wait for the worker's verdict."""
from __future__ import annotations

import io
import itertools
import json
import os
import struct
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from verification.models import AuditEntry, CheckIn, Person, ReferenceImage

# The worker may still be importing TensorFlow and loading the model for its first task.
DECISION_TIMEOUT_S = 180
FIXTURE_FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
ENROLLED_PHOTOS = (1, 2)


def wait_until_final(checkin_id: int, timeout: float = DECISION_TIMEOUT_S) -> CheckIn:
    """Poll the committed row until the worker decided it (or marked it failed)."""
    deadline = time.monotonic() + timeout
    while True:
        checkin = CheckIn.objects.get(pk=checkin_id)
        if checkin.status in (CheckIn.Status.DECIDED, CheckIn.Status.FAILED):
            return checkin
        if time.monotonic() >= deadline:
            pytest.fail(f"check-in {checkin_id} still {checkin.status} after {timeout:.0f}s")
        time.sleep(0.2)


def wait_until_embedded(person: Person, timeout: float = DECISION_TIMEOUT_S) -> list[ReferenceImage]:
    deadline = time.monotonic() + timeout
    while True:
        references = list(person.references.order_by("pk"))
        if all(reference.status != ReferenceImage.Status.PENDING for reference in references):
            return references
        if time.monotonic() >= deadline:
            pytest.fail(f"references of {person.external_id} still pending after {timeout:.0f}s")
        time.sleep(0.2)


_frame_numbers = itertools.count(1)


def new_frame(jpeg: bytes) -> bytes:
    """``jpeg`` as a new camera frame: the same pixels, different bytes.

    A numbered JPEG comment (COM segment) goes in right after the start-of-image marker, so the decoded
    image, the face and its embedding are exactly those of ``jpeg``, but the SHA-256 is new. A camera
    never sends the same bytes twice; the same bytes again are refused ``replayed`` (issue 9, item 7).
    """
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("new_frame() needs a JPEG")
    comment = f"frame {next(_frame_numbers)} of pid {os.getpid()}".encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + jpeg[2:]


def plain_jpeg(size: tuple[int, int] = (640, 480)) -> bytes:
    """A valid door-camera-sized JPEG with no face in it; a new frame (new bytes) on every call."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 110, 130)).save(buffer, format="JPEG", quality=90)
    return new_frame(buffer.getvalue())


def post_checkin(client: APIClient, *, person: str, snapshot: Path | bytes, wait: float = 0):
    """Post a check-in. A fixture photo (``Path``) goes as a new frame each time (``new_frame``); ``bytes``
    go exactly as given, so a test that means to send the same bytes twice passes them itself."""
    data = snapshot if isinstance(snapshot, bytes) else new_frame(snapshot.read_bytes())
    upload = SimpleUploadedFile("snapshot.jpg", data, content_type="image/jpeg")
    return client.post("/api/v1/checkins/", {"snapshot": upload, "person": person, "wait": wait}, format="multipart")


def decide(client: APIClient, *, person: str, snapshot: Path | bytes) -> tuple[dict, CheckIn]:
    """Post with ``wait`` and return the API's answer and the row once final (refreshed from the DB)."""
    response = post_checkin(client, person=person, snapshot=snapshot, wait=10)
    assert response.status_code in (200, 202), response.content
    checkin = wait_until_final(response.json()["id"])
    if response.status_code == 200:
        # A 200 carries the final decision itself: the same one the database holds.
        assert (response.json()["decision"], response.json()["reason"]) == (checkin.decision, checkin.reason)
    return response.json(), checkin


def decision_audit(checkin: CheckIn) -> AuditEntry:
    return AuditEntry.objects.get(checkin_id=checkin.pk, kind=AuditEntry.Kind.DECISION)


def shipped_model_version() -> str:
    """The version in the manifest of the model the worker loads (FACE_MODEL_PATH or the shipped one)."""
    import ml

    model_dir = Path(os.environ.get("FACE_MODEL_PATH") or ml.SHIPPED_MODEL_DIR)
    return str(json.loads((model_dir / "manifest.json").read_text())["version"])
