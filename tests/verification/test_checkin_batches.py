"""Rush hour: a worker takes waiting check-ins along and runs their face work together (issue 12).

Every rule still applies per check-in, each is decided exactly once, and a problem with one row
taken along never decides or strands its neighbours. The model boundary is faked (``fake_model``);
``tests/verification/test_inference.py`` checks that faces embedded together are those embedded alone.
"""
from __future__ import annotations

import pytest
from django.db import DatabaseError

from tests.conftest import upload
from verification import inference, services
from verification.audit import audit_verify
from verification.errors import ModelUnavailable
from verification.models import AuditEntry, CheckIn
from verification.services import processing

pytestmark = pytest.mark.django_db


def submit(device, external_id: str = "B-1001") -> CheckIn:
    return services.checkin_submit(device=device, person_external_id=external_id, snapshot_file=upload())


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """The check-ins handed (back) to the queue."""
    handed = []
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: handed.append(object_id) or True)
    return handed


def test_waiting_checkins_are_taken_along_decided_together_and_only_once(device, enrolled_person, fake_model, settings):
    settings.CHECKIN_BATCH_SIZE = 4
    first, *waiting = [submit(device) for _ in range(3)]

    services.checkin_process(checkin_id=first.pk)

    assert fake_model.calls["embed_faces"] == 1 and fake_model.calls["embed_face"] == 1 + 3  # enrolment + batch
    for checkin in (first, *waiting):
        checkin.refresh_from_db()
        assert (checkin.status, checkin.decision, checkin.reason) == ("decided", 1, "")
        assert {"detect_ms", "embed_ms", "score_ms", "total_ms"} <= set(checkin.timings)
    # Their own tasks arrive later: the rows are final, nothing is decided again.
    for checkin in waiting:
        assert services.checkin_process(checkin_id=checkin.pk).decision == 1
    assert fake_model.calls["embed_face"] == 4
    assert AuditEntry.objects.filter(kind="decision").count() == 3
    assert audit_verify() == (AuditEntry.objects.count(), None)


def test_at_most_the_batch_size_is_taken_oldest_first(device, enrolled_person, fake_model, settings):
    settings.CHECKIN_BATCH_SIZE = 3
    checkins = [submit(device) for _ in range(5)]

    services.checkin_process(checkin_id=checkins[4].pk)

    statuses = [CheckIn.objects.get(pk=c.pk).status for c in checkins]
    assert statuses == ["decided", "decided", "pending", "pending", "decided"]


def test_with_a_batch_size_of_one_nothing_is_taken_along(device, enrolled_person, fake_model, settings):
    settings.CHECKIN_BATCH_SIZE = 1
    first, second = submit(device), submit(device)

    services.checkin_process(checkin_id=first.pk)

    assert CheckIn.objects.get(pk=second.pk).status == "pending"
    assert fake_model.calls["embed_faces"] == 0


def test_a_row_another_worker_holds_is_not_taken_along(device, enrolled_person, fake_model, settings):
    settings.CHECKIN_BATCH_SIZE = 4
    first, held = submit(device), submit(device)
    CheckIn.objects.filter(pk=held.pk).update(status=CheckIn.Status.PROCESSING)

    services.checkin_process(checkin_id=first.pk)

    held.refresh_from_db()
    assert (held.status, held.attempts) == ("processing", 0)


def test_rows_taken_along_get_every_rule_before_the_face_work(device, enrolled_person, fake_model, settings):
    settings.CHECKIN_BATCH_SIZE = 4
    first = submit(device)
    stranger = submit(device, external_id="NOBODY-1")

    services.checkin_process(checkin_id=first.pk)

    stranger.refresh_from_db()
    assert (stranger.status, stranger.decision, stranger.reason) == ("decided", 0, "unknown_person")
    # Only the known person's face was looked at: the stranger's claim failed before any face work.
    assert fake_model.calls["embed_face"] == 1 + 1 and fake_model.calls["embed_faces"] == 0


