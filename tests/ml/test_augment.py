"""Augmentation keeps shapes and is repeatable from its seed; centre crop is the aligned face."""

from __future__ import annotations

import numpy as np

from ml.augment import augment_batch, center_crop


def _crops(n: int = 6, side: int = 116) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)


def test_augmented_batch_is_face_sized_uint8_and_seeded():
    crops = _crops()
    first = augment_batch(crops, 8, np.random.default_rng(5))
    again = augment_batch(crops, 8, np.random.default_rng(5))
    other = augment_batch(crops, 8, np.random.default_rng(6))
    assert first.shape == (6, 100, 100, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_center_crop_removes_the_margin():
    crops = _crops(2)
    assert np.array_equal(center_crop(crops, 8), crops[:, 8:108, 8:108])
    assert center_crop(crops[:, 8:108, 8:108], 0).shape == (2, 100, 100, 3)
