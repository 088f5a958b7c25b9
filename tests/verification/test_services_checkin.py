"""checkin_submit / checkin_process / checkin_decide with the model boundary faked."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone

from tests.conftest import upload
from verification import inference, services
from verification.audit import audit_verify
from verification.errors import InvalidImage
from verification.models import AuditEntry, CheckIn

pytestmark = pytest.mark.django_db

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
_real_embed_face = inference.embed_face  # kept before the fake_model fixture replaces it


def submit(device, external_id="B-1001", data=None) -> CheckIn:
    return services.checkin_submit(device=device, person_external_id=external_id, snapshot_file=upload(data))


def test_submit_stores_pending_row_and_queues_after_commit(device, person, django_capture_on_commit_callbacks, monkeypatch):
    queued = []
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: queued.append((name, object_id)) or True)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        checkin = submit(device)
        assert queued == []  # nothing queued before commit
    checkin.refresh_from_db()
    assert checkin.status == CheckIn.Status.PENDING
    assert checkin.person == person
    assert checkin.snapshot.name.startswith("snapshots/")
    for callback in callbacks:
        callback()
    assert queued == [("checkin_process_task", checkin.pk)]


def test_submit_with_broker_down_keeps_the_row_pending(device, django_capture_on_commit_callbacks, monkeypatch):
    from verification import tasks

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("redis is down")

    monkeypatch.setattr(tasks.checkin_process_task, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        checkin = submit(device)
    checkin.refresh_from_db()
    assert checkin.status == CheckIn.Status.PENDING


def test_submit_refuses_non_image_and_stores_nothing(device):
    with pytest.raises(InvalidImage) as caught:
        submit(device, data=b"not an image at all")
    assert caught.value.code == "unreadable_image"
    assert CheckIn.objects.count() == 0


def test_genuine_checkin_is_decided_1_with_audit_entry(device, enrolled_person, fake_model):
    reference_two = services.reference_add(person=enrolled_person, image_file=upload())
    services.reference_embed(reference_id=reference_two.pk)
    fake_model.scores = [0.4, 0.8]  # mean 0.6 reaches the threshold; the second reference is the closest
    checkin = submit(device)

    services.checkin_process(checkin_id=checkin.pk)

    checkin.refresh_from_db()
    assert checkin.status == CheckIn.Status.DECIDED
    assert checkin.decision == 1
    assert checkin.reason == ""
    assert checkin.score == pytest.approx(0.6)
    assert checkin.threshold == 0.5
    assert checkin.model_version == "fake-1"
    assert checkin.best_reference_id == reference_two.pk
    assert {"decode_ms", "detect_ms", "embed_ms", "score_ms", "total_ms"} <= set(checkin.timings)
    entry = AuditEntry.objects.get(checkin=checkin)
    assert (entry.kind, entry.decision, entry.person_external_id, entry.device_name) == ("decision", 1, "B-1001", "front-door")
    assert entry.person_name == "Ada Lovelace"
    assert audit_verify() == (AuditEntry.objects.count(), None)


def test_one_close_reference_among_far_ones_does_not_admit(device, enrolled_person, fake_model):
    # Best-of-k would admit (0.9 >= 0.5); the decision uses the mean (0.3), so a stranger who happens
    # to resemble one reference photo gets no extra chance per enrolled photo.
    for _ in range(2):
        reference = services.reference_add(person=enrolled_person, image_file=upload())
        services.reference_embed(reference_id=reference.pk)
    fake_model.scores = [0.9, 0.0, 0.0]  # after enrolment: a new photo must match the earlier ones
    checkin = submit(device)

    services.checkin_process(checkin_id=checkin.pk)

    checkin.refresh_from_db()
    assert (checkin.status, checkin.decision, checkin.reason) == ("decided", 0, "no_match")
    assert checkin.score == pytest.approx(0.3)
    assert checkin.best_reference.person_id == enrolled_person.pk
    entry = AuditEntry.objects.get(checkin=checkin)
    assert (entry.decision, entry.reason, entry.score) == (0, "no_match", pytest.approx(0.3))


def test_the_threshold_is_the_one_calibrated_for_the_persons_reference_count(device, enrolled_person, fake_model):
    # One reference: a stranger's single lucky score must clear a higher bar than a mean over two.
    fake_model.thresholds = ((1, 0.9), (2, 0.55))
    fake_model.scores = [0.6]
    first = submit(device)
    services.checkin_process(checkin_id=first.pk)
    first.refresh_from_db()
    assert (first.decision, first.reason, first.threshold) == (0, "no_match", 0.9)

    fake_model.scores = [0.95]  # the new photo matches the first (enrolment's consistency check)
    reference = services.reference_add(person=enrolled_person, image_file=upload())
    services.reference_embed(reference_id=reference.pk)
    fake_model.scores = [0.6]
    second = submit(device)
    services.checkin_process(checkin_id=second.pk)
    second.refresh_from_db()
    assert (second.decision, second.threshold) == (1, 0.55)
    assert AuditEntry.objects.get(checkin=second).threshold == 0.55


def test_impostor_below_threshold_is_decided_0_no_match(device, enrolled_person, fake_model):
    fake_model.scores = [0.2]
    checkin = submit(device)
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert (checkin.decision, checkin.reason) == (0, "no_match")
    assert AuditEntry.objects.get(checkin=checkin).reason == "no_match"


@pytest.mark.parametrize("reason", ["no_face", "face_too_small", "multiple_faces", "unreadable_image"])
def test_unusable_snapshot_is_decided_0_with_the_face_reason(device, enrolled_person, fake_model, reason):
    fake_model.reject_reason = reason
    checkin = submit(device)
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert (checkin.status, checkin.decision, checkin.reason) == ("decided", 0, reason)
    assert fake_model.calls["score"] == 0


def test_snapshot_whose_face_is_too_small_to_verify_is_decided_0_face_too_small(
    device, enrolled_person, fake_model, monkeypatch
):
    # The real detector and face policy (ml.align) on a door frame with a ~32 px face; the model is
    # never needed, since the face is refused before embedding.
    import cv2

    monkeypatch.setattr(inference, "embed_face", _real_embed_face)
    photo = cv2.imread(str(FACES / "person_b_1.jpg"))
    small = cv2.resize(photo, None, fx=0.36, fy=0.36, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 110, dtype=np.uint8)
    frame[200 : 200 + small.shape[0], 260 : 260 + small.shape[1]] = small
    checkin = submit(device, data=cv2.imencode(".jpg", frame)[1].tobytes())

    services.checkin_process(checkin_id=checkin.pk)

    checkin.refresh_from_db()
    assert (checkin.status, checkin.decision, checkin.reason) == ("decided", 0, "face_too_small")
    assert checkin.get_reason_display() == "Face too small to verify"
    assert fake_model.calls["score"] == 0
    entry = AuditEntry.objects.get(checkin=checkin)
    assert (entry.decision, entry.reason) == (0, "face_too_small")


def test_unknown_person_is_decided_0_without_embedding(device, fake_model):
    checkin = submit(device, external_id="NOBODY")
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert (checkin.decision, checkin.reason) == (0, "unknown_person")
    assert fake_model.calls["embed_face"] == 0
    assert AuditEntry.objects.get(checkin=checkin).person_external_id == "NOBODY"


@pytest.mark.parametrize(
    "change",
    [
        {"is_active": False},
        {"valid_from": timezone.now() + timedelta(days=1)},
        {"valid_until": timezone.now() - timedelta(days=1)},
    ],
    ids=["inactive", "not-yet-valid", "expired"],
)
def test_inactive_or_out_of_validity_person_is_decided_0_inactive_person(device, enrolled_person, fake_model, change):
    for name, value in change.items():
        setattr(enrolled_person, name, value)
    enrolled_person.save()
    checkin = submit(device)
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert (checkin.decision, checkin.reason) == (0, "inactive_person")


def test_person_without_ready_references_is_decided_0_no_references(device, person, fake_model):
    services.reference_add(person=person, image_file=upload())  # still pending: never embedded
    checkin = submit(device)
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert (checkin.decision, checkin.reason) == (0, "no_references")


def test_references_of_another_model_version_are_re_embedded_before_use(device, enrolled_person, fake_model):
    fake_model.version = "fake-2"
    checkin = submit(device)
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert (checkin.decision, checkin.model_version) == (1, "fake-2")
    assert enrolled_person.references.get().model_version == "fake-2"  # tests/verification/test_reembed.py has more


def test_processing_twice_decides_once(device, enrolled_person, fake_model):
    checkin = submit(device)
    services.checkin_process(checkin_id=checkin.pk)
    services.checkin_process(checkin_id=checkin.pk)
    services.checkin_process(checkin_id=checkin.pk, reclaim=True)
    assert AuditEntry.objects.filter(checkin=checkin).count() == 1
    assert fake_model.calls["embed_face"] == 1 + 1  # one reference at enrolment, one snapshot


def test_claimed_row_is_not_processed_by_a_second_worker(device, enrolled_person, fake_model):
    checkin = submit(device)
    CheckIn.objects.filter(pk=checkin.pk).update(status=CheckIn.Status.PROCESSING, started_at=timezone.now())
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert checkin.status == CheckIn.Status.PROCESSING
    assert not AuditEntry.objects.filter(checkin=checkin).exists()


def test_decide_on_a_decided_row_changes_nothing(device, enrolled_person, fake_model):
    checkin = submit(device)
    services.checkin_process(checkin_id=checkin.pk)
    assert services.checkin_decide(checkin_id=checkin.pk, decision=0, reason="no_match") is False
    checkin.refresh_from_db()
    assert checkin.decision == 1
    assert AuditEntry.objects.filter(checkin=checkin, kind="decision").count() == 1


def test_database_refuses_a_second_decision_row_for_one_checkin(device, enrolled_person, fake_model):
    from django.db import IntegrityError, transaction

    from verification.audit import audit_append

    checkin = submit(device)
    services.checkin_process(checkin_id=checkin.pk)
    with pytest.raises(IntegrityError), transaction.atomic():
        audit_append(kind="decision", checkin_id=checkin.pk, decision=0, reason="no_match")


def test_database_refuses_a_decided_row_without_decision(device):
    from django.db import IntegrityError, transaction

    checkin = submit(device)
    with pytest.raises(IntegrityError), transaction.atomic():
        CheckIn.objects.filter(pk=checkin.pk).update(status=CheckIn.Status.DECIDED, decided_at=timezone.now())


# A first check-in of a person at a device (later ones skip a few get-or-create INSERTs).
SUBMIT_QUERIES = 7
PROCESS_QUERIES = 32  # of which one looks for other check-ins waiting, to take along (CHECKIN_BATCH_SIZE)


def test_a_checkin_runs_no_query_the_database_would_repeat(device, enrolled_person, fake_model, django_assert_num_queries):
    # The CHECK and unique constraints of the check-in and its audit entry are enforced by the database on
    # INSERT; validating them in Python as well ran one SELECT each (issue 12: 56 -> 36 queries per
    # check-in), as did the foreign keys of the rows just read; the audit chain head is locked with one
    # SELECT and appended without a savepoint (37 -> 32 statements on PostgreSQL, `bench/profile_worker.py
    # --postgres`). Exact counts, so that a query added to the hot path is a decision, not an accident.
    with django_assert_num_queries(SUBMIT_QUERIES):
        checkin = submit(device)
    with django_assert_num_queries(PROCESS_QUERIES):
        services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert (checkin.decision, checkin.reason) == (1, "")

