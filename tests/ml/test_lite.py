"""The networks as the worker runs them: TensorFlow Lite files on LiteRT, equal to the Keras networks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ml
from ml import convert
from ml.detector import DETECTOR_DIR, DETECTOR_FILES
from ml.inference import HEAD_FILE, MODEL_FILE, SHIPPED_MODEL_DIR, TOWER_LITE_FILE, FaceModel
from ml.lite import LiteNetwork

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


def _keras_only_copy(tmp_path: Path) -> Path:
    """The shipped model directory without its serving files: FaceModel falls back to model.keras."""
    copy = tmp_path / "keras-only"
    copy.mkdir()
    for item in SHIPPED_MODEL_DIR.iterdir():
        if item.name not in (TOWER_LITE_FILE, HEAD_FILE):
            (copy / item.name).symlink_to(item)
    return copy


def test_the_shipped_model_runs_on_litert_and_embeds_as_its_keras_network(tmp_path):
    faces = np.stack([ml.extract_face(ml.decode_image((FACES / name).read_bytes()))
                      for name in ("person_a_1.jpg", "person_a_2.jpg", "person_b_1.jpg")])
    lite, keras = FaceModel(SHIPPED_MODEL_DIR), FaceModel(_keras_only_copy(tmp_path))
    assert (lite.runtime, keras.runtime) == ("litert", "tensorflow")
    assert np.abs(lite.embed(faces) - keras.embed(faces)).max() < 1e-5
    assert np.array_equal(lite._head_w, keras._head_w) and lite._head_b == keras._head_b
    assert np.allclose(lite.score(lite.embed(faces)[0], lite.embed(faces)), keras.score(keras.embed(faces)[0], keras.embed(faces)),
                       atol=1e-5)


def test_the_committed_serving_files_are_the_shipped_networks_conversion(tmp_path):
    """tower.tflite and head.npz cannot drift from model.keras: converting again gives the same files' outputs."""
    import keras

    from ml import layers  # noqa: F401

    again = tmp_path / "again"
    again.mkdir()
    convert.write_serving_files(keras.models.load_model(SHIPPED_MODEL_DIR / MODEL_FILE, compile=False), again)
    faces = np.random.default_rng(0).integers(0, 256, (4, 100, 100, 3), dtype=np.uint8)
    committed, fresh = LiteNetwork(SHIPPED_MODEL_DIR / TOWER_LITE_FILE), LiteNetwork(again / TOWER_LITE_FILE)
    assert np.abs(committed(faces)[0] - fresh(faces)[0]).max() < 1e-6  # a converter patch release may reorder sums
    with np.load(SHIPPED_MODEL_DIR / HEAD_FILE) as shipped, np.load(again / HEAD_FILE) as made:
        assert np.array_equal(shipped["kernel"], made["kernel"]) and shipped["bias"] == made["bias"]


@pytest.mark.parametrize("stage,shape", [("StagePNet", (2, 61, 83, 3)), ("StageRNet", (5, 24, 24, 3)), ("StageONet", (3, 48, 48, 3))])
def test_the_committed_detector_networks_compute_what_mtcnns_keras_networks_compute(stage, shape):
    from mtcnn import MTCNN

    keras_net = next(s for s in MTCNN().stages if type(s).__name__ == stage)._model
    lite_net = LiteNetwork(DETECTOR_DIR / DETECTOR_FILES[stage])
    batch = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    expected = sorted((np.asarray(out) for out in keras_net(batch)), key=lambda out: out.shape[-1])
    got = sorted(lite_net(batch), key=lambda out: out.shape[-1])
    assert [out.shape for out in got] == [out.shape for out in expected]
    for a, b in zip(got, expected):
        assert np.abs(a - b).max() < 1e-4


def test_a_network_keeps_one_interpreter_per_input_shape_and_forgets_the_oldest():
    pnet = LiteNetwork(DETECTOR_DIR / "pnet.tflite", max_shapes=2)
    first = np.zeros((1, 40, 50, 3), np.float32)
    pnet(first)
    kept = pnet._by_shape[(1, 40, 50, 3)]
    pnet(first)
    assert pnet._by_shape[(1, 40, 50, 3)] is kept  # the same shape plans nothing again
    pnet(np.zeros((1, 30, 30, 3), np.float32))
    pnet(np.zeros((1, 20, 20, 3), np.float32))
    assert list(pnet._by_shape) == [(1, 30, 30, 3), (1, 20, 20, 3)]
    with pytest.raises(FileNotFoundError):
        LiteNetwork(DETECTOR_DIR / "missing.tflite")


def test_a_directory_with_neither_serving_files_nor_keras_network_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text('{"version": "x", "threshold": 0.5}')
    with pytest.raises(ml.ModelError, match="tower.tflite"):
        FaceModel(tmp_path)


def test_a_door_frame_is_decided_without_tensorflow_installed():
    """What the worker image runs: detect, align, embed and score with TensorFlow, Keras and mtcnn unimportable."""
    code = f"""
import sys
for name in ("tensorflow", "keras", "mtcnn"):
    sys.modules[name] = None  # any import of them now fails
import ml
model = ml.load_model()
a = ml.extract_face(ml.decode_image(open({str(FACES / 'person_a_1.jpg')!r}, 'rb').read()))
b = ml.extract_face(ml.decode_image(open({str(FACES / 'person_a_2.jpg')!r}, 'rb').read()))
c = ml.extract_face(ml.decode_image(open({str(FACES / 'person_b_1.jpg')!r}, 'rb').read()))
same, other = model.score(model.embed(a[None])[0], model.embed(__import__('numpy').stack([b, c])))
print(model.runtime, same > other)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["litert", "True"]


def test_a_padded_batch_gives_each_row_what_it_gets_alone_and_plans_powers_of_two():
    rnet = LiteNetwork(DETECTOR_DIR / "rnet.tflite", pad_batch=True)
    patches = np.random.default_rng(2).uniform(-1, 1, (5, 24, 24, 3)).astype(np.float32)
    together = rnet(patches)
    assert [out.shape[0] for out in together] == [5, 5]
    for row in range(5):
        alone = rnet(patches[row : row + 1])
        for a, b in zip(alone, together):
            assert np.allclose(a[0], b[row], atol=1e-6)
    assert sorted(shape[0] for shape in rnet._by_shape) == [1, 8]


def test_networks_are_created_with_the_thread_count_set_before(monkeypatch):
    from ai_edge_litert import interpreter as litert

    from ml import lite

    created = []
    real = litert.Interpreter

    def recording(*args, **kwargs):
        created.append(kwargs.get("num_threads"))
        return real(*args, **kwargs)

    monkeypatch.setattr(litert, "Interpreter", recording)
    monkeypatch.setattr(lite, "_threads", lite._threads)  # restored after the test
    lite.set_threads(3)
    LiteNetwork(DETECTOR_DIR / "rnet.tflite")(np.zeros((1, 24, 24, 3), np.float32))
    assert created[-1] == 3
    with pytest.raises(ValueError):
        lite.set_threads(0)
