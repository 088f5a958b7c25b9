"""Management commands: create_device, sweep_checkins."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.conftest import upload
from verification import selectors, services
from verification.models import CheckIn, Device

pytestmark = pytest.mark.django_db


def test_create_device_prints_a_working_token_once_and_stores_only_its_hash():
    out = io.StringIO()
    call_command("create_device", "lobby", stdout=out, stderr=io.StringIO())
    token = out.getvalue().strip()
    device = Device.objects.get(name="lobby")
    assert token and token != device.token_hash
    assert selectors.device_by_token(raw_token=token) == device


def test_create_device_refuses_a_duplicate_name(device):
    with pytest.raises(CommandError):
        call_command("create_device", device.name, stdout=io.StringIO(), stderr=io.StringIO())


def test_sweep_requeues_only_stuck_checkins(device, monkeypatch):
    queued = []
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: queued.append((name, object_id)) or True)
    stuck = services.checkin_submit(device=device, person_external_id="B-1", snapshot_file=upload())
    crashed = services.checkin_submit(device=device, person_external_id="B-2", snapshot_file=upload())
    fresh = services.checkin_submit(device=device, person_external_id="B-3", snapshot_file=upload())
    long_ago = timezone.now() - timedelta(hours=1)
    CheckIn.objects.filter(pk=stuck.pk).update(updated_at=long_ago)
    CheckIn.objects.filter(pk=crashed.pk).update(status="processing", updated_at=long_ago)
    queued.clear()

    out = io.StringIO()
    call_command("sweep_checkins", "--older-than", "60", stdout=out)

    assert sorted(queued) == [("checkin_process_task", stuck.pk), ("checkin_process_task", crashed.pk)]
    crashed.refresh_from_db()
    fresh.refresh_from_db()
    assert crashed.status == "pending"
    assert fresh.status == "pending"
    assert "re-queued 2 check-in(s)" in out.getvalue()


def test_sweep_decides_a_checkin_left_pending_when_the_broker_was_down(device, enrolled_person, fake_model):
    # Broker down at submit: no task ran (on_commit callbacks never executed here).
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    CheckIn.objects.filter(pk=checkin.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    call_command("sweep_checkins", "--older-than", "60", stdout=io.StringIO())  # eager: runs the task
    checkin.refresh_from_db()
    assert (checkin.status, checkin.decision) == ("decided", 1)
