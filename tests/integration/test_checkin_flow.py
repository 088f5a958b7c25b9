"""A check-in's whole journey on the real stack, with the shipped model and the committed fixture faces:
people enrolled through the service layer -> reference photos embedded by the worker process ->
check-ins posted through the REST API -> PostgreSQL -> Redis -> worker -> decision and audit row.

Fixture faces (tests/fixtures/faces/README.md): person_a_1..3 and person_b_1..3 are two LFW test people
the model never trained on; photos 1-2 are enrolled, photo 3 is the door snapshot.
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files import File
from django.core.management import call_command
from PIL import Image
from rest_framework.test import APIClient

from verification import services
from verification.audit import audit_verify
from verification.models import AuditEntry, Person

from .harness import ManagedProcess
from .helpers import (
    ENROLLED_PHOTOS,
    FIXTURE_FACES,
    decide,
    decision_audit,
    new_frame,
    plain_jpeg,
    post_checkin,
    shipped_model_version,
    wait_until_embedded,
    wait_until_final,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def door(integration_db: ManagedProcess) -> APIClient:
    _, token = services.device_create(name="integration-door")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def enrol(*, slug: str, external_id: str, name: str) -> Person:
    person = services.person_create(name=name, external_id=external_id)
    for n in ENROLLED_PHOTOS:
        path = FIXTURE_FACES / f"{slug}_{n}.jpg"
        with path.open("rb") as handle:
            services.reference_add(person=person, image_file=File(handle, name=path.name))
    return person


@pytest.fixture
def alice_and_bob(integration_db: ManagedProcess) -> tuple[Person, Person]:
    """Two people enrolled through the service layer; their photos are embedded by the worker."""
    alice = enrol(slug="person_a", external_id="EMP-A", name="Person A")
    bob = enrol(slug="person_b", external_id="EMP-B", name="Person B")
    for person in (alice, bob):
        references = wait_until_embedded(person)
        assert [r.status for r in references] == ["ready"] * len(ENROLLED_PHOTOS), [r.reason for r in references]
    return alice, bob


def test_enrolled_photos_are_embedded_once_by_the_worker_with_the_shipped_model(
    alice_and_bob: tuple[Person, Person], integration_db: ManagedProcess
) -> None:
    for person in alice_and_bob:
        for reference in person.references.all():
            assert reference.embedding_dim and len(reference.embedding) == 4 * reference.embedding_dim
            assert reference.model_version == shipped_model_version()
            assert reference.face_crop and Path(reference.face_crop.path).is_file()
            assert reference.attempts == 1
    assert "reference_embed_task[" in integration_db.log_text()


def test_genuine_checkin_is_admitted_and_audited(door: APIClient, alice_and_bob: tuple[Person, Person]) -> None:
    alice, _ = alice_and_bob

    body, checkin = decide(door, person="EMP-A", snapshot=FIXTURE_FACES / "person_a_3.jpg")

    assert (checkin.status, checkin.decision, checkin.reason) == ("decided", 1, "")
    assert checkin.score >= checkin.threshold
    assert checkin.person_id == alice.pk and checkin.best_reference.person_id == alice.pk
    audit = decision_audit(checkin)
    assert (audit.decision, audit.reason, audit.person_external_id, audit.person_name) == (1, "", "EMP-A", "Person A")
    assert audit.score == checkin.score and audit.threshold == checkin.threshold
    assert audit.model_version == checkin.model_version == shipped_model_version()
    assert audit.device_name == "integration-door" and audit.processing_ms > 0


def test_impostor_checkin_is_refused_with_no_match_and_audited(
    door: APIClient, alice_and_bob: tuple[Person, Person]
) -> None:
    # Bob's face at the door, claiming to be Alice.
    body, checkin = decide(door, person="EMP-A", snapshot=FIXTURE_FACES / "person_b_3.jpg")

    assert (checkin.status, checkin.decision, checkin.reason) == ("decided", 0, "no_match")
    assert checkin.score < checkin.threshold
    audit = decision_audit(checkin)
    assert (audit.decision, audit.reason, audit.person_external_id) == (0, "no_match", "EMP-A")
    assert audit.score == checkin.score


def test_replayed_snapshot_and_reencoded_copy_are_refused_replayed(
    door: APIClient, alice_and_bob: tuple[Person, Person]
) -> None:
    frame = new_frame((FIXTURE_FACES / "person_a_3.jpg").read_bytes())
    _, first = decide(door, person="EMP-A", snapshot=frame)
    assert (first.decision, first.reason) == (1, "")

    # The very same bytes again (a recorded upload): refused before any face work.
    _, again = decide(door, person="EMP-A", snapshot=frame)
    assert (again.status, again.decision, again.reason, again.score) == ("decided", 0, "replayed", None)
    assert decision_audit(again).detail["replay_of"] == first.pk

    # The same photo re-encoded (new bytes, the same face): with the shipped model its embedding is within
    # REPLAY_SIMILARITY_MAX of the first probe of EMP-A, so it is refused too, after embedding.
    buffer = io.BytesIO()
    Image.open(FIXTURE_FACES / "person_a_3.jpg").save(buffer, format="JPEG", quality=75)
    _, copy = decide(door, person="EMP-A", snapshot=buffer.getvalue())
    assert (copy.status, copy.decision, copy.reason, copy.score) == ("decided", 0, "replayed", None)
    detail = decision_audit(copy).detail
    assert detail["replay_of"] == first.pk and detail["similarity"] > settings.REPLAY_SIMILARITY_MAX


@pytest.mark.parametrize(
    ("snapshot", "reason"),
    [("no_face.jpg", "no_face"), ("two_faces.jpg", "multiple_faces")],
    ids=["no-face", "two-faces"],
)
def test_snapshot_without_exactly_one_face_is_refused_with_its_reason(
    door: APIClient, alice_and_bob: tuple[Person, Person], snapshot: str, reason: str
) -> None:
    # two_faces.jpg holds Alice's own enrolled face next to Bob's: still refused, never matched.
    body, checkin = decide(door, person="EMP-A", snapshot=FIXTURE_FACES / snapshot)

    assert (checkin.status, checkin.decision, checkin.reason, checkin.score) == ("decided", 0, reason, None)
    assert (decision_audit(checkin).decision, decision_audit(checkin).reason) == (0, reason)


def test_claims_the_worker_can_refuse_without_a_face_get_their_reasons(
    door: APIClient, alice_and_bob: tuple[Person, Person]
) -> None:
    services.person_create(name="Former Staff", external_id="EMP-OLD", is_active=False)
    services.person_create(name="Not Enrolled", external_id="EMP-NEW")
    genuine_face = FIXTURE_FACES / "person_a_3.jpg"

    reasons = {
        claimed: decide(door, person=claimed, snapshot=genuine_face)[1].reason
        for claimed in ("NOBODY-404", "EMP-OLD", "EMP-NEW")
    }

    assert reasons == {"NOBODY-404": "unknown_person", "EMP-OLD": "inactive_person", "EMP-NEW": "no_references"}
    assert AuditEntry.objects.filter(kind="decision", decision=0).count() == 3


def test_unknown_person_checkin_is_decided_by_the_worker_process_not_in_process(
    door: APIClient, integration_db: ManagedProcess
) -> None:
    response = post_checkin(door, person="NOBODY-404", snapshot=plain_jpeg())

    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending"
    checkin = wait_until_final(response.json()["id"])
    assert (checkin.status, checkin.decision, checkin.reason) == ("decided", 0, "unknown_person")
    assert "checkin_process_task[" in integration_db.log_text()
    detail = door.get(f"/api/v1/checkins/{checkin.pk}/")
    assert detail.status_code == 200
    body = detail.json()
    assert (body["status"], body["decision"], body["reason"]) == ("decided", 0, "unknown_person")


def test_audit_chain_written_by_the_worker_verifies(door: APIClient, alice_and_bob: tuple[Person, Person]) -> None:
    decide(door, person="EMP-A", snapshot=FIXTURE_FACES / "person_a_3.jpg")
    decide(door, person="EMP-B", snapshot=FIXTURE_FACES / "person_a_3.jpg")

    # Two decisions after the enrolment's own entries (person_created, reference_added, device_created,
    # model_changed: issue 9, item 3); the whole chain verifies.
    assert AuditEntry.objects.filter(kind="decision").count() == 2
    assert audit_verify() == (AuditEntry.objects.count(), None)
    call_command("verify_audit_log")  # exits non-zero (SystemExit) on a broken chain


def test_two_workers_share_the_queue_and_decide_each_checkin_exactly_once(
    door: APIClient, integration_db: ManagedProcess, start_worker
) -> None:
    second = start_worker("second")
    responses = [post_checkin(door, person=f"NOBODY-{n}", snapshot=plain_jpeg()) for n in range(8)]
    ids = [response.json()["id"] for response in responses]

    decided = [wait_until_final(checkin_id) for checkin_id in ids]

    assert {(c.status, c.reason) for c in decided} == {("decided", "unknown_person")}
    per_checkin = [AuditEntry.objects.filter(checkin_id=i, kind="decision").count() for i in ids]
    assert per_checkin == [1] * len(ids)
    logs = integration_db.log_text() + second.log_text()
    assert logs.count("checkin_process_task[") >= len(ids)
