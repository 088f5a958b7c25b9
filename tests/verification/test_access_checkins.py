"""Check-ins at doors (issue 11, item 1): a person without rights at this door now is refused in the
request itself, before any face work: no task queued, the model never asked, the row decided 0 with
``not_authorized_here`` / ``outside_schedule`` and its audit entry. With rights, or on a site without
doors, the check-in goes the usual way.

The schedules here do not depend on the clock (no windows: always closed; every day 00:00-00:00: always
open); the times themselves are tested in test_access_rule.py.
"""
from __future__ import annotations

import io
from datetime import time

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import upload
from verification import services
from verification.models import AccessGroup, AuditEntry, CheckIn, Device, Door, Lockout, Zone
from verification.services import access_rules
from verification.services.access import WindowSpec

pytestmark = pytest.mark.django_db

URL = "/api/v1/checkins/"
ALWAYS = [WindowSpec(day=day, start=time(0), end=time(0)) for day in range(7)]


@pytest.fixture
def queued(monkeypatch) -> list[tuple[str, int]]:
    """Every task queued (by name and id); none runs."""
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: calls.append((name, object_id)) or True)
    return calls


@pytest.fixture
def lab(device):
    """Zone "Lab", its door "Lab door" with the device, and group "Lab staff" granting it with no window yet."""
    zone = access_rules.zone_save(zone=Zone(name="Lab"))
    door = access_rules.door_save(door=Door(name="Lab door", zone=zone))
    access_rules.device_door_set(device=device, door=door)
    group = access_rules.access_group_save(group=AccessGroup(name="Lab staff"), zones=[zone])
    return {"zone": zone, "door": door, "group": group}


def post(client, person: str = "B-1001", **extra):
    return client.post(URL, {"snapshot": upload(), "person": person, **extra}, format="multipart")


def assert_refused_before_face_work(response, reason: str, fake_model, queued):
    assert response.status_code == 200, response.content  # decided in the request: no 202, no wait
    body = response.json()
    checkin = CheckIn.objects.get(pk=body["id"])
    assert (checkin.status, checkin.decision, checkin.reason) == (CheckIn.Status.DECIDED, 0, reason)
    assert checkin.queued_at is None and checkin.decided_at is not None
    assert queued == []
    assert not fake_model.calls, "the model was asked"
    entry = AuditEntry.objects.get(checkin_id=checkin.pk, kind=AuditEntry.Kind.DECISION)
    assert (entry.decision, entry.reason, entry.actor) == (0, reason, "device:front-door")
    return body, checkin, entry


def test_a_person_in_no_group_for_this_door_is_refused_not_authorized_here_in_the_request(
    device_client, enrolled_person, lab, fake_model, queued, django_capture_on_commit_callbacks
):
    fake_model.calls.clear()  # enrolment embedded the reference
    with django_capture_on_commit_callbacks(execute=True):
        response = post(device_client)
    body, checkin, entry = assert_refused_before_face_work(response, "not_authorized_here", fake_model, queued)
    # The device hears the coarse answer (CHECKIN_RESPONSE_DETAIL=coarse): it cannot tell rights from faces.
    assert (body["status"], body["decision"], body["reason"]) == ("decided", 0, "not_recognised")
    assert checkin.person == enrolled_person and checkin.snapshot.name  # the officer sees who tried
    assert entry.detail["access"] == {
        "allowed": False, "rule": "no_group", "door": "Lab door", "zone": "Lab", "groups": [], "open_groups": [],
        "local_time": entry.detail["access"]["local_time"], "time_zone": "UTC",
    }
    assert entry.score is None and entry.model_version == ""


def test_a_member_outside_every_window_is_refused_outside_schedule_in_the_request(
    device_client, enrolled_person, lab, fake_model, queued, django_capture_on_commit_callbacks, settings
):
    settings.CHECKIN_RESPONSE_DETAIL = "full"
    access_rules.access_member_add(group=lab["group"], person=enrolled_person)  # the group has no window
    fake_model.calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(device_client, wait="5")
    body, checkin, entry = assert_refused_before_face_work(response, "outside_schedule", fake_model, queued)
    assert body["reason"] == "outside_schedule"  # the integrators' answer names it
    assert entry.detail["access"]["groups"] == ["Lab staff"] and entry.detail["access"]["rule"] == "no_window"


def test_a_member_inside_a_window_is_queued_and_verified_as_before(
    device_client, enrolled_person, lab, fake_model, django_capture_on_commit_callbacks
):
    access_rules.access_member_add(group=lab["group"], person=enrolled_person)
    access_rules.access_windows_set(group=lab["group"], windows=ALWAYS)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(device_client)
    checkin = CheckIn.objects.get(pk=response.json()["id"])
    assert (checkin.status, checkin.decision, checkin.reason) == (CheckIn.Status.DECIDED, 1, "")
    assert fake_model.calls["embed_face"] >= 2  # the reference, then the snapshot


