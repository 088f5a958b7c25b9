"""Attempt limiting (NIST SP 800-53 AC-7): refusals lock out a claimed person or a device."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.conftest import upload
from verification import services
from verification.audit import audit_verify
from verification.errors import DeviceLockedOut
from verification.models import AuditEntry, CheckIn, Lockout

pytestmark = pytest.mark.django_db


def attempt(device, claimed: str = "B-1001") -> CheckIn:
    checkin = services.checkin_submit(device=device, person_external_id=claimed, snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    return checkin


@pytest.fixture
def impostor(enrolled_person, fake_model):
    """Every face scores below the threshold: each attempt is refused with no_match."""
    fake_model.scores = [0.1]
    return fake_model


def test_fifth_refusal_locks_out_the_claimed_person_and_the_lockout_is_audited(device, impostor, settings):
    assert settings.LOCKOUT_PERSON_MAX_FAILURES == 5 and settings.LOCKOUT_WINDOW_SECONDS == 600
    refused = [attempt(device) for _ in range(5)]

    assert [c.reason for c in refused] == ["no_match"] * 5
    lockout = Lockout.objects.get()
    assert (lockout.scope, lockout.key, lockout.failures) == ("person", "B-1001", 5)
    assert lockout.locked_until > timezone.now() + timedelta(seconds=590)
    audit = AuditEntry.objects.get(kind="lockout")
    assert (audit.person_external_id, audit.checkin_id, audit.reason) == ("B-1001", refused[-1].pk, "locked_out")
    assert audit.detail["failures"] == 5 and audit.detail["scope"] == "person"
    assert audit_verify()[1] is None


def test_locked_out_person_is_refused_even_with_the_right_face_and_no_face_work_is_done(device, impostor):
    for _ in range(5):
        attempt(device)
    impostor.scores = [0.99]
    embeds_before = impostor.calls["embed_face"]

    checkin = attempt(device)

    assert (checkin.status, checkin.decision, checkin.reason, checkin.score) == ("decided", 0, "locked_out", None)
    assert impostor.calls["embed_face"] == embeds_before
    assert AuditEntry.objects.get(checkin=checkin, kind="decision").reason == "locked_out"
    # Refusals during a lockout neither extend it nor create another one.
    assert Lockout.objects.count() == 1


def test_four_refusals_do_not_lock_out(device, impostor):
    for _ in range(4):
        attempt(device)
    impostor.scores = [0.99]
    assert (attempt(device).decision, Lockout.objects.count()) == (1, 0)


def test_refusals_older_than_the_window_do_not_count(device, impostor):
    old = [attempt(device) for _ in range(4)]
    # Refusals are counted on the decision's clock (issue 9, item 5).
    CheckIn.objects.filter(pk__in=[c.pk for c in old]).update(decided_at=timezone.now() - timedelta(minutes=11))
    attempt(device)
    assert Lockout.objects.count() == 0


def test_other_people_are_not_locked_out_by_someone_elses_failures(device, impostor, django_capture_on_commit_callbacks):
    other = services.person_create(name="Grace Hopper", external_id="B-2002")
    with django_capture_on_commit_callbacks(execute=True):
        services.reference_add(person=other, image_file=upload())
    for _ in range(5):
        attempt(device)
    impostor.scores = [0.99]
    assert (attempt(device, "B-2002").decision, attempt(device, "B-1001").reason) == (1, "locked_out")


def test_lockout_ends_when_its_time_passes_and_old_failures_do_not_count_again(device, impostor):
    for _ in range(5):
        attempt(device)
    # Ten minutes pass (shortened): the failures lie before the lockout's end, still inside the window.
    CheckIn.objects.update(decided_at=timezone.now() - timedelta(seconds=2))
    Lockout.objects.update(locked_until=timezone.now() - timedelta(seconds=1))

    assert attempt(device).reason == "no_match"  # judged again, not locked_out
    assert Lockout.objects.count() == 1  # one fresh failure is not five
    impostor.scores = [0.99]
    assert attempt(device).decision == 1


def test_operator_unlocks_in_the_admin_and_the_unlock_is_audited(device, impostor, staff_client):
    for _ in range(5):
        attempt(device)
    lockout = Lockout.objects.get()

    response = staff_client.post(
        reverse("admin:verification_lockout_changelist"),
        {"action": "unlock", "_selected_action": [lockout.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert b"Unlocked 1 lockout" in response.content
    lockout.refresh_from_db()
    assert lockout.unlocked_at is not None and lockout.unlocked_by == "officer"
    unlock = AuditEntry.objects.get(kind="unlock")
    assert (unlock.person_external_id, unlock.detail["operator"], unlock.detail["lockout_id"]) == (
        "B-1001", "officer", lockout.pk,
    )
    impostor.scores = [0.99]
    assert attempt(device).decision == 1
    assert audit_verify()[1] is None


def test_unlocking_an_ended_lockout_changes_nothing(device, impostor):
    for _ in range(5):
        attempt(device)
    lockout = Lockout.objects.get()
    assert services.lockout_release(lockout=lockout, operator="a") is True
    assert services.lockout_release(lockout=lockout, operator="b") is False
    assert AuditEntry.objects.filter(kind="unlock").count() == 1


def test_repeated_refusals_at_one_device_lock_out_the_device_for_every_claim(device, other_device_and_token, fake_model, settings):
    settings.LOCKOUT_DEVICE_MAX_FAILURES = 3
    # Someone probing badge numbers at one door: each claim is new, so no person limit is reached.
    reasons = [attempt(device, f"GUESS-{n}").reason for n in range(3)]
    assert reasons == ["unknown_person"] * 3

    lockout = Lockout.objects.get()
    assert (lockout.scope, lockout.key, lockout.label) == ("device", str(device.pk), "front-door")
    assert AuditEntry.objects.get(kind="lockout").device_name == "front-door"
    with pytest.raises(DeviceLockedOut):  # refused at submit, nothing stored (issue 9, item 5)
        attempt(device, "GUESS-99")
    other_device = other_device_and_token[0]
    assert attempt(other_device, "GUESS-99").reason == "unknown_person"


def test_lockout_list_in_the_admin_shows_the_lockout_and_refuses_edits(device, impostor, staff_client):
    for _ in range(5):
        attempt(device)
    lockout = Lockout.objects.get()
    listing = staff_client.get(reverse("admin:verification_lockout_changelist"))
    assert listing.status_code == 200 and b"B-1001" in listing.content
    assert staff_client.post(reverse("admin:verification_lockout_delete", args=[lockout.pk]), {"post": "yes"}).status_code == 403
    assert Lockout.objects.filter(pk=lockout.pk).exists()
