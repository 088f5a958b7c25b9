"""Teacher morphs: blends of two training people's faces, described by the teacher once and shown to the
student in the distillation losses only (no dlib, no LFW)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ml.augment import augment_batch
from ml.morphs import ALPHA_RANGE, blend, draw_morphs
from ml.train import MorphTargets, TrainConfig, morph_batch


def test_morphs_pair_two_different_people_among_the_given_rows_only():
    rows = np.array([10, 11, 12, 20, 21, 30])
    labels = np.array([0, 0, 0, 1, 1, 2])
    morphs = draw_morphs(rows, labels, 500, seed=3)
    label_of = dict(zip(rows.tolist(), labels.tolist()))
    assert set(morphs.first.tolist()) | set(morphs.second.tolist()) <= set(rows.tolist())
    assert all(label_of[a] != label_of[b] for a, b in zip(morphs.first.tolist(), morphs.second.tolist()))
    assert ALPHA_RANGE[0] <= morphs.alpha.min() and morphs.alpha.max() <= ALPHA_RANGE[1]
    again = draw_morphs(rows, labels, 500, seed=3)  # seeded: the cached teacher targets stay valid
    assert np.array_equal(again.first, morphs.first) and np.array_equal(again.alpha, morphs.alpha)
    assert not np.array_equal(draw_morphs(rows, labels, 500, seed=4).first, morphs.first)


def test_morphs_need_two_people():
    with pytest.raises(ValueError, match="two people"):
        draw_morphs(np.array([1, 2]), np.array([0, 0]), 5, seed=0)


def test_a_blend_weighs_each_face_by_its_alpha_image_by_image():
    first = np.full((2, 4, 4, 3), 200, np.uint8)
    second = np.zeros((2, 4, 4, 3), np.uint8)
    mixed = blend(first, second, np.array([0.25, 0.75], np.float32))
    assert mixed.dtype == np.uint8
    assert np.all(mixed[0] == 150) and np.all(mixed[1] == 50)
    assert np.array_equal(blend(first[0], second[0], 0.0), first[0])


def test_a_morph_batch_blends_its_pairs_and_carries_their_targets():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (6, 116, 116, 3), dtype=np.uint8)
    morphs = MorphTargets(first=np.array([0, 2, 4]), second=np.array([1, 3, 5]), alpha=np.array([0.3, 0.5, 0.7], np.float32),
                          targets=rng.normal(size=(3, 128)).astype(np.float32))
    config = replace(TrainConfig(), teacher_morphs=3, morphs_per_batch=4)
    images, targets = morph_batch(crops, morphs, config, np.random.default_rng(5))
    rng = np.random.default_rng(5)  # the same draws in the same order: the pairs, then the augmentation
    chosen = rng.integers(0, 3, size=4)
    assert np.array_equal(targets, morphs.targets[chosen])
    blended = blend(crops[morphs.first[chosen]], crops[morphs.second[chosen]], morphs.alpha[chosen])
    assert np.array_equal(images, augment_batch(blended, config.cache_margin, rng))
    none_images, none_targets = morph_batch(crops, None, TrainConfig(), np.random.default_rng(5))
    assert none_images.shape == (0, 100, 100, 3) and none_images.dtype == images.dtype
    assert none_targets.shape == (0, 128)


def test_teacher_morphs_refuse_held_out_people(fake_lfw):
    import ml.teacher as teacher
    from ml.morphs import Morphs

    root, paths = fake_lfw
    held_out = frozenset({paths[1].split("/")[0]})
    morphs = Morphs(np.array([0]), np.array([1]), np.array([0.5], np.float32))
    with pytest.raises(teacher.HeldOutImage):
        teacher.build_teacher_morphs(root, paths, held_out, morphs, root / "morphs.npz")
    assert not (root / "morphs.npz").exists()


def test_teacher_morph_targets_describe_each_pairs_blend_in_the_morphs_order(fake_lfw, monkeypatch, tmp_path):
    import ml.teacher as teacher
    from ml.morphs import Morphs

    root, paths = fake_lfw
    chips_seen: list[str] = []

    def chips(lfw_dir, chunk):  # a chip whose every pixel is the photo's position in ``paths``
        chips_seen.extend(chunk)
        index = [paths.tolist().index(p) for p in chunk]
        return np.stack([np.full((teacher.CHIP_SIZE, teacher.CHIP_SIZE, 3), i, np.uint8) for i in index]), np.ones(len(chunk), bool)

    class Descriptor:  # the blend's mean pixel as the descriptor
        def compute_face_descriptor(self, chip):
            return np.full(teacher.TEACHER_DIM, chip.mean(), np.float32)

    monkeypatch.setattr(teacher, "_chips", chips)
    monkeypatch.setattr(teacher, "_load_dlib", lambda: (None, None, None, Descriptor()))
    morphs = Morphs(np.array([4, 0, 8]), np.array([0, 8, 2]), np.array([0.5, 0.25, 1.0], np.float32))
    out = teacher.build_teacher_morphs(root, paths, frozenset(), morphs, tmp_path / "morphs.npz")
    assert sorted(chips_seen) == sorted(paths[[0, 2, 4, 8]].tolist())  # each photo's chip made once
    with np.load(out) as data:
        assert np.allclose(data["targets"][:, 0], [2.0, 2.0, 2.0])  # (4+0)/2, 0.75*0+0.25*8, 2
        assert np.array_equal(data["first"], morphs.first) and np.array_equal(data["alpha"], morphs.alpha)
