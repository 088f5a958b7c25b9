"""The training loop end to end on a tiny seeded model and a fake crop cache (seconds, no LFW)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import ml
from ml.train import TrainConfig, train

TINY = TrainConfig(
    steps=4, identities_per_batch=4, singletons_per_batch=2, widths=(8, 8, 8, 8), embedding_dim=128,
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
    # Ready teacher targets, as ml.teacher would write them (training people only), so no dlib runs.
    rows = np.flatnonzero([int(p[1:3]) < 30 or int(p[1:3]) > 35 for p in paths.tolist()])
    np.savez(work / "teacher_dlib.npz", rows=rows, targets=rng.normal(0.1, 1.0, (len(rows), 128)).astype(np.float32),
             detected=np.ones(len(rows), bool), fingerprint=np.array("fake"), teacher=np.array("fake"))
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
    assert embeddings.shape == (2, 128)
    assert (work_dir / "best.weights.h5").exists()
    # The operating point: per reference count, chosen for the target FAR on fold 8's trials.
    operating = manifest["operating_point"]
    assert operating["target_far"] == 1e-3 and manifest["threshold"] == operating["thresholds"]["1"]
    for k, expected in operating["expected"].items():
        assert expected["threshold"] == operating["thresholds"][k]
        assert expected["far"] <= 1e-3 and len(expected["far_ci95"]) == 2 and len(expected["frr_ci95"]) == 2
    assert model.threshold_for(1) == operating["thresholds"]["1"]
    assert isinstance(manifest["scoring"]["cohort_norm"], bool)
    assert manifest["scoring"]["cohort_norm"] == model.scorer.normalised
    assert np.load(out / "cohort.npy").shape[1] == 128


def test_distillation_targets_are_never_computed_for_held_out_people(fake_lfw):
    from ml.teacher import HeldOutImage, teacher_descriptors

    root, _ = fake_lfw
    with pytest.raises(HeldOutImage, match="P30"):
        teacher_descriptors(root, ["P00/P00_0001.jpg", "P30/P30_0001.jpg"], frozenset({"P30"}))


def test_a_model_is_reproducible_from_its_manifest_config(fake_lfw, work_dir, tmp_path):
    root, _ = fake_lfw
    out = train(TINY, lfw_dir=root, output_dir=tmp_path / "model", work_dir=work_dir, version="tiny-0")
    assert TrainConfig.from_manifest(out / "manifest.json") == TINY
    shipped_v1 = TrainConfig.from_manifest(ml.inference.SHIPPED_MODEL_DIR.parent / "siamese-lfw" / "manifest.json")
    assert shipped_v1.distill_weight == 0.0 and shipped_v1.relational_weight == 0.0
    assert TrainConfig.from_manifest(ml.inference.SHIPPED_MODEL_DIR / "manifest.json").teacher_views == 0


def test_training_resumes_from_its_last_checkpoint(fake_lfw, work_dir, tmp_path, caplog):
    root, _ = fake_lfw
    train(TINY, lfw_dir=root, output_dir=tmp_path / "first", work_dir=work_dir, version="tiny-1")
    longer = TrainConfig(**{**TINY.__dict__, "steps": 6})
    with caplog.at_level(logging.INFO, logger="ml.train"):
        train(longer, lfw_dir=root, output_dir=tmp_path / "second", work_dir=work_dir, version="tiny-2")
    assert any("resumed from" in r.getMessage() and "step 4" in r.getMessage() for r in caplog.records)


def test_a_run_with_teacher_views_trains_on_the_cached_views(fake_lfw, work_dir, tmp_path, caplog):
    from dataclasses import replace

    root, _ = fake_lfw
    with np.load(work_dir / "teacher_dlib.npz") as clean:
        rows = clean["rows"]
    # Ready view targets, as ml.teacher.build_teacher_views would write them, so no dlib runs.
    views = np.random.default_rng(1).normal(0.1, 1.0, (len(rows), 2, 128)).astype(np.float32)
    np.savez(work_dir / f"teacher_dlib_views2_seed{TINY.seed}.npz", rows=rows, targets=views, seed=np.array(TINY.seed),
             teacher=np.array("fake"))
    config = replace(TINY, teacher_views=2, view_fraction=0.5)
    with caplog.at_level(logging.INFO, logger="ml.train"):
        out = train(config, lfw_dir=root, output_dir=tmp_path / "model", work_dir=work_dir, version="tiny-views")
    assert any("shows 2 teacher views per face" in r.getMessage() for r in caplog.records)
    assert TrainConfig.from_manifest(out / "manifest.json") == config


def test_negative_curriculum_hardens_from_random_to_the_maximum():
    config = TrainConfig(steps=100, max_negative_candidates=32, negative_ramp_fraction=0.5)
    values = [config.negative_candidates(step) for step in range(100)]
    assert values[0] == 1 and values[-1] == 32 and values == sorted(values)


def test_a_run_warm_starts_from_another_models_weights(fake_lfw, work_dir, tmp_path, caplog):
    import shutil
    from dataclasses import replace

    import keras

    root, _ = fake_lfw
    first = train(TINY, lfw_dir=root, output_dir=tmp_path / "first", work_dir=work_dir, version="tiny-1")
    fresh = tmp_path / "fresh-work"  # no checkpoints: the weights can only come from init_from
    fresh.mkdir()
    for name in (f"lfw_cache_m{TINY.cache_margin}.npz", "teacher_dlib.npz"):
        shutil.copy(work_dir / name, fresh / name)
    warm = replace(TINY, init_from=str(first), batch_seed=7, learning_rate=0.0, warmup_steps=0)
    with caplog.at_level(logging.INFO, logger="ml.train"):
        second = train(warm, lfw_dir=root, output_dir=tmp_path / "second", work_dir=fresh, version="tiny-2")
    assert any("warm start from" in r.getMessage() for r in caplog.records)
    assert TrainConfig.from_manifest(second / "manifest.json") == warm
    # With a zero learning rate the continued model keeps the first one's trainable weights (batch
    # norm's running statistics still move).
    before = [w.numpy() for w in keras.models.load_model(first / "model.keras", compile=False).trainable_weights]
    after = [w.numpy() for w in keras.models.load_model(second / "model.keras", compile=False).trainable_weights]
    assert all(np.allclose(a, b) for a, b in zip(before, after, strict=True))


def _first_model_and_fresh_work_dir(root, work_dir, tmp_path):
    """A tiny trained model, and a work directory with its crop cache and teacher targets but no
    checkpoints: a second run there can only take the first's weights through ``init_from``."""
    import shutil

    first = train(TINY, lfw_dir=root, output_dir=tmp_path / "first", work_dir=work_dir, version="tiny-1")
    fresh = tmp_path / "fresh-work"
    fresh.mkdir()
    for name in (f"lfw_cache_m{TINY.cache_margin}.npz", "teacher_dlib.npz"):
        shutil.copy(work_dir / name, fresh / name)
    return first, fresh