def test_a_rejected_face_refuses_only_its_own_checkin(device, enrolled_person, fake_model, settings, monkeypatch):
    settings.CHECKIN_BATCH_SIZE = 4
    first, blurred, third = submit(device), submit(device), submit(device)
    real = fake_model.embed_faces

    def one_without_a_face(datas):
        results = real(datas)
        results[1] = inference.FaceRejected("no_face", timings={"decode_ms": 1.0, "detect_ms": 2.0})
        return results

    monkeypatch.setattr(inference, "embed_faces", one_without_a_face)
    services.checkin_process(checkin_id=first.pk)

    decided = {c.pk: (c.decision, c.reason) for c in CheckIn.objects.filter(pk__in=[first.pk, blurred.pk, third.pk])}
    assert decided == {first.pk: (1, ""), blurred.pk: (0, "no_face"), third.pk: (1, "")}


def _finishing_fails_for(monkeypatch, checkin: CheckIn, error: Exception) -> None:
    """Deciding ``checkin`` (after its face work) raises ``error``; every other check-in is decided."""
    real_finish = processing._finish

    def finish(work, face):
        if work.checkin_id == checkin.pk:
            raise error
        return real_finish(work, face)

    monkeypatch.setattr(processing, "_finish", finish)


def test_a_transient_error_on_a_row_taken_along_hands_it_back_and_the_rest_is_decided(
    device, enrolled_person, fake_model, settings, monkeypatch, queued
):
    settings.CHECKIN_BATCH_SIZE = 4
    first, unlucky, third = submit(device), submit(device), submit(device)
    _finishing_fails_for(monkeypatch, unlucky, DatabaseError("connection reset"))

    services.checkin_process(checkin_id=first.pk)

    assert [CheckIn.objects.get(pk=c.pk).status for c in (first, unlucky, third)] == ["decided", "pending", "decided"]
    assert queued == [unlucky.pk]  # its own task may already be spent: queued again
    assert "handed back" in CheckIn.objects.get(pk=unlucky.pk).last_error


def test_a_bug_on_a_row_taken_along_fails_that_row_alone(device, enrolled_person, fake_model, settings, monkeypatch):
    settings.CHECKIN_BATCH_SIZE = 4
    first, broken = submit(device), submit(device)
    _finishing_fails_for(monkeypatch, broken, ValueError("a bug"))

    services.checkin_process(checkin_id=first.pk)

    broken.refresh_from_db()
    assert (broken.status, broken.reason) == ("failed", "processing_error")
    assert CheckIn.objects.get(pk=first.pk).decision == 1
    assert AuditEntry.objects.filter(checkin_id=broken.pk, kind="failure").count() == 1


def test_when_the_shared_face_work_fails_the_rows_taken_along_go_back_to_the_queue(
    device, enrolled_person, fake_model, settings, monkeypatch, queued
):
    settings.CHECKIN_BATCH_SIZE = 4
    first, second, third = submit(device), submit(device), submit(device)

    def model_gone(datas):
        raise ModelUnavailable("model files unreadable")

    monkeypatch.setattr(inference, "embed_faces", model_gone)
    with pytest.raises(ModelUnavailable):  # the task retries its own check-in
        services.checkin_process(checkin_id=first.pk)

    assert [CheckIn.objects.get(pk=c.pk).status for c in (second, third)] == ["pending", "pending"]
    assert sorted(queued) == [second.pk, third.pk]
    assert CheckIn.objects.get(pk=first.pk).status == "processing"  # the task releases it (tasks.py)


def test_when_the_database_goes_mid_batch_the_task_sees_that_error_not_the_hand_backs(
    device, enrolled_person, fake_model, settings, monkeypatch
):
    settings.CHECKIN_BATCH_SIZE = 4
    first, second = submit(device), submit(device)

    def database_gone(datas):
        raise DatabaseError("server closed the connection")

    def release_fails(**kwargs):
        raise DatabaseError("still gone")

    monkeypatch.setattr(inference, "embed_faces", database_gone)
    monkeypatch.setattr(processing, "checkin_release", release_fails)
    with pytest.raises(DatabaseError, match="server closed"):  # the task retries on this one
        services.checkin_process(checkin_id=first.pk)
    assert CheckIn.objects.get(pk=second.pk).status == "processing"  # left for the stuck-check-in sweep
