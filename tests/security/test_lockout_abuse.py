"""Lockouts cannot be raced, abused or outwaited (issue 9, item 5).

Threats: a device holder trying faces for one badge (or badge numbers at one door) wants more tries
than the limit allows: by having several workers judge attempts in parallel, by queueing attempts
during a lockout so they are judged (and not counted) after it, or by waiting out each lockout and
starting again from zero. A colleague wants to lock someone out by showing the camera no face.
Now the decision and the count happen under one lock on one clock (the decision's), only ``no_match``
counts toward a person, every refusal toward the device, repeated lockouts double, a device's count
carries over its lockout, a locked device is refused at submit (429), and each lockout is logged at
WARNING and shown on the admin's front page.
"""
from __future__ import annotations

import logging

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.conftest import upload
from verification import inference, services
from verification.audit import audit_verify
from verification.models import AuditEntry, CheckIn, Lockout

pytestmark = pytest.mark.django_db

URL = "/api/v1/checkins/"


def submit(device, claimed: str = "B-1001") -> CheckIn:
    return services.checkin_submit(device=device, person_external_id=claimed, snapshot_file=upload())


def attempt(device, claimed: str = "B-1001") -> CheckIn:
    checkin = submit(device, claimed)
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    return checkin


def expire(lockout: Lockout) -> None:
    """The lockout's time passes (shortened)."""
    Lockout.objects.filter(pk=lockout.pk).update(locked_until=timezone.now())


@pytest.fixture
def impostor(enrolled_person, fake_model):
    fake_model.scores = [0.1]
    return fake_model


# --- Decide and count under the same lock --------------------------------------------------------


def test_attempts_in_flight_when_the_lockout_starts_are_refused_locked_out_not_judged(
    device, impostor, monkeypatch, settings
):
    """Three workers each claim an attempt before any of them decides (W = 3 in parallel).

    The face work of the first attempt runs while the second is claimed, and so on (nested calls stand
    in for parallel workers, deterministically). The innermost attempt decides first: the fifth refusal,
    which locks the person out. The two attempts still in flight then carry a matching face; judged on
    it, they would have been two extra tries (and two admissions). One check-in per worker here; the
    next test takes them in one batch.
    """
    settings.CHECKIN_BATCH_SIZE = 1
    for _ in range(4):
        assert attempt(device).reason == "no_match"
    in_flight = [submit(device) for _ in range(3)]
    real_embed = inference.embed_face
    pending = list(in_flight[1:])

    def embed_while_another_worker_claims(data: bytes):
        if pending:
            services.checkin_process(checkin_id=pending.pop(0).pk)
            impostor.scores = [0.99]  # the attempts decided after the lockout show the right face
        return real_embed(data)

    monkeypatch.setattr(inference, "embed_face", embed_while_another_worker_claims)
    services.checkin_process(checkin_id=in_flight[0].pk)

    for checkin in in_flight:
        checkin.refresh_from_db()
    assert in_flight[2].reason == "no_match"  # decided first: the fifth refusal
    assert [(c.decision, c.reason, c.score) for c in in_flight[:2]] == [(0, "locked_out", None)] * 2
    assert Lockout.objects.filter(scope="person").count() == 1
    audit = AuditEntry.objects.get(checkin=in_flight[0], kind="decision")
    assert (audit.decision, audit.reason) == (0, "locked_out")
    assert audit.detail["superseded"]["decision"] == 1  # what the face said, kept for the officer
    assert audit_verify()[1] is None


def test_attempts_judged_in_one_batch_after_the_lockout_starts_are_refused_locked_out(
    device, impostor, monkeypatch, settings
):
    """A worker takes three queued attempts into one batch (issue 12): their face work is done before
    any is decided. The first decided is the fifth refusal; the two decided after it carry a matching
    face and must be refused ``locked_out``, not judged on it."""
    settings.CHECKIN_BATCH_SIZE = 4
    for _ in range(4):
        assert attempt(device).reason == "no_match"
    batch = [submit(device) for _ in range(3)]
    real_score = inference.score
    scored = []

    def first_refused_then_matching(probe, references):
        scores, ms = real_score(probe, references)
        scored.append(len(scored))
        return (scores * 0 + (0.1 if len(scored) == 1 else 0.99)), ms

    monkeypatch.setattr(inference, "score", first_refused_then_matching)
    services.checkin_process(checkin_id=batch[0].pk)

    reasons = sorted(CheckIn.objects.get(pk=c.pk).reason for c in batch)
    assert reasons == ["locked_out", "locked_out", "no_match"]
    assert CheckIn.objects.filter(pk__in=[c.pk for c in batch], decision=1).count() == 0
    assert Lockout.objects.filter(scope="person").count() == 1
    assert impostor.calls["embed_faces"] == 1  # one batch, as intended
    assert audit_verify()[1] is None


def test_attempts_queued_during_a_lockout_and_judged_after_it_count(device, impostor):
    """One clock: the failures of attempts submitted during a lockout but decided after it count."""
    for _ in range(5):
        attempt(device)
    first = Lockout.objects.get()
    queued = [submit(device) for _ in range(5)]  # stored while locked, processed after it ended
    expire(first)

    for checkin in queued:
        services.checkin_process(checkin_id=checkin.pk)
        checkin.refresh_from_db()

    assert [c.reason for c in queued] == ["no_match"] * 5
    assert Lockout.objects.filter(scope="person").count() == 2
    impostor.scores = [0.99]
    assert attempt(device).reason == "locked_out"


