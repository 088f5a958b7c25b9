"""The bridge to ``ml``: error mapping, timings, lazy single model load. ``ml``'s model is faked."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ml
from tests.conftest import image_bytes
from verification import inference
from verification.errors import ModelUnavailable

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


class CountingModel:
    version = "counting-1"
    threshold = 0.6

    def __init__(self) -> None:
        self.warmed = 0

    def warm_up(self) -> None:
        self.warmed += 1

    def thresholds(self) -> dict[int, float]:
        return {1: 0.6, 3: 0.5}

    def embed(self, faces: np.ndarray) -> np.ndarray:
        assert faces.shape[1:] == (100, 100, 3) and faces.dtype == np.uint8
        return np.ones((len(faces), 4), dtype=np.float32) / 2

    def score(self, probe: np.ndarray, references: np.ndarray) -> np.ndarray:
        return references @ probe


@pytest.fixture
def model(monkeypatch) -> CountingModel:
    loaded = CountingModel()
    loads = []
    monkeypatch.setattr(inference, "_model", None)
    monkeypatch.setattr(ml, "load_model", lambda path=None: loads.append(path) or loaded)
    loaded.loads = loads
    return loaded


def test_model_is_loaded_and_warmed_once_per_process(model):
    assert inference.model_info() == inference.ModelInfo(version="counting-1", threshold=0.6, thresholds=((1, 0.6), (3, 0.5)))
    inference.get_model()
    assert (len(model.loads), model.warmed) == (1, 1)


def test_embed_face_returns_crop_embedding_and_stage_timings(model, monkeypatch):
    monkeypatch.setattr(ml, "extract_face", lambda rgb: np.zeros((100, 100, 3), dtype=np.uint8))
    face = inference.embed_face(image_bytes())
    assert face.crop.shape == (100, 100, 3)
    assert face.embedding.dtype == np.float32 and face.embedding.shape == (4,)
    assert set(face.timings) == {"decode_ms", "detect_ms", "embed_ms"}


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ml.NoFaceFound("none"), "no_face"),
        (ml.FaceTooSmall("small"), "face_too_small"),
        (ml.MultipleFacesFound("two"), "multiple_faces"),
    ],
)
def test_face_errors_become_rejections_with_their_reason(model, monkeypatch, error, reason):
    def extract(rgb):
        raise error

    monkeypatch.setattr(ml, "extract_face", extract)
    with pytest.raises(inference.FaceRejected) as caught:
        inference.embed_face(image_bytes())
    assert caught.value.reason == reason
    assert "detect_ms" in caught.value.timings


@pytest.mark.parametrize("data", [b"", b"not an image", image_bytes()[:100]])
def test_unreadable_bytes_become_unreadable_image(model, data):
    with pytest.raises(inference.FaceRejected) as caught:
        inference.embed_face(data)
    assert caught.value.reason == "unreadable_image"


def test_score_returns_one_float32_per_reference_and_its_time(model):
    scores, ms = inference.score(np.ones(4, np.float32), np.ones((3, 4), np.float32))
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert ms >= 0


def test_configured_model_version_reads_the_manifest(settings, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"version": "v-from-manifest", "threshold": 0.7}))
    settings.FACE_MODEL_PATH = str(tmp_path)
    assert inference.configured_model_version() == "v-from-manifest"


def test_configured_model_version_without_a_manifest_is_unavailable(settings, tmp_path):
    settings.FACE_MODEL_PATH = str(tmp_path)
    with pytest.raises(ModelUnavailable):
        inference.configured_model_version()


def test_model_info_threshold_for_a_reference_count():
    info = inference.ModelInfo(version="v", threshold=0.8, thresholds=((1, 0.8), (2, 0.7), (3, 0.6)))
    assert [info.threshold_for(k) for k in (1, 2, 3, 7)] == [0.8, 0.7, 0.6, 0.6]
    assert info.threshold_for(0) == 0.8
    assert inference.ModelInfo(version="v", threshold=0.5).threshold_for(3) == 0.5


def _door_frame_bytes(photo: str, *, left: int = 195) -> bytes:
    import cv2

    frame = np.full((480, 640, 3), 110, np.uint8)
    frame[115:365, left : left + 250] = ml.read_image(str(FACES / photo))
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


def test_faces_embedded_together_get_what_each_gets_alone(model):
    # The real detector and face policy; only the network is the counting model.
    frames = [
        _door_frame_bytes("person_a_1.jpg"),
        b"not an image",
        np.full(10, 7, np.uint8).tobytes(),
        _door_frame_bytes("person_b_1.jpg", left=300),
        image_bytes(),  # a small frame of another size: detected in its own group
    ]
    together = inference.embed_faces(frames)
    assert len(together) == len(frames)
    for data, result in zip(frames, together):
        try:
            alone = inference.embed_face(data)
        except inference.FaceRejected as rejected:
            assert isinstance(result, inference.FaceRejected) and result.reason == rejected.reason
            continue
        assert isinstance(result, inference.FaceEmbedding)
        assert np.array_equal(result.crop, alone.crop)
        assert set(result.timings) == {"decode_ms", "detect_ms", "embed_ms"}
    assert [type(r).__name__ for r in together[:4]] == ["FaceEmbedding", "FaceRejected", "FaceRejected", "FaceEmbedding"]
    assert together[1].reason == together[2].reason == "unreadable_image"
