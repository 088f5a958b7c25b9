"""Someone trying faces until one passes, against two real workers deciding in parallel: exactly one
lockout after the fifth refusal, the genuine face refused while it lasts, admitted after the unlock."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.core.files import File
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from verification import services
from verification.audit import audit_verify
from verification.models import AuditEntry, CheckIn, Lockout

from .harness import ManagedProcess

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


def post(client: APIClient, photo: str) -> int:
    upload = SimpleUploadedFile("snapshot.jpg", (FACES / photo).read_bytes(), content_type="image/jpeg")
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

    attempts = wait_until_final([post(door, "person_b_3.jpg") for _ in range(8)])

    lockout = Lockout.objects.get()  # exactly one, though two workers decided side by side
    assert (lockout.scope, lockout.key, lockout.failures) == ("person", "EMP-A", 5)
    reasons = [row.reason for row in attempts]
    assert reasons.count("no_match") >= 5 and set(reasons) <= {"no_match", "locked_out"}
    assert AuditEntry.objects.filter(kind="lockout").count() == 1

    genuine = wait_until_final([post(door, "person_a_3.jpg")])[0]
    assert (genuine.decision, genuine.reason) == (0, "locked_out")

    services.lockout_release(lockout=lockout, operator="officer")
    genuine = wait_until_final([post(door, "person_a_3.jpg")])[0]
    assert (genuine.decision, genuine.reason) == (1, "")
    assert audit_verify()[1] is None