def test_a_wider_run_warm_starts_from_a_narrower_model(fake_lfw, work_dir, tmp_path, caplog):
    from dataclasses import replace

    import keras

    from ml.model import HEAD_NAME, TOWER_NAME

    root, _ = fake_lfw
    first, fresh = _first_model_and_fresh_work_dir(root, work_dir, tmp_path)
    wider = replace(TINY, widths=(8, 12, 16, 16), init_from=str(first), batch_seed=7, learning_rate=0.0, warmup_steps=0)
    second = train(wider, lfw_dir=root, output_dir=tmp_path / "second", work_dir=fresh, version="tiny-2")
    narrow = keras.models.load_model(first / "model.keras", compile=False)
    wide = keras.models.load_model(second / "model.keras", compile=False)
    assert wide.get_layer(TOWER_NAME).get_layer("s2a_conv").get_weights()[0].shape[-1] == 12
    # The head comes over as it was; the tower's first channels keep their filters (only copies are added).
    assert np.allclose(wide.get_layer(HEAD_NAME).get_weights()[0], narrow.get_layer(HEAD_NAME).get_weights()[0])
    old_kernel = narrow.get_layer(TOWER_NAME).get_layer("stem_conv").get_weights()[0]
    assert np.allclose(wide.get_layer(TOWER_NAME).get_layer("stem_conv").get_weights()[0], old_kernel)


