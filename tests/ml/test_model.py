"""The Siamese network on tiny seeded models: shapes, normalisation, save/load, NumPy scoring."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import ml
from ml.inference import MANIFEST_FILE, MODEL_FILE, ModelError, load_model
from ml.layers import L1Distance
from ml.model import HEAD_NAME, build_siamese, build_tower, count_multiply_adds


@pytest.fixture(scope="module")
def tiny_siamese():
    keras.utils.set_random_seed(0)
    tower = build_tower(widths=(8, 8, 8, 8), embedding_dim=16, dropout=0.0, weight_decay=0.0)
    siamese = build_siamese(tower)
    siamese.get_layer(HEAD_NAME).set_weights([np.linspace(-2, 1, 16, dtype=np.float32)[:, None], np.array([0.3], np.float32)])
    return siamese


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_siamese, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-model")
    tiny_siamese.save(directory / MODEL_FILE)
    (directory / MANIFEST_FILE).write_text(json.dumps({"version": "tiny-1", "threshold": 0.42, "inference": {"flip_average": False}}))
    return directory


def _faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 100, 100, 3), dtype=np.uint8)


def test_tower_embeds_uint8_faces_to_unit_vectors(tiny_siamese):
    tower = tiny_siamese.get_layer("tower")
    embeddings = np.asarray(tower(_faces(3), training=False))
    assert embeddings.shape == (3, 16)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_default_tower_is_compact():
    tower = build_tower()
    assert tower.output_shape == (None, 128)
    assert 40e6 <= count_multiply_adds(tower) <= 100e6  # multiply-adds per face
    assert tower.count_params() < 2_000_000


def test_l1_distance_layer_round_trips_through_save_and_load(tmp_path):
    a, b = keras.Input((4,)), keras.Input((4,))
    model = keras.Model([a, b], L1Distance(name="l1")([a, b]))
    model.save(tmp_path / "l1.keras")
    reloaded = keras.models.load_model(tmp_path / "l1.keras")
    x, y = np.array([[1.0, -2.0, 3.0, 0.0]]), np.array([[0.5, 2.0, -1.0, 0.0]])
    assert isinstance(reloaded.get_layer("l1"), L1Distance)
    assert np.allclose(reloaded([x, y]), [[0.5, 4.0, 4.0, 0.0]])


def test_saved_siamese_reloads_with_identical_outputs(tiny_siamese, tiny_model_dir):
    reloaded = keras.models.load_model(tiny_model_dir / MODEL_FILE)
    a, b = _faces(2, 1), _faces(2, 2)
    assert np.allclose(tiny_siamese([a, b], training=False), reloaded([a, b], training=False), atol=1e-6)


def test_numpy_score_equals_the_keras_siamese_output(tiny_siamese, tiny_model_dir):
    model = load_model(tiny_model_dir)
    probe_face, reference_faces = _faces(1, 3), _faces(5, 4)
    probe, references = model.embed(probe_face)[0], model.embed(reference_faces)
    expected = np.asarray(tiny_siamese([np.repeat(probe_face, 5, axis=0), reference_faces], training=False))[:, 0]
    scores = model.score(probe, references)
    assert scores.dtype == np.float32 and scores.shape == (5,)
    assert np.allclose(scores, expected, atol=1e-5)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_loaded_model_exposes_manifest_and_is_cached(tiny_model_dir):
    model = ml.load_model(tiny_model_dir)
    assert model.version == "tiny-1" and model.threshold == pytest.approx(0.42)
    assert model.manifest["version"] == "tiny-1"
    assert ml.load_model(str(tiny_model_dir)) is model
    model.warm_up()
    assert model.embed(np.zeros((0, 100, 100, 3), np.uint8)).shape == (0, 16)


def test_flip_averaged_embedding_is_mirror_invariant(tiny_model_dir, tmp_path):
    for name in (MODEL_FILE,):
        (tmp_path / name).write_bytes((tiny_model_dir / name).read_bytes())
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"version": "tiny-flip", "threshold": 0.5}))
    model = load_model(tmp_path)
    faces = _faces(2, 5)
    assert np.allclose(model.embed(faces), model.embed(faces[:, :, ::-1]), atol=1e-5)
    assert np.allclose(np.linalg.norm(model.embed(faces), axis=1), 1.0, atol=1e-5)


def test_bad_inputs_get_clear_errors(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir)
    with pytest.raises(ValueError):
        model.embed(np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError):
        model.embed(np.zeros((1, 100, 100, 3), np.float32))
    with pytest.raises(ValueError):
        model.score(np.zeros(3, np.float32), np.zeros((2, 16), np.float32))
    with pytest.raises(ModelError):
        load_model(tmp_path / "missing")
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"version": "x", "threshold": 7}))
    with pytest.raises(ModelError):
        load_model(tmp_path)
