"""Enrolment: people, reference photos, devices."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from PIL import Image

from tests.conftest import image_bytes, upload
from verification import selectors, services
from verification.errors import InvalidImage
from verification.models import AuditEntry, ReferenceImage

pytestmark = pytest.mark.django_db


def test_person_create_refuses_duplicate_external_id(person):
    with pytest.raises(ValidationError):
        services.person_create(name="Someone Else", external_id=person.external_id)


def test_person_create_refuses_validity_window_that_ends_before_it_starts():
    from django.utils import timezone

    now = timezone.now()
    with pytest.raises(ValidationError):
        services.person_create(name="A", external_id="A-1", valid_from=now, valid_until=now)


def test_reference_add_stores_a_pending_photo_and_queues_embedding(person, django_capture_on_commit_callbacks, monkeypatch):
    queued = []
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: queued.append((name, object_id)) or True)
    with django_capture_on_commit_callbacks(execute=True):
        reference = services.reference_add(person=person, image_file=upload(name="ada.jpg"))
    reference.refresh_from_db()
    assert reference.status == ReferenceImage.Status.PENDING
    # The stored name is random: it must not reveal who is in the photo.
    assert re.fullmatch(r"references/[0-9a-f]{32}\.jpg", reference.image.name)
    assert (reference.width, reference.height) == (64, 48)
    assert queued == [("reference_embed_task", reference.pk)]


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"", "empty_file"), (b"<html>hi</html>", "unreadable_image"), (image_bytes()[:150], "unreadable_image")],
    ids=["empty", "html", "truncated"],
)
def test_reference_add_refuses_bad_files_and_stores_nothing(person, data, code):
    with pytest.raises(InvalidImage) as caught:
        services.reference_add(person=person, image_file=upload(data))
    assert caught.value.code == code
    assert ReferenceImage.objects.count() == 0


def test_reference_embed_stores_embedding_and_aligned_crop(person, fake_model):
    reference = services.reference_add(person=person, image_file=upload())
    services.reference_embed(reference_id=reference.pk)
    reference.refresh_from_db()
    assert reference.status == ReferenceImage.Status.READY
    assert reference.model_version == "fake-1"
    vector = selectors.embedding_from_bytes(reference.embedding, reference.embedding_dim)
    np.testing.assert_array_equal(vector, np.full(8, 0.5, dtype=np.float32))
    with reference.face_crop.open("rb") as handle:
        assert Image.open(io.BytesIO(handle.read())).size == (100, 100)


@pytest.mark.parametrize("reason", ["no_face", "face_too_small", "multiple_faces"])
def test_reference_without_exactly_one_face_is_rejected_with_reason(person, fake_model, reason):
    fake_model.reject_reason = reason
    reference = services.reference_add(person=person, image_file=upload())
    services.reference_embed(reference_id=reference.pk)
    reference.refresh_from_db()
    assert (reference.status, reference.reason, reference.embedding) == ("rejected", reason, None)


def test_device_token_is_stored_hashed_and_authenticates(device_and_token):
    device, token = device_and_token
    assert token not in (device.token_hash, device.token_prefix + "x")
    assert device.token_hash == selectors.token_hash(token)
    assert selectors.device_by_token(raw_token=token) == device
    assert selectors.device_by_token(raw_token=token + "x") is None


def test_revoked_device_no_longer_authenticates_and_is_audited(device_and_token):
    device, token = device_and_token
    services.device_revoke(device=device)
    assert selectors.device_by_token(raw_token=token) is None
    assert AuditEntry.objects.order_by("-seq").first().kind == "device_revoked"


def test_device_names_are_unique(device):
    with pytest.raises(ValidationError):
        services.device_create(name=device.name)


def test_new_model_version_re_embeds_references_and_removes_the_old_crop(enrolled_person, fake_model, django_capture_on_commit_callbacks):
    reference = enrolled_person.references.get()
    old_crop = reference.face_crop.name
    fake_model.version = "fake-2"
    with django_capture_on_commit_callbacks(execute=True):
        queued = services.references_requeue_stale(model_version="fake-2")
    assert queued == [reference.pk]
    reference.refresh_from_db()
    assert (reference.status, reference.model_version) == ("ready", "fake-2")
    assert reference.face_crop.name != old_crop
    assert not reference.face_crop.storage.exists(old_crop)


def test_references_of_the_current_model_are_not_requeued(enrolled_person, fake_model):
    assert services.references_requeue_stale(model_version="fake-1") == []


def test_reference_rejected_by_a_new_model_loses_its_old_embedding(enrolled_person, fake_model, django_capture_on_commit_callbacks):
    fake_model.version, fake_model.reject_reason = "fake-2", "no_face"
    with django_capture_on_commit_callbacks(execute=True):
        services.references_requeue_stale(model_version="fake-2")
    reference = enrolled_person.references.get()
    assert (reference.status, reference.reason, reference.embedding) == ("rejected", "no_face", None)


def test_reembed_references_command_uses_the_configured_model_version(enrolled_person, fake_model):
    from django.core.management import call_command

    fake_model.version = "fake-3"
    out = io.StringIO()
    call_command("reembed_references", stdout=out)
    assert "queued 1 reference(s) for re-embedding with model fake-3" in out.getvalue()