def test_train_command_overrides_config_fields_by_name():
    from ml.cli import _config_overrides

    overrides = _config_overrides(TINY, ["learning_rate=6e-4", "widths=8,16,16,32", "flip_average=false", "init_from=m/x"])
    assert overrides == {"learning_rate": 6e-4, "widths": (8, 16, 16, 32), "flip_average": False, "init_from": "m/x"}
    for bad in ("nonsense=1", "steps", "steps=many"):
        with pytest.raises(SystemExit, match="--set"):
            _config_overrides(TINY, [bad])


def test_a_deeper_run_warm_starts_from_a_shallower_model_and_serves(fake_lfw, work_dir, tmp_path):
    from dataclasses import replace

    import keras

    from ml.inference import load_model
    from ml.model import TOWER_NAME

    root, _ = fake_lfw
    first, fresh = _first_model_and_fresh_work_dir(root, work_dir, tmp_path)
    deeper = replace(TINY, residual_blocks=1, init_from=str(first), batch_seed=7)
    second = train(deeper, lfw_dir=root, output_dir=tmp_path / "second", work_dir=fresh, version="tiny-deep")
    tower = keras.models.load_model(second / "model.keras", compile=False).get_layer(TOWER_NAME)
    assert {"s2r1_conv", "s3r1_conv", "s4r1_conv"} <= {layer.name for layer in tower.layers}
    assert TrainConfig.from_manifest(second / "manifest.json").residual_blocks == 1
    # Trained blocks are no longer the identity, and the served (LiteRT) tower embeds with them.
    assert np.abs(tower.get_layer("s3r1_bn").gamma.numpy()).max() > 0
    faces = np.random.default_rng(0).integers(0, 256, (2, 100, 100, 3)).astype(np.uint8)
    assert load_model(second).embed(faces).shape == (2, TINY.embedding_dim)


def test_a_run_with_teacher_morphs_adds_them_to_the_distillation(fake_lfw, work_dir, tmp_path, caplog, monkeypatch):
    from dataclasses import replace

    import ml.teacher as teacher

    root, paths = fake_lfw
    built: list = []

    def build(lfw_dir, cache_paths, held_out, morphs, out_path, *, workers=1):
        built.append(morphs)  # ready targets, as build_teacher_morphs would write them, so no dlib runs
        targets = np.random.default_rng(2).normal(0.1, 1.0, (len(morphs.first), 128)).astype(np.float32)
        np.savez(out_path, first=morphs.first, second=morphs.second, alpha=morphs.alpha, targets=targets)

    monkeypatch.setattr(teacher, "build_teacher_morphs", build)
    config = replace(TINY, teacher_morphs=12, morphs_per_batch=3)
    with caplog.at_level(logging.INFO, logger="ml.train"):
        out = train(config, lfw_dir=root, output_dir=tmp_path / "model", work_dir=work_dir, version="tiny-morphs")
    assert any("adds 3 of 12 teacher morphs" in r.getMessage() for r in caplog.records)
    assert TrainConfig.from_manifest(out / "manifest.json") == config
    (morphs,) = built
    from ml.data import build_training_set
    from ml.lfw import read_protocol

    training = build_training_set(paths, read_protocol(root), val_people=TINY.val_people,
                                  val_pairs_per_class=TINY.val_pairs_per_class, seed=TINY.seed)
    validation = set(training.val_people)
    assert validation
    people = {paths[r].split("/")[0] for r in np.concatenate([morphs.first, morphs.second]).tolist()}
    assert not people & validation
    assert not people & {f"P{i}" for i in range(30, 36)}  # the fake held-out people


def test_cached_morphs_of_another_draw_are_refused(fake_lfw, work_dir, tmp_path):
    from dataclasses import replace

    root, _ = fake_lfw
    config = replace(TINY, teacher_morphs=4)
    stale = np.arange(4)
    np.savez(work_dir / f"teacher_dlib_morphs4_seed{TINY.seed}.npz", first=stale, second=stale, alpha=np.full(4, 0.5, np.float32),
             targets=np.ones((4, 128), np.float32))
    with pytest.raises(ValueError, match="other morphs"):
        train(config, lfw_dir=root, output_dir=tmp_path / "model", work_dir=work_dir, version="tiny-stale")
