"""MTCNN's box arithmetic in NumPy (ml.boxes) against what mtcnn 1.0 and TensorFlow compute."""

from __future__ import annotations

import numpy as np
import pytest

from ml import boxes


def test_patches_are_sampled_where_tensorflows_crop_and_resize_samples_them():
    import tensorflow as tf

    rng = np.random.default_rng(3)
    frames = rng.uniform(-1, 1, (2, 37, 53, 3)).astype(np.float32)
    rows = np.array([
        [0, 5.3, 4.1, 29.7, 28.5, 0.9],     # inside
        [1, -6.0, -3.5, 20.2, 22.7, 0.9],   # over the top-left edge: zeros there
        [0, 40.0, 20.0, 70.5, 50.5, 0.9],   # over the bottom-right edge
        [1, 10.0, 10.0, 10.5, 10.5, 0.9],   # smaller than a pixel
    ])
    height, width = frames.shape[1:3]
    normalised = rows[:, [2, 1, 4, 3]] / np.array([height, width, height, width])
    for size in (24, 48):
        expected = tf.image.crop_and_resize(frames, normalised, rows[:, 0].astype(int), (size, size)).numpy()
        assert np.abs(boxes.crop_patches(frames, rows, size) - expected).max() < 1e-5


def test_a_suppressed_box_still_suppresses_the_ones_after_it():
    # mtcnn 1.0's rule (not greedy NMS): B overlaps A and goes; C overlaps only B and goes too.
    rows = np.array([[0, 0, 0, 10, 10, 0.9], [0, 4, 0, 14, 10, 0.8], [0, 9, 0, 19, 10, 0.7], [1, 9, 0, 19, 10, 0.6]])
    kept = boxes.suppress(rows, 0.3, "union", sort=True)
    assert kept[:, 5].tolist() == [0.9, 0.6]  # frame 1's box is only compared with frame 1's


def test_min_overlap_suppresses_a_box_inside_a_larger_one():
    rows = np.array([[0, 0, 0, 20, 20, 0.9], [0, 5, 5, 10, 10, 0.8]])
    assert len(boxes.suppress(rows, 0.7, "union", sort=True)) == 2
    assert len(boxes.suppress(rows, 0.7, "min", sort=True)) == 1
    with pytest.raises(ValueError):
        boxes.overlap(rows[:, 1:5], "max")


def test_candidates_come_from_the_cells_above_the_threshold_regressed_and_best_first():
    probability = np.zeros((1, 3, 4), np.float32)
    probability[0, 1, 2], probability[0, 2, 0] = 0.7, 0.95
    offsets = np.zeros((1, 3, 4, 4), np.float32)
    offsets[0, 1, 2] = [0.1, 0.0, -0.1, 0.0]
    found = boxes.candidate_boxes(offsets, probability, 0.6)
    assert found[:, 5].tolist() == pytest.approx([0.95, 0.7])
    assert found[0, 1:5].tolist() == [1, 5, 12, 16]  # cell (row 2, col 0): 2-px stride, 12-px window
    assert found[1, 1:5].tolist() == pytest.approx([5 + 1.1, 3, 16 - 1.1, 14])


def test_json_rounds_to_whole_pixels_and_names_the_landmarks():
    row = np.array([[0, 10.4, 20.6, 50.5, 70.4, 0.99, 20, 40, 30, 22, 38, 30.4, 30, 45, 55, 56]])
    [[face]] = boxes.boxes_to_json(row, 1)
    assert face["box"] == [10, 21, 40, 50] and face["confidence"] == pytest.approx(0.99)
    assert face["keypoints"] == {"left_eye": [20, 30], "right_eye": [40, 30], "nose": [30, 45],
                                 "mouth_left": [22, 55], "mouth_right": [38, 56]}
    assert boxes.boxes_to_json(row, 2)[1] == []
