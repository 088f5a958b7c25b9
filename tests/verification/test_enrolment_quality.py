"""Enrolment quality (issue 10, item 3): bad reference photos refused with a reason, photos that do
not match the person's others refused unless an operator vouches (audited), ENROLMENT_MIN_REFERENCES.

The quality tests run the real detector and alignment (``inference.align_face``) on fixture faces and
degraded copies of them; only the embedding is the fake model's.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image

from tests.conftest import upload
from verification import inference, quality, services
from verification.audit import audit_verify
from verification.models import AuditEntry, CheckIn, ReferenceImage

pytestmark = pytest.mark.django_db

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


def _rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(FACES / name).convert("RGB"))


def _jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _blurred(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(rgb, (0, 0), 3.0)


PHOTOS = {
    "good": lambda: _rgb("person_a_1.jpg"),
    "blurred": lambda: _blurred(_rgb("person_a_1.jpg")),
    "too_dark": lambda: (_rgb("person_a_1.jpg") * 0.25).astype(np.uint8),
    "too_bright": lambda: (255 - (255 - _rgb("person_a_1.jpg").astype(np.float64)) * 0.25).astype(np.uint8),
    # A real LFW photo of a face turned to the side (nose 0.34 inter-ocular distances off the eye midpoint).
    "face_turned": lambda: _rgb("person_b_3.jpg"),
}


@pytest.fixture
def real_alignment(fake_model, monkeypatch):
    """Real detection + alignment + landmarks; the fake model's embedding."""
    real_align = inference.align_face

    def embed_reference_face(data: bytes) -> inference.FaceEmbedding:
        face = real_align(data)
        return inference.FaceEmbedding(crop=face.crop, embedding=fake_model._embedding(), landmarks=face.landmarks)

    monkeypatch.setattr(inference, "embed_reference_face", embed_reference_face)
    return fake_model


@pytest.mark.parametrize("kind", list(PHOTOS))
def test_fixture_photos_are_refused_with_their_quality_reason_and_a_good_one_accepted(person, real_alignment, kind):
    reference = services.reference_add(person=person, image_file=upload(_jpeg(PHOTOS[kind]())))
    services.reference_embed(reference_id=reference.pk)

    reference.refresh_from_db()
    assert set(reference.quality) >= {"luminance", "sharpness", "yaw"}
    if kind == "good":
        assert (reference.status, reference.reason) == ("ready", "")
        assert reference.embedding is not None
    else:
        assert (reference.status, reference.reason) == ("rejected", kind)
        assert reference.embedding is None and not reference.face_crop


def test_measurements_are_pure_numpy_and_yaw_ignores_roll_and_scale():
    flat = np.full((100, 100, 3), 120, np.uint8)
    assert quality.measure(crop=flat, landmarks=None) == quality.FaceQuality(luminance=120.0, sharpness=0.0, yaw=None)
    frontal = np.array([[35.0, 46.0], [65.0, 46.0], [50.0, 62.0], [38.0, 80.0], [62.0, 80.0]])
    turned = frontal.copy()
    turned[2, 0] += 9.0  # nose 0.3 inter-ocular distances to the side
    angle = np.deg2rad(25)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert quality.yaw_from_landmarks(frontal) == pytest.approx(0.0)
    assert quality.yaw_from_landmarks(turned) == pytest.approx(0.3)
    assert quality.yaw_from_landmarks(2.5 * turned @ rotation.T + 40) == pytest.approx(0.3)
    assert quality.problem(quality.FaceQuality(luminance=120, sharpness=100, yaw=0.3)) == "face_turned"
    assert quality.problem(quality.FaceQuality(luminance=40, sharpness=10, yaw=0.3)) == "too_dark"  # light first


def _add(person) -> ReferenceImage:
    reference = services.reference_add(person=person, image_file=upload())
    services.reference_embed(reference_id=reference.pk)
    reference.refresh_from_db()
    return reference


