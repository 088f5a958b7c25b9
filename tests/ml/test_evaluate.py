"""Evaluation writes the report, the ROC picture and the manifest's test report; never moves the threshold."""

from __future__ import annotations

import json

import keras
import numpy as np

from ml.evaluate import evaluate
from ml.inference import MANIFEST_FILE, MODEL_FILE
from ml.model import build_siamese, build_tower


def test_evaluate_reports_calibrate_and_test_pairs_at_the_manifest_threshold(fake_lfw, tmp_path):
    root, paths = fake_lfw
    keras.utils.set_random_seed(0)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    build_siamese(build_tower(widths=(8, 8, 8, 8), embedding_dim=16, dropout=0.0)).save(model_dir / MODEL_FILE)
    (model_dir / MANIFEST_FILE).write_text(json.dumps({"version": "tiny-eval", "threshold": 0.5}))
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
    assert manifest["test_report"] == report["test"] and manifest["threshold"] == 0.5
