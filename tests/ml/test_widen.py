"""Net2WiderNet: a wider tower started from a narrower one computes the same embedding."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ml.model import build_tower
from ml.widen import widen_into

NARROW, WIDE = (8, 8, 12, 16), (8, 12, 20, 24)


@pytest.fixture(scope="module")
def narrow_tower():
    keras.utils.set_random_seed(1)
    tower = build_tower(widths=NARROW, embedding_dim=16, dropout=0.0, weight_decay=0.0)
    # Non-trivial BatchNorm statistics, as a trained tower has.
    faces = np.random.default_rng(2).integers(0, 256, (32, 100, 100, 3)).astype(np.uint8)
    for layer in tower.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape), beta + rng.normal(0, 0.1, beta.shape),
                               mean + rng.normal(0, 0.1, mean.shape), var * rng.uniform(0.5, 2, var.shape)])
    return tower, faces


def _wide(narrow, noise: float):
    tower = build_tower(widths=WIDE, embedding_dim=16, dropout=0.0, weight_decay=0.0)
    widen_into(narrow, tower, noise=noise, seed=3)
    return tower


def test_widened_tower_computes_the_same_embedding(narrow_tower):
    narrow, faces = narrow_tower
    wide = _wide(narrow, noise=0.0)
    assert wide.count_params() > narrow.count_params()
    for training in (False, True):  # copies keep their original's batch statistics too
        np.testing.assert_allclose(wide(faces, training=training).numpy(), narrow(faces, training=training).numpy(),
                                   atol=2e-5)


def test_noise_breaks_the_copies_symmetry_but_keeps_the_embedding_close(narrow_tower):
    narrow, faces = narrow_tower
    exact, noisy = _wide(narrow, noise=0.0), _wide(narrow, noise=0.05)
    kernel = noisy.get_layer("s4a_conv").get_weights()[0]
    # Every added channel differs from the channel it copied.
    exact_kernel = exact.get_layer("s4a_conv").get_weights()[0]
    added = slice(NARROW[3], WIDE[3])
    assert np.all(np.abs(kernel[..., added] - exact_kernel[..., added]).reshape(-1, WIDE[3] - NARROW[3]).max(0) > 0)
    cosine = np.sum(noisy(faces, training=False).numpy() * narrow(faces, training=False).numpy(), axis=1)
    assert cosine.min() > 0.95


def test_a_narrower_target_is_refused(narrow_tower):
    narrow, _ = narrow_tower
    smaller = build_tower(widths=(8, 8, 8, 8), embedding_dim=16, dropout=0.0, weight_decay=0.0)
    with pytest.raises(ValueError, match="cannot narrow"):
        widen_into(narrow, smaller)


@pytest.mark.parametrize("widths", [NARROW, WIDE])
def test_a_deepened_tower_computes_the_same_embedding_and_its_blocks_can_learn(narrow_tower, widths):
    narrow, faces = narrow_tower
    deep = build_tower(widths=widths, embedding_dim=16, dropout=0.0, weight_decay=0.0, residual_blocks=2)
    widen_into(narrow, deep, noise=0.0, seed=3)
    assert {f"s{stage}r{block}_conv" for stage in (2, 3, 4) for block in (1, 2)} <= {layer.name for layer in deep.layers}
    for training in (False, True):  # new blocks add exactly zero until trained
        np.testing.assert_allclose(deep(faces, training=training).numpy(), narrow(faces, training=training).numpy(),
                                   atol=2e-5)
    # The zero BatchNorm scale still gets a gradient, so a block does not stay the identity for ever.
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(deep(faces[:4], training=True)[:, 0])
    gamma = deep.get_layer("s3r1_bn").gamma
    assert float(tf.reduce_max(tf.abs(tape.gradient(loss, gamma)))) > 0


def test_a_shallower_target_is_refused(narrow_tower):
    narrow, _ = narrow_tower
    deep = build_tower(widths=NARROW, embedding_dim=16, dropout=0.0, weight_decay=0.0, residual_blocks=1)
    with pytest.raises(ValueError, match="lacks the source's layers"):
        widen_into(deep, narrow)
