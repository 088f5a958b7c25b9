"""The training loop end to end on a tiny seeded model and a fake crop cache (seconds, no LFW)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import ml
from ml.train import TrainConfig, train

TINY = TrainConfig(
    steps=4, identities_per_batch=4, singletons_per_batch=2, widths=(8, 8, 8, 8), embedding_dim=16,
    warmup_steps=1, val_people=2, val_pairs_per_class=4, eval_every=2, checkpoint_every=2, max_negative_candidates=4,
)


@pytest.fixture
def work_dir(fake_lfw, tmp_path):
    _, paths = fake_lfw
    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    side = 100 + 2 * TINY.cache_margin
    # A ready cache, as ml.preprocess would write it, so the test does not run the detector.
    np.savez(work / f"lfw_cache_m{TINY.cache_margin}.npz", crops=rng.integers(0, 256, (len(paths), side, side, 3), dtype=np.uint8),
             paths=paths, detected=np.ones(len(paths), bool), fingerprint=np.array("fake"))
    return work


def test_training_writes_a_loadable_calibrated_model_directory(fake_lfw, work_dir, tmp_path):
    root, _ = fake_lfw
    out = train(TINY, lfw_dir=root, output_dir=tmp_path / "model", work_dir=work_dir, version="tiny-0")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["version"] == "tiny-0" and 0.0 <= manifest["threshold"] <= 1.0
    assert manifest["training"]["config"]["seed"] == TINY.seed and manifest["data"]["fingerprint_sha256"] == "fake"
    assert manifest["calibration"]["pairs"] == 2  # fold 8 only
    model = ml.load_model(out)
    assert model.threshold == manifest["threshold"]
    embeddings = model.embed(np.zeros((2, 100, 100, 3), np.uint8))
    assert embeddings.shape == (2, 16)
    assert (work_dir / "best.weights.h5").exists()


def test_training_resumes_from_its_last_checkpoint(fake_lfw, work_dir, tmp_path, caplog):
    root, _ = fake_lfw
    train(TINY, lfw_dir=root, output_dir=tmp_path / "first", work_dir=work_dir, version="tiny-1")
    longer = TrainConfig(**{**TINY.__dict__, "steps": 6})
    with caplog.at_level(logging.INFO, logger="ml.train"):
        train(longer, lfw_dir=root, output_dir=tmp_path / "second", work_dir=work_dir, version="tiny-2")
    assert any("resumed from" in r.getMessage() and "step 4" in r.getMessage() for r in caplog.records)


def test_negative_curriculum_hardens_from_random_to_the_maximum():
    config = TrainConfig(steps=100, max_negative_candidates=32, negative_ramp_fraction=0.5)
    values = [config.negative_candidates(step) for step in range(100)]
    assert values[0] == 1 and values[-1] == 32 and values == sorted(values)
