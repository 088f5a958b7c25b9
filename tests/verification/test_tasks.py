"""Celery tasks run eagerly here: redelivery, retries of transient errors, final failure."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from tests.conftest import upload
from verification import services, tasks
from verification.models import AuditEntry, CheckIn, ReferenceImage

pytestmark = pytest.mark.django_db


@pytest.fixture
def checkin(device, enrolled_person, fake_model):
    return services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())


def test_redelivered_task_does_not_decide_twice(checkin, fake_model):
    tasks.checkin_process_task.apply(args=[checkin.pk])
    tasks.checkin_process_task.apply(args=[checkin.pk])
    checkin.refresh_from_db()
    assert (checkin.status, checkin.decision, checkin.attempts) == ("decided", 1, 1)
    assert AuditEntry.objects.filter(checkin=checkin).count() == 1


def test_task_of_a_killed_worker_is_reclaimed_and_decided_once(checkin, fake_model):
    # The dead worker left the row "processing"; the redelivered message may take it over.
    CheckIn.objects.filter(pk=checkin.pk).update(status="processing", started_at=timezone.now(), attempts=1)
    services.checkin_process(checkin_id=checkin.pk, reclaim=True)
    checkin.refresh_from_db()
    assert (checkin.status, checkin.decision, checkin.attempts) == ("decided", 1, 2)
    assert AuditEntry.objects.filter(checkin=checkin).count() == 1


def test_row_stuck_processing_past_the_timeout_is_claimed_again(checkin, fake_model, settings):
    settings.CHECKIN_STUCK_AFTER_SECONDS = 60
    CheckIn.objects.filter(pk=checkin.pk).update(
        status="processing", started_at=timezone.now() - timedelta(seconds=120), attempts=1
    )
    tasks.checkin_process_task.apply(args=[checkin.pk])
    checkin.refresh_from_db()
    assert checkin.status == "decided"


def test_transient_error_is_retried_then_succeeds(checkin, fake_model, monkeypatch):
    real_embed = fake_model.embed_face
    failures = iter([OperationalError("database restarting")])

    def flaky(data):
        error = next(failures, None)
        if error is not None:
            raise error
        return real_embed(data)

    from verification import inference

    monkeypatch.setattr(inference, "embed_face", flaky)
    tasks.checkin_process_task.apply(args=[checkin.pk])
    checkin.refresh_from_db()
    assert (checkin.status, checkin.decision, checkin.attempts) == ("decided", 1, 2)


def test_task_that_keeps_failing_transiently_ends_failed_with_reason(checkin, fake_model, settings):
    settings.CHECKIN_MAX_ATTEMPTS = 3
    fake_model.error = OperationalError("database gone")
    tasks.checkin_process_task.apply(args=[checkin.pk])
    checkin.refresh_from_db()
    assert (checkin.status, checkin.reason, checkin.decision) == ("failed", "processing_error", None)
    assert checkin.attempts == 3
    assert "database gone" in checkin.last_error
    entry = AuditEntry.objects.get(checkin=checkin)
    assert (entry.kind, entry.reason) == ("failure", "processing_error")


def test_unexpected_error_is_not_retried_and_marks_the_row_failed(checkin, fake_model):
    fake_model.error = RuntimeError("bug in the model")
    tasks.checkin_process_task.apply(args=[checkin.pk])
    checkin.refresh_from_db()
    assert (checkin.status, checkin.attempts) == ("failed", 1)
    assert AuditEntry.objects.get(checkin=checkin).kind == "failure"


def test_missing_snapshot_file_fails_with_snapshot_missing(checkin, fake_model):
    checkin.snapshot.storage.delete(checkin.snapshot.name)
    tasks.checkin_process_task.apply(args=[checkin.pk])
    checkin.refresh_from_db()
    assert (checkin.status, checkin.reason) == ("failed", "snapshot_missing")


def test_redelivered_reference_task_embeds_once(person, fake_model):
    reference = services.reference_add(person=person, image_file=upload())
    tasks.reference_embed_task.apply(args=[reference.pk])
    tasks.reference_embed_task.apply(args=[reference.pk])
    reference.refresh_from_db()
    assert reference.status == ReferenceImage.Status.READY
    assert fake_model.calls["embed_face"] == 1


def test_reference_that_keeps_failing_ends_rejected(person, fake_model, settings):
    settings.CHECKIN_MAX_ATTEMPTS = 2
    fake_model.error = OperationalError("database gone")
    reference = services.reference_add(person=person, image_file=upload())
    tasks.reference_embed_task.apply(args=[reference.pk])
    reference.refresh_from_db()
    assert (reference.status, reference.reason) == ("rejected", "processing_error")


def test_beat_schedule_names_the_registered_sweep_task(settings):
    from accesscontrol.celery import app

    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks


def test_sweep_task_requeues_stuck_checkins(device, monkeypatch):
    queued = []
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: queued.append(object_id) or True)
    checkin = services.checkin_submit(device=device, person_external_id="B-9", snapshot_file=upload())
    CheckIn.objects.filter(pk=checkin.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    result = tasks.sweep_stuck_task.apply().get()
    assert result["checkins"] == [checkin.pk]
    assert queued == [checkin.pk]


def test_model_that_cannot_load_is_retried_then_fails_the_checkin(checkin, fake_model, settings, monkeypatch):
    from verification import inference
    from verification.errors import ModelUnavailable

    def broken():
        raise ModelUnavailable("no model.keras")

    monkeypatch.setattr(inference, "model_info", broken)
    settings.CHECKIN_MAX_ATTEMPTS = 2
    tasks.checkin_process_task.apply(args=[checkin.pk])
    checkin.refresh_from_db()
    assert (checkin.status, checkin.reason, checkin.attempts) == ("failed", "processing_error", 2)
    assert "no model.keras" in checkin.last_error


def test_inference_reports_a_missing_model_as_unavailable(settings, monkeypatch, tmp_path):
    from verification import inference
    from verification.errors import ModelUnavailable

    monkeypatch.setattr(inference, "_model", None)
    settings.FACE_MODEL_PATH = str(tmp_path / "no-such-model")
    with pytest.raises(ModelUnavailable, match="cannot load the face model"):
        inference.get_model()
