"""Shared fixtures: media in a temp dir, persona clients, a fake model boundary, image bytes.

The fake replaces ``verification.inference`` (the only bridge to ``ml``): these tests are about the
service's rules, not the model; the real model is exercised by the integration tests.
"""
from __future__ import annotations

import io
import itertools
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image
from rest_framework.test import APIClient

from verification import inference, services


def image_bytes(
    fmt: str = "JPEG", size: tuple[int, int] = (64, 48), mode: str = "RGB", colour=(200, 150, 120), comment: bytes = b""
) -> bytes:
    buffer = io.BytesIO()
    options = {"comment": comment} if comment else {}
    Image.new(mode, size, colour if mode in ("RGB", "RGBA") else 128).save(buffer, format=fmt, **options)
    return buffer.getvalue()


_frame_numbers = itertools.count(1)


def upload(data: bytes | None = None, name: str = "face.jpg", content_type: str = "image/jpeg") -> SimpleUploadedFile:
    """``data``, or a new JPEG frame: a camera never sends the same bytes twice (replays are refused)."""
    if data is None:
        data = image_bytes(comment=f"frame {next(_frame_numbers)}".encode())
    return SimpleUploadedFile(name, data, content_type=content_type)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def _no_throttle_state():
    # Throttle counters live in the cache; start each test from zero.
    from django.core.cache import cache

    cache.clear()


@dataclass
class FakeInference:
    """Stands in for the model: fixed version/threshold, scripted face outcome and scores."""

    version: str = "fake-1"
    threshold: float = 0.5
    thresholds: tuple[tuple[int, float], ...] = ()  # per reference count (empty: ``threshold`` for all)
    review_thresholds: tuple[tuple[int, float], ...] = ()  # the review band's lower edges (empty: no band)
    reject_reason: str | None = None
    scores: list[float] = field(default_factory=lambda: [0.9])
    # The model's rule over k references; the fake's decision score is the mean of the scripted scores
    # unless ``template_score`` scripts the score against the template.
    rule: str = "mean"
    template_score: float | None = None
    calls: Counter = field(default_factory=Counter)
    error: BaseException | None = None
    # None: the first face embeds to all 0.5 (enrolment tests read it back), every later one to its own
    # direction, as no camera gives the same frame twice (near-duplicate probes are refused as replays).
    embedding: np.ndarray | None = None
    # A crop that passes the enrolment quality bounds (mid-grey with texture) and frontal landmarks.
    crop: np.ndarray = field(
        default_factory=lambda: np.random.default_rng(0).integers(70, 190, (100, 100, 3)).astype(np.uint8)
    )
    landmarks: np.ndarray = field(
        default_factory=lambda: np.array([[35.0, 46.0], [65.0, 46.0], [50.0, 62.0], [38.0, 80.0], [62.0, 80.0]])
    )

    def model_info(self) -> inference.ModelInfo:
        self.calls["model_info"] += 1
        return inference.ModelInfo(version=self.version, threshold=self.threshold, thresholds=self.thresholds,
                                   review_thresholds=self.review_thresholds, rule=self.rule)

    def configured_model_version(self) -> str:
        return self.version

    def embed_face(self, data: bytes) -> inference.FaceEmbedding:
        self.calls["embed_face"] += 1
        if self.error is not None:
            raise self.error
        if self.reject_reason:
            raise inference.FaceRejected(self.reject_reason, timings={"decode_ms": 1.0})
        return inference.FaceEmbedding(
            crop=self.crop.copy(),
            embedding=self._embedding(),
            timings={"decode_ms": 1.0, "detect_ms": 2.0, "embed_ms": 3.0},
        )

    def embed_faces(self, datas: list[bytes]) -> list[inference.FaceEmbedding | inference.FaceRejected]:
        """As ``embed_face`` for each, in one call (a batch of check-ins); ``calls["embed_faces"]`` counts calls."""
        self.calls["embed_faces"] += 1
        results = []
        for data in datas:
            try:
                results.append(self.embed_face(data))
            except inference.FaceRejected as rejected:
                results.append(rejected)
        return results

    def embed_reference_face(self, data: bytes) -> inference.FaceEmbedding:
        """As ``embed_face``, with landmarks (a frontal face unless ``landmarks`` says otherwise)."""
        face = self.embed_face(data)
        return inference.FaceEmbedding(crop=face.crop, embedding=face.embedding, timings=face.timings,
                                       landmarks=self.landmarks.copy())

    def _embedding(self) -> np.ndarray:
        if self.embedding is not None:
            return self.embedding
        if self.calls["embed_face"] == 1:
            return np.full(8, 0.5, dtype=np.float32)
        vector = np.random.default_rng(self.calls["embed_face"]).standard_normal(8).astype(np.float32)
        return vector / np.linalg.norm(vector)

    def score(self, probe: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, float]:
        self.calls["score"] += 1
        values = (self.scores * len(references))[: len(references)]
        return np.asarray(values, dtype=np.float32), 0.25

    def decision_score(self, probe: np.ndarray, references: np.ndarray, scores: np.ndarray) -> float:
        self.calls["decision_score"] += 1
        if self.rule == "template" and self.template_score is not None:
            return float(self.template_score)
        return float(np.mean(scores))


@pytest.fixture
def fake_model(monkeypatch) -> FakeInference:
    fake = FakeInference()
    monkeypatch.setattr(inference, "model_info", fake.model_info)
    monkeypatch.setattr(inference, "configured_model_version", fake.configured_model_version)
    monkeypatch.setattr(inference, "embed_face", fake.embed_face)
    monkeypatch.setattr(inference, "embed_faces", fake.embed_faces)
    monkeypatch.setattr(inference, "embed_reference_face", fake.embed_reference_face)
    monkeypatch.setattr(inference, "score", fake.score)
    monkeypatch.setattr(inference, "decision_score", fake.decision_score)
    return fake


@pytest.fixture
def person(db):
    return services.person_create(name="Ada Lovelace", external_id="B-1001")


@pytest.fixture
def enrolled_person(person, fake_model, django_capture_on_commit_callbacks):
    """A person with one ready reference (embedded by the fake model through the real task path)."""
    with django_capture_on_commit_callbacks(execute=True):
        services.reference_add(person=person, image_file=upload())
    return person


@pytest.fixture
def device_and_token(db):
    return services.device_create(name="front-door")


@pytest.fixture
def device(device_and_token):
    return device_and_token[0]


@pytest.fixture
def other_device_and_token(db):
    return services.device_create(name="back-door")


@pytest.fixture
def anonymous_client() -> APIClient:
    return APIClient()


@pytest.fixture
def device_client(device_and_token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {device_and_token[1]}")
    return client


@pytest.fixture
def other_device_client(other_device_and_token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {other_device_and_token[1]}")
    return client


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("officer", "officer@example.org", "pw-not-used-123")
    client.force_login(user)
    return client


def staff_login(django_user_model, username: str, group: str | None = None, *, codenames=(),  # noqa: ANN001
                enforce_csrf: bool = False) -> Client:
    """A test client logged in as a new staff user in ``group`` (a role's name) with extra ``codenames``."""
    user = django_user_model.objects.create_user(username, f"{username}@example.org", "pw-not-used-123", is_staff=True)
    if group is not None:
        user.groups.add(Group.objects.get(name=group))
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="verification", codename__in=codenames))
    client = Client(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client
