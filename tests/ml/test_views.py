"""Teacher views: one seeded draw of camera conditions degrades the teacher's chip and the student's
crop alike, and training shows a view with that view's teacher target (no dlib, no LFW)."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from ml.augment import augment_batch
from ml.train import TrainConfig, training_batch
from ml.views import View, apply_view, draw_view, view_rng, views_of


def _face(side: int = 100) -> np.ndarray:
    """A smooth synthetic face-like image with fine detail (so blur and low resolution show)."""
    y, x = np.mgrid[0:side, 0:side] / side
    base = np.stack([120 + 80 * x, 100 + 60 * y, 90 + 40 * np.sin(6 * x * y)], axis=2)
    stripes = 40 * np.sin(2 * np.pi * x * side / 4.0)[..., None]
    return np.clip(base + stripes, 0, 255).astype(np.uint8)


def test_a_view_is_the_same_draw_wherever_it_is_made_and_differs_between_views():
    assert views_of(1337, 5, 3) == views_of(1337, 5, 3)
    assert views_of(1337, 5, 3)[0] == draw_view(view_rng(1337, 5, 1))
    assert len(set(views_of(1337, 5, 3))) == 3
    assert views_of(1337, 5, 1) != views_of(1337, 6, 1) and views_of(1337, 5, 1) != views_of(7, 5, 1)


def test_the_neutral_view_keeps_the_face_and_greyscale_or_low_light_change_it_as_named():
    face = _face()
    assert np.abs(apply_view(face, View()).astype(int) - face).max() <= 1
    grey = apply_view(face, View(greyscale=True))
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    assert apply_view(face, View(exposure=0.3)).mean() < 0.4 * face.mean()


def test_blur_and_low_resolution_scale_with_the_faces_width():
    """The teacher's chip holds a larger face: the same view must remove the same detail there."""
    face = _face(100)
    view = View(blur_sigma=1.2, low_side=40)
    student = apply_view(face, view).astype(float)
    big = cv2.resize(face, (171, 171), interpolation=cv2.INTER_CUBIC)
    scaled = cv2.resize(apply_view(big, view, 171.0), (100, 100), interpolation=cv2.INTER_AREA).astype(float)
    unscaled = cv2.resize(apply_view(big, view, 100.0), (100, 100), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(scaled - student).mean() < 0.5 * np.abs(unscaled - student).mean()


def test_views_lean_toward_the_robustness_conditions():
    drawn = [draw_view(view_rng(1, row, 1)) for row in range(400)]
    assert 0.15 < np.mean([v.greyscale for v in drawn]) < 0.35
    assert 0.15 < np.mean([v.exposure < 1 for v in drawn]) < 0.35
    assert 0.2 < np.mean([v.low_side > 0 for v in drawn]) < 0.4
    assert all(v.low_side == 0 or v.blur_sigma == 0 for v in drawn)


@pytest.fixture
def batch_inputs():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (6, 116, 116, 3), dtype=np.uint8)
    teacher = rng.normal(size=(6, 128)).astype(np.float32)
    views = rng.normal(size=(6, 3, 128)).astype(np.float32)
    return crops, np.array([4, 1, 1, 5]), teacher, views


def test_without_views_a_batch_is_plain_augmentation_with_clean_targets(batch_inputs):
    crops, rows, teacher, views = batch_inputs
    config = TrainConfig()
    images, targets = training_batch(crops, rows, teacher, None, config, np.random.default_rng(3))
    assert np.array_equal(images, augment_batch(crops[rows], config.cache_margin, np.random.default_rng(3)))
    assert np.array_equal(targets, teacher[rows])
    # A view fraction of zero draws the same batch as no views at all.
    same, same_targets = training_batch(crops, rows, teacher, views, replace(config, view_fraction=0.0), np.random.default_rng(3))
    assert np.array_equal(same, images) and np.array_equal(same_targets, targets)


def test_a_face_shown_under_a_view_gets_that_views_teacher_target(batch_inputs):
    crops, rows, teacher, views = batch_inputs
    config = replace(TrainConfig(), teacher_views=3, view_fraction=1.0)
    images, targets = training_batch(crops, rows, teacher, views, config, np.random.default_rng(3))
    plain = augment_batch(crops[rows], config.cache_margin, np.random.default_rng(3))
    for i, row in enumerate(rows.tolist()):
        index = next(j for j in range(3) if np.array_equal(targets[i], views[row, j]))  # a view of its own row
        view = draw_view(view_rng(config.seed, row, index + 1))
        assert not np.array_equal(images[i], plain[i])
        if view.greyscale:  # the view's conditions reached the image
            assert np.array_equal(images[i][..., 0], images[i][..., 2])


def test_teacher_views_are_computed_only_for_training_people(fake_lfw, monkeypatch):
    import ml.teacher as teacher

    root, paths = fake_lfw
    asked: list[str] = []

    def describe(lfw_dir, chunk, rows, count, seed):
        asked.extend(chunk)
        return np.ones((len(chunk), count, teacher.TEACHER_DIM), np.float32), np.ones(len(chunk), bool)

    monkeypatch.setattr(teacher, "_describe_views", describe)
    held_out = frozenset({f"P{i}" for i in range(30, 36)})
    out = teacher.build_teacher_views(root, paths, held_out, root / "views.npz", count=2, seed=1)
    assert asked and not any(p.split("/")[0] in held_out for p in asked)
    with np.load(out) as data:
        assert data["targets"].shape == (len(asked), 2, 128)
        assert not any(paths[r].split("/")[0] in held_out for r in data["rows"].tolist())


def _describe_numbers(lfw_dir, paths, rows, scale):
    return np.asarray([float(p) for p in paths]) * scale, np.asarray(rows) % 2 == 0


def test_teacher_work_split_over_processes_comes_back_in_the_images_order():
    from ml.teacher import _in_processes

    paths, rows = [str(n) for n in range(11)], list(range(100, 111))
    alone = _in_processes(_describe_numbers, "unused", [paths, rows], (2.0,), workers=1)
    split = _in_processes(_describe_numbers, "unused", [paths, rows], (2.0,), workers=3)
    assert np.array_equal(alone[0], np.arange(11) * 2.0) and np.array_equal(alone[1], np.arange(100, 111) % 2 == 0)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(alone, split, strict=True))