def test_a_photo_that_does_not_match_the_persons_others_is_refused_and_an_operator_can_accept_it(
    enrolled_person, fake_model, staff_client
):
    fake_model.scores = [0.2]  # someone else's photo: scores below the model's one-reference threshold (0.5)
    stranger = _add(enrolled_person)
    assert (stranger.status, stranger.reason) == ("rejected", "inconsistent_reference")
    assert stranger.quality["consistency"] == pytest.approx(0.2) and stranger.quality["consistency_threshold"] == 0.5
    assert stranger.embedding is not None  # kept, so accepting it needs no second embedding

    fake_model.scores = [0.8]
    assert _add(enrolled_person).status == "ready"  # a matching photo passes

    response = staff_client.post(
        reverse("admin:verification_person_changelist"),
        {"action": "accept_inconsistent_references", "_selected_action": [enrolled_person.pk]},
        follow=True,
    )
    assert response.status_code == 200
    stranger.refresh_from_db()
    assert (stranger.status, stranger.reason, stranger.quality["accepted_by"]) == ("ready", "", "officer")
    entry = AuditEntry.objects.get(kind=AuditEntry.Kind.REFERENCE_ACCEPTED)
    assert (entry.person_external_id, entry.detail["operator"], entry.detail["reference_id"]) == (
        "B-1001", "officer", stranger.pk,
    )
    assert entry.score == pytest.approx(0.2)
    assert audit_verify()[1] is None
    # Only an inconsistent photo can be vouched for, and only once.
    assert services.reference_accept(reference=stranger, operator="officer") is False


def test_consistency_asks_the_doors_question_under_the_models_rule_and_threshold_for_k(
    person, fake_model, django_capture_on_commit_callbacks
):
    # A template-rule model with per-count thresholds, and a person with two ready photos.
    fake_model.rule, fake_model.thresholds = "template", ((1, 0.5), (2, 0.7), (3, 0.75))
    fake_model.scores = [0.9]
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            services.reference_add(person=person, image_file=upload())
    assert person.references.filter(status="ready").count() == 2

    # Each pair scores below one photo's threshold, but the door would admit it against the template.
    fake_model.scores, fake_model.template_score = [0.4], 0.8
    matching = _add(person)
    assert (matching.status, matching.quality["consistency"]) == ("ready", pytest.approx(0.8))
    assert (matching.quality["consistency_threshold"], matching.quality["consistency_rule"]) == (0.7, "template")

    # Pairs above one photo's threshold, but below the door's threshold for the three ready photos: refused.
    fake_model.scores, fake_model.template_score = [0.6], 0.72
    refused = _add(person)
    assert (refused.status, refused.reason) == ("rejected", "inconsistent_reference")
    assert refused.quality["consistency_threshold"] == 0.75


def test_accepting_needs_the_right_to_change_reference_photos(enrolled_person, fake_model, client, django_user_model):
    fake_model.scores = [0.2]
    stranger = _add(enrolled_person)
    viewer = django_user_model.objects.create_user("viewer", password="pw-not-used-123", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_person"), Permission.objects.get(codename="change_person"))
    client.force_login(viewer)
    client.post(
        reverse("admin:verification_person_changelist"),
        {"action": "accept_inconsistent_references", "_selected_action": [enrolled_person.pk]},
    )
    stranger.refresh_from_db()
    assert stranger.status == "rejected"
    assert not AuditEntry.objects.filter(kind=AuditEntry.Kind.REFERENCE_ACCEPTED).exists()


def _checkin(device) -> CheckIn:
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    return checkin


def test_fewer_ready_photos_than_enrolment_min_references_cannot_check_in(
    enrolled_person, fake_model, device, settings, staff_client
):
    settings.ENROLMENT_MIN_REFERENCES = 3
    short = _checkin(device)
    assert (short.decision, short.reason, short.score) == (0, "no_references", None)
    assert fake_model.calls["score"] == 0
    listing = staff_client.get(reverse("admin:verification_person_changelist")).content.decode()
    assert "Can check in" in listing and 'alt="False"' in listing

    for _ in range(2):
        assert _add(enrolled_person).status == "ready"
    enough = _checkin(device)
    assert (enough.decision, enough.reason) == (1, "")
    listing = staff_client.get(reverse("admin:verification_person_changelist")).content.decode()
    assert 'alt="True"' in listing


def test_the_default_minimum_keeps_one_photo_enrolments_working(enrolled_person, fake_model, device):
    assert _checkin(device).decision == 1