def test_a_site_without_doors_checks_in_exactly_as_before(
    device, enrolled_person, fake_model, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    assert checkin.status == CheckIn.Status.PENDING and checkin.queued_at is not None
    assert queued == [("checkin_process_task", checkin.pk)]
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert (checkin.decision, checkin.reason) == (1, "")
    entry = AuditEntry.objects.get(checkin_id=checkin.pk, kind=AuditEntry.Kind.DECISION)
    assert "access" not in entry.detail


def test_once_doors_exist_a_device_at_no_door_refuses_in_the_request(
    other_device_and_token, enrolled_person, lab, fake_model, queued, django_capture_on_commit_callbacks
):
    other_device = other_device_and_token[0]
    fake_model.calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        checkin = services.checkin_submit(device=other_device, person_external_id="B-1001", snapshot_file=upload())
    assert (checkin.status, checkin.reason) == (CheckIn.Status.DECIDED, "not_authorized_here")
    entry = AuditEntry.objects.get(checkin_id=checkin.pk, kind=AuditEntry.Kind.DECISION)
    assert entry.detail["access"]["rule"] == "no_door" and entry.detail["access"]["device_without_door"] == "auto"
    assert queued == [] and not fake_model.calls


@pytest.mark.parametrize("claim", ["NOBODY", "B-3003"])
def test_at_a_door_an_unknown_or_inactive_id_is_refused_in_the_request_like_a_missing_right(
    device_client, lab, fake_model, queued, django_capture_on_commit_callbacks, claim
):
    """A known ID without rights answered at once while an unknown one waited for a worker would tell a
    device holder which IDs exist: at a door, every refusal that needs no face is decided in the request."""
    services.person_create(name="Zed Inactive", external_id="B-3003", is_active=False)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(device_client, person=claim)
    reason = "unknown_person" if claim == "NOBODY" else "inactive_person"
    body, checkin, entry = assert_refused_before_face_work(response, reason, fake_model, queued)
    assert (body["status"], body["decision"], body["reason"]) == ("decided", 0, "not_recognised")
    assert entry.detail["access"]["rule"] == reason and entry.detail["access"]["door"] == "Lab door"


def test_without_doors_an_unknown_id_goes_the_usual_way_to_the_worker(
    device, fake_model, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        checkin = services.checkin_submit(device=device, person_external_id="NOBODY", snapshot_file=upload())
    assert checkin.status == CheckIn.Status.PENDING and queued == [("checkin_process_task", checkin.pk)]
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert checkin.reason == CheckIn.Reason.UNKNOWN_PERSON and not fake_model.calls["embed_face"]


def test_rights_withdrawn_while_the_checkin_waited_are_refused_by_the_worker_before_face_work(
    device, enrolled_person, lab, fake_model, queued
):
    access_rules.access_member_add(group=lab["group"], person=enrolled_person)
    access_rules.access_windows_set(group=lab["group"], windows=ALWAYS)
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    assert checkin.status == CheckIn.Status.PENDING
    access_rules.access_member_remove(group=lab["group"], person=enrolled_person, operator="op")
    fake_model.calls.clear()
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert (checkin.decision, checkin.reason) == (0, "not_authorized_here")
    assert fake_model.calls["embed_face"] == 0 and fake_model.calls["score"] == 0
    entry = AuditEntry.objects.get(checkin_id=checkin.pk, kind=AuditEntry.Kind.DECISION)
    assert entry.detail["access"]["rule"] == "no_group"


def test_outside_schedule_refusals_never_lock_the_door_out_but_not_authorized_ones_do(
    device, enrolled_person, lab, fake_model, queued, settings
):
    settings.LOCKOUT_DEVICE_MAX_FAILURES = 2
    access_rules.access_member_add(group=lab["group"], person=enrolled_person)
    for _ in range(3):  # people queueing before their shift
        checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
        assert checkin.reason == "outside_schedule"
    assert not Lockout.objects.exists()
    access_rules.access_member_remove(group=lab["group"], person=enrolled_person)
    for _ in range(2):
        services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    lockout = Lockout.objects.get()
    assert (lockout.scope, lockout.failures) == (Lockout.Scope.DEVICE, 2)


def test_create_device_can_place_the_new_device_at_a_door(lab):
    call_command("create_device", "lab-inner", "--door", "Lab door", stdout=io.StringIO(), stderr=io.StringIO())
    assert Device.objects.get(name="lab-inner").door == lab["door"]
    moved = AuditEntry.objects.filter(kind=AuditEntry.Kind.DEVICE_DOOR_CHANGED, device_name="lab-inner").get()
    assert moved.actor.startswith("cli:") and moved.detail["new_door"] == "Lab door"
    with pytest.raises(CommandError, match="No door named 'Attic'"):
        call_command("create_device", "attic", "--door", "Attic", stdout=io.StringIO(), stderr=io.StringIO())
    assert not Device.objects.filter(name="attic").exists()
