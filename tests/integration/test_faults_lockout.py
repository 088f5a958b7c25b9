"""Someone trying faces until one passes, against two real workers deciding in parallel: exactly one
lockout after the fifth refusal, the genuine face refused while it lasts, admitted after the unlock.

Only ``no_match`` counts toward a person (issue 9, item 5), and a repeated snapshot or a near-copy of a
recent probe is ``replayed`` (item 7), so every attempt is a different impostor face: the five photos of
person_b and person_c, and three of them as another camera would see them (greyscale, dim). With the
shipped model those eight probes are at most 0.962 alike (REPLAY_SIMILARITY_MAX is 0.995) and score at
most 0.12 against person_a's references (threshold 0.230); each is a new frame (``new_frame``).
"""
from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from django.core.files import File
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageEnhance, ImageOps
from rest_framework.test import APIClient

from verification import services
from verification.audit import audit_verify
from verification.models import AuditEntry, CheckIn, Lockout

from .harness import ManagedProcess
from .helpers import new_frame

pytestmark = pytest.mark.integration

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
TIMEOUT_S = 180


def wait_until_final(ids: list[int]) -> list[CheckIn]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        rows = list(CheckIn.objects.filter(pk__in=ids).order_by("pk"))
        if all(row.status in ("decided", "failed") for row in rows):
            return rows
        time.sleep(0.2)
    pytest.fail(f"check-ins {ids} not all decided after {TIMEOUT_S}s")


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def photo(name: str) -> Image.Image:
    return Image.open(FACES / name).convert("RGB")


# Eight different impostor faces (module docstring): none a replay of another.
IMPOSTOR_FACES = (
    *[(FACES / name).read_bytes() for name in ("person_b_1.jpg", "person_b_2.jpg", "person_b_3.jpg")],
    *[(FACES / name).read_bytes() for name in ("person_c_1.jpg", "person_c_2.jpg")],
    jpeg(ImageOps.grayscale(photo("person_b_1.jpg")).convert("RGB")),
    jpeg(ImageOps.grayscale(photo("person_b_2.jpg")).convert("RGB")),
    jpeg(ImageEnhance.Brightness(photo("person_b_3.jpg")).enhance(0.6)),
)


def post(client: APIClient, snapshot: str | bytes) -> int:
    """Post a new frame of ``snapshot`` (a fixture file name, or JPEG bytes) claiming to be EMP-A."""
    data = snapshot if isinstance(snapshot, bytes) else (FACES / snapshot).read_bytes()
    upload = SimpleUploadedFile("snapshot.jpg", new_frame(data), content_type="image/jpeg")
    response = client.post("/api/v1/checkins/", {"snapshot": upload, "person": "EMP-A"}, format="multipart")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_burst_of_impostor_attempts_on_two_workers_locks_out_the_claimed_person_exactly_once(
    integration_db: ManagedProcess, start_worker, settings
) -> None:
    person = services.person_create(name="Person A", external_id="EMP-A")
    for n in (1, 2):
        with (FACES / f"person_a_{n}.jpg").open("rb") as handle:
            services.reference_add(person=person, image_file=File(handle, name=f"person_a_{n}.jpg"))
    deadline = time.monotonic() + TIMEOUT_S
    while person.references.exclude(status="ready").exists():
        assert time.monotonic() < deadline, list(person.references.values_list("status", "reason"))
        time.sleep(0.2)
    start_worker("second")
    _, token = services.device_create(name="lobby")
    door = APIClient()
    door.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert settings.LOCKOUT_PERSON_MAX_FAILURES == 5  # the workers run with the same default

    attempts = wait_until_final([post(door, face) for face in IMPOSTOR_FACES])

    lockout = Lockout.objects.get()  # exactly one, though two workers decided side by side
    assert (lockout.scope, lockout.key, lockout.failures) == ("person", "EMP-A", 5)
    reasons = [row.reason for row in attempts]
    assert reasons.count("no_match") == 5 and reasons.count("locked_out") == 3, reasons
    assert AuditEntry.objects.filter(kind="lockout").count() == 1

    genuine = wait_until_final([post(door, "person_a_3.jpg")])[0]
    assert (genuine.decision, genuine.reason) == (0, "locked_out")

    services.lockout_release(lockout=lockout, operator="officer")
    genuine = wait_until_final([post(door, "person_a_3.jpg")])[0]
    assert (genuine.decision, genuine.reason) == (1, "")
    assert audit_verify()[1] is None
