"""Retention: expired snapshots and rejected enrolment photos are deleted and reported; rows stay."""
from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.conftest import upload
from verification import services, tasks
from verification.audit import audit_verify
from verification.models import AuditEntry, CheckIn, ReferenceImage

pytestmark = pytest.mark.django_db


def decided_checkin(device, *, age_days: float) -> CheckIn:
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)
    CheckIn.objects.filter(pk=checkin.pk).update(created_at=timezone.now() - timedelta(days=age_days))
    checkin.refresh_from_db()
    return checkin


def rejected_reference(person, fake_model, capture, *, age_days: float) -> ReferenceImage:
    fake_model.reject_reason = "no_face"
    with capture(execute=True):
        reference = services.reference_add(person=person, image_file=upload())
    fake_model.reject_reason = None
    ReferenceImage.objects.filter(pk=reference.pk).update(updated_at=timezone.now() - timedelta(days=age_days))
    reference.refresh_from_db()
    assert reference.status == "rejected"
    return reference


def test_snapshots_older_than_30_days_are_deleted_but_checkin_and_audit_rows_stay(device, enrolled_person, fake_model, settings):
    assert settings.RETENTION_SNAPSHOT_DAYS == 30
    old = decided_checkin(device, age_days=31)
    recent = decided_checkin(device, age_days=29)
    old_file, recent_file = Path(old.snapshot.path), Path(recent.snapshot.path)

    report = services.retention_apply()

    assert report.snapshot_checkin_ids == [old.pk]
    assert not old_file.exists() and recent_file.exists()
    old.refresh_from_db()
    assert (old.snapshot.name, old.status, old.decision) == ("", "decided", 1)
    assert old.snapshot_purged_at is not None
    assert AuditEntry.objects.filter(checkin_id=old.pk, kind="decision").exists()
    assert audit_verify()[1] is None
    # Nothing left to do the second time.
    assert services.retention_apply().snapshot_checkin_ids == []


def test_rejected_enrolment_photos_past_their_period_are_deleted_ready_ones_kept(
    enrolled_person, fake_model, django_capture_on_commit_callbacks, settings
):
    assert settings.RETENTION_REJECTED_REFERENCE_DAYS == 7
    ready = enrolled_person.references.get()
    ReferenceImage.objects.filter(pk=ready.pk).update(updated_at=timezone.now() - timedelta(days=400))
    old = rejected_reference(enrolled_person, fake_model, django_capture_on_commit_callbacks, age_days=8)
    recent = rejected_reference(enrolled_person, fake_model, django_capture_on_commit_callbacks, age_days=6)
    old_file = Path(old.image.path)

    report = services.retention_apply()

    assert report.rejected_reference_ids == [old.pk]
    assert not old_file.exists()
    assert set(enrolled_person.references.values_list("pk", flat=True)) == {ready.pk, recent.pk}
    assert Path(ready.image.path).exists() and Path(ready.face_crop.path).exists()


def test_retention_periods_come_from_settings(device, enrolled_person, fake_model, settings):
    settings.RETENTION_SNAPSHOT_DAYS = 2
    checkin = decided_checkin(device, age_days=3)
    assert services.retention_apply().snapshot_checkin_ids == [checkin.pk]


def test_apply_retention_command_says_what_it_deleted(device, enrolled_person, fake_model):
    old = decided_checkin(device, age_days=31)
    out = io.StringIO()
    call_command("apply_retention", stdout=out)
    assert f"deleted 1 check-in snapshot(s) [{old.pk}]" in out.getvalue()
    assert "0 rejected enrolment photo(s)" in out.getvalue()


def test_periodic_retention_task_is_scheduled_and_reports_ids(device, enrolled_person, fake_model, settings):
    schedule = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"verification.tasks.retention_task", "verification.tasks.sweep_stuck_task"} <= schedule
    old = decided_checkin(device, age_days=31)
    assert tasks.retention_task.apply().get() == {"snapshots": [old.pk], "rejected_references": []}


def test_audit_detail_says_the_snapshot_was_removed(staff_client, device, enrolled_person, fake_model):
    old = decided_checkin(device, age_days=31)
    services.retention_apply()
    entry = AuditEntry.objects.get(checkin_id=old.pk, kind="decision")
    page = staff_client.get(f"/admin/verification/auditentry/{entry.pk}/change/")
    assert page.status_code == 200
    assert b"removed " in page.content and b"(retention or erasure)" in page.content
