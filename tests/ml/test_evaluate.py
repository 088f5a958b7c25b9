"""Evaluation writes the report, the ROC picture and the manifest's test report; never moves the threshold."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from ml.evaluate import evaluate
from ml.inference import MANIFEST_FILE, MODEL_FILE
from ml.model import build_siamese, build_tower


FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


def _tiny_model_dir(tmp_path: Path) -> Path:
    keras.utils.set_random_seed(0)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    build_siamese(build_tower(widths=(8, 8, 8, 8), embedding_dim=16, dropout=0.0)).save(model_dir / MODEL_FILE)
    (model_dir / MANIFEST_FILE).write_text(json.dumps({"version": "tiny-eval", "threshold": 0.5}))
    return model_dir


def test_evaluate_reports_calibrate_and_test_pairs_at_the_manifest_threshold(fake_lfw, tmp_path):
    root, paths = fake_lfw
    model_dir = _tiny_model_dir(tmp_path)
    cache = tmp_path / "cache.npz"
    rng = np.random.default_rng(0)
    np.savez(cache, crops=rng.integers(0, 256, (len(paths), 116, 116, 3), dtype=np.uint8), paths=paths,
             detected=np.ones(len(paths), bool), fingerprint=np.array("fake"))

    report = evaluate(root, model_dir, cache_path=cache)

    assert report["threshold"] == 0.5 and report["model_version"] == "tiny-eval"
    assert report["calibrate"]["pairs"] == 2 and report["test"]["pairs"] == 4
    assert 0.0 <= report["test"]["roc_auc"] <= 1.0
    assert json.loads((model_dir / "report.json").read_text()) == report
    assert (model_dir / "roc.png").read_bytes().startswith(b"\x89PNG")
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    assert manifest["threshold"] == 0.5
    assert manifest["test_report"] == {**report["test"], "large_sample": report["test_large_sample"]}
    large = report["test_large_sample"]
    # Test people P32..P35: two with 3 photos, two with 1 -> 8 images, 6 same-person and 22 cross pairs.
    assert (large["images"], large["genuine_pairs"], large["impostor_pairs"]) == (8, 6, 22)
    assert set(large["tar_at_far"]) == {"0.001", "0.0001"}
    assert large["at_shipped_threshold"]["threshold"] == 0.5


def test_evaluate_without_a_cache_detects_and_aligns_the_pair_images(fake_lfw, tmp_path):
    root, paths = fake_lfw
    photos = sorted(FACES.glob("person_*.jpg"))
    for i, path in enumerate(paths):  # real face photos in place of the placeholders
        (root / "images" / path).write_bytes(photos[i % len(photos)].read_bytes())
    model_dir = _tiny_model_dir(tmp_path)

    report = evaluate(root, model_dir)

    assert report["test"]["pairs"] == 4 and len(report["data_fingerprint_sha256"]) == 64