# --- Only failed comparisons lock out a person; every refusal counts for the device --------------


@pytest.mark.parametrize("reason", ["no_face", "multiple_faces", "unreadable_image"])
def test_frames_without_a_comparable_face_do_not_lock_out_the_claimed_person(device, enrolled_person, fake_model, settings, reason):
    settings.LOCKOUT_DEVICE_MAX_FAILURES = 100
    fake_model.reject_reason = reason
    assert [attempt(device).reason for _ in range(6)] == [reason] * 6
    assert not Lockout.objects.filter(scope="person").exists()

    fake_model.reject_reason = None
    assert attempt(device).decision == 1  # the colleague still gets in


def test_every_refusal_counts_toward_the_devices_lockout(device, enrolled_person, fake_model, settings):
    settings.LOCKOUT_DEVICE_MAX_FAILURES = 4
    fake_model.reject_reason = "no_face"
    for _ in range(2):
        attempt(device)
    fake_model.reject_reason = None
    fake_model.scores = [0.1]
    attempt(device)  # no_match
    attempt(device, "NOBODY")  # unknown_person
    lockout = Lockout.objects.get()
    assert (lockout.scope, lockout.failures) == ("device", 4)


# --- Escalation and carry-over -------------------------------------------------------------------


def test_repeated_person_lockouts_double_in_length(device, impostor, settings):
    durations = []
    for _ in range(3):
        for _ in range(settings.LOCKOUT_PERSON_MAX_FAILURES):
            attempt(device)
        lockout = Lockout.objects.filter(scope="person").order_by("-pk").first()
        durations.append(round((lockout.locked_until - lockout.created_at).total_seconds() / 60))
        expire(lockout)
    assert durations == [10, 20, 40]
    assert list(Lockout.objects.order_by("pk").values_list("level", flat=True)) == [1, 2, 3]


def test_escalation_is_capped(device, impostor, settings):
    settings.LOCKOUT_MAX_SECONDS = 1500
    for _ in range(3):
        for _ in range(5):
            attempt(device)
        lockout = Lockout.objects.order_by("-pk").first()
        expire(lockout)
    assert (lockout.locked_until - lockout.created_at).total_seconds() == pytest.approx(1500, abs=5)


def test_a_devices_count_does_not_restart_from_zero_after_its_lockout(device, fake_model, settings):
    settings.LOCKOUT_DEVICE_MAX_FAILURES = 3
    for n in range(3):
        attempt(device, f"GUESS-{n}")
    first = Lockout.objects.get()
    expire(first)

    assert attempt(device, "GUESS-3").reason == "unknown_person"  # judged again once the lockout ended...
    second = Lockout.objects.exclude(pk=first.pk).get()  # ...but it locks the device again at once,
    assert (second.scope, second.level) == ("device", 2)  # for twice as long
    assert (second.locked_until - second.created_at).total_seconds() == pytest.approx(1200, abs=5)


def test_an_operator_unlock_gives_a_fresh_start_and_resets_escalation(device, fake_model, settings):
    settings.LOCKOUT_DEVICE_MAX_FAILURES = 3
    for n in range(3):
        attempt(device, f"GUESS-{n}")
    services.lockout_release(lockout=Lockout.objects.get(), operator="officer")

    assert [attempt(device, f"GUESS-{n}").reason for n in range(3, 5)] == ["unknown_person"] * 2
    assert Lockout.objects.count() == 1
    attempt(device, "GUESS-5")
    assert Lockout.objects.order_by("-pk").first().level == 1


# --- A locked device is refused at submit ------------------------------------------------------------


def test_a_locked_device_is_refused_at_submit_with_429_and_retry_after_and_nothing_is_stored(
    device, device_client, fake_model, settings, _media_root
):
    settings.LOCKOUT_DEVICE_MAX_FAILURES = 3
    for n in range(3):
        attempt(device, f"GUESS-{n}")
    lockout = Lockout.objects.get()
    rows, files = CheckIn.objects.count(), sorted((_media_root / "snapshots").iterdir())

    response = device_client.post(URL, {"snapshot": upload(), "person": "B-1001"}, format="multipart")

    assert response.status_code == 429
    assert response.json()["code"] == "device_locked_out"
    retry_after = int(response["Retry-After"])
    assert 590 <= retry_after <= 600
    assert response.json()["detail"]["retry_after"] == retry_after
    assert CheckIn.objects.count() == rows
    assert sorted((_media_root / "snapshots").iterdir()) == files

    expire(lockout)
    assert device_client.post(URL, {"snapshot": upload(), "person": "B-1001"}, format="multipart").status_code == 202


# --- Operators are alerted -------------------------------------------------------------------------


def test_each_lockout_is_logged_at_warning_and_shown_on_the_admin_front_page(device, impostor, staff_client, caplog):
    with caplog.at_level(logging.WARNING, logger="verification.services.lockouts"):
        for _ in range(5):
            attempt(device)
    lockout = Lockout.objects.get()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "locked out" in r.getMessage()]
    assert len(warnings) == 1 and "B-1001" in warnings[0].getMessage()

    page = staff_client.get(reverse("admin:index"))
    assert page.status_code == 200
    assert b"Lockouts in force" in page.content and b"B-1001" in page.content

    services.lockout_release(lockout=lockout, operator="officer")
    assert b"Lockouts in force" not in staff_client.get(reverse("admin:index")).content
