"""Replays are refused (issue 9, item 7).

Threat: a device holder (or someone on the network path of a door) records one good snapshot, or
holds a printed photo still in front of the camera, and plays it back: the same file was admitted
three times with the identical score. Now a snapshot whose bytes were seen before (any device, any
time) is refused ``replayed`` before any face work, and a probe whose embedding is a near-duplicate
(cosine similarity above ``REPLAY_SIMILARITY_MAX``) of a probe of the same claimed person within
``REPLAY_WINDOW_SECONDS`` is refused ``replayed`` too: cameras never produce the same frame twice.
"""
from __future__ import annotations

import hashlib
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from tests.conftest import image_bytes, upload
from verification import services
from verification.models import AuditEntry, CheckIn, Lockout

pytestmark = pytest.mark.django_db

FRAME = image_bytes(comment=b"the recorded frame")


def attempt(device, data: bytes | None = None, claimed: str = "B-1001") -> CheckIn:
    checkin = services.checkin_submit(device=device, person_external_id=claimed, snapshot_file=upload(data))
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    return checkin


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)


# --- The same bytes ------------------------------------------------------------------------------


def test_the_same_snapshot_bytes_are_refused_replayed_without_face_work(device, enrolled_person, fake_model):
    fake_model.scores = [0.99]
    first = attempt(device, FRAME)
    embeds = fake_model.calls["embed_face"]
    second = attempt(device, FRAME)
    third = attempt(device, FRAME)

    assert (first.decision, first.reason) == (1, "")
    assert [(c.decision, c.reason, c.score) for c in (second, third)] == [(0, "replayed", None)] * 2
    assert fake_model.calls["embed_face"] == embeds
    digest = hashlib.sha256(FRAME).hexdigest()
    assert {c.snapshot_sha256 for c in (first, second, third)} == {digest}
    audit = AuditEntry.objects.get(checkin=second, kind="decision")
    assert (audit.reason, audit.detail["replay_of"]) == ("replayed", first.pk)


def test_a_snapshot_first_seen_at_another_device_is_a_replay_too(device, other_device_and_token, enrolled_person, fake_model):
    attempt(other_device_and_token[0], FRAME)
    assert attempt(device, FRAME).reason == "replayed"


def test_the_snapshot_digest_is_indexed():
    assert "checkin_snapshot_sha256_idx" in {index.name for index in CheckIn._meta.indexes}


# --- Near-duplicate probes -----------------------------------------------------------------------


def test_a_near_duplicate_probe_of_the_same_person_is_refused_replayed(device, enrolled_person, fake_model, settings):
    assert (settings.REPLAY_SIMILARITY_MAX, settings.REPLAY_WINDOW_SECONDS) == (0.995, 600)
    fake_model.scores = [0.99]
    fake_model.embedding = unit([1, 2, 3, 4, 5, 6, 7, 8])
    first = attempt(device)  # new bytes each time: a re-encoded or re-photographed copy
    fake_model.embedding = unit([1, 2, 3, 4, 5, 6, 7, 8.05])  # cosine 0.99998
    second = attempt(device)

    assert (first.decision, second.decision, second.reason, second.score) == (1, 0, "replayed", None)
    audit = AuditEntry.objects.get(checkin=second, kind="decision")
    assert audit.detail["replay_of"] == first.pk and audit.detail["similarity"] > 0.995


def test_a_live_face_is_judged_even_when_it_resembles_the_last_probe(device, enrolled_person, fake_model):
    fake_model.scores = [0.99]
    fake_model.embedding = unit([1, 2, 3, 4, 5, 6, 7, 8])
    attempt(device)
    fake_model.embedding = unit([1, 2, 3, 4, 5, 7, 6, 9])  # the same person, another frame
    assert 0.98 < float(unit([1, 2, 3, 4, 5, 6, 7, 8]) @ fake_model.embedding) < 0.995
    assert attempt(device).decision == 1


def test_a_near_duplicate_outside_the_window_or_of_another_claim_is_judged(device, enrolled_person, fake_model, django_capture_on_commit_callbacks):
    fake_model.scores = [0.99]
    fake_model.embedding = unit([1, 2, 3, 4, 5, 6, 7, 8])
    old = attempt(device)
    CheckIn.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=11))
    assert attempt(device).decision == 1

    other = services.person_create(name="Grace Hopper", external_id="B-2002")
    with django_capture_on_commit_callbacks(execute=True):
        services.reference_add(person=other, image_file=upload())
    assert attempt(device, claimed="B-2002").decision == 1


def test_replays_count_toward_the_devices_lockout_not_the_persons(device, enrolled_person, fake_model, settings):
    settings.LOCKOUT_DEVICE_MAX_FAILURES = 4
    attempt(device, FRAME)
    assert [attempt(device, FRAME).reason for _ in range(4)] == ["replayed"] * 4
    assert list(Lockout.objects.values_list("scope", flat=True)) == ["device"]


def test_erasure_clears_the_probe_embeddings_and_the_claimed_ids_lock_row(device, enrolled_person, fake_model):
    from verification.models import LockoutSubject

    checkin = attempt(device)
    assert checkin.probe_embedding is not None
    assert LockoutSubject.objects.filter(scope="person", key="B-1001").exists()
    services.person_erase(person=enrolled_person, operator="dpo")
    checkin.refresh_from_db()
    assert checkin.probe_embedding is None
    assert not LockoutSubject.objects.filter(key="B-1001").exists()
