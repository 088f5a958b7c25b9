"""Losses and negative selection against NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ml.losses import cosface, head_logits, pair_bce, select_negatives


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_pair_bce_matches_numpy():
    logits = np.array([2.0, -1.0, 0.5, -3.0], dtype=np.float32)
    same = np.array([1, 0, 0, 1], dtype=np.float32)
    p = 1.0 / (1.0 + np.exp(-logits))
    expected = -np.mean(same * np.log(p) + (1 - same) * np.log(1 - p))
    assert float(pair_bce(tf.constant(logits), tf.constant(same))) == pytest.approx(expected, rel=1e-5)


def test_cosface_matches_numpy():
    rng = np.random.default_rng(0)
    embeddings = _unit(rng.normal(size=(6, 8))).astype(np.float32)
    weights = rng.normal(size=(4, 8)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 1, 0])
    cosine = embeddings @ _unit(weights).T
    logits = 30.0 * (cosine - 0.3 * np.eye(4)[labels])
    log_softmax = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    expected = -np.mean(log_softmax[np.arange(6), labels])
    got = cosface(tf.constant(embeddings), tf.constant(labels), tf.constant(weights), scale=30.0, margin=0.3)
    assert float(got) == pytest.approx(expected, rel=1e-4)


def test_head_logits_is_dense_over_l1_distance():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)
    kernel, bias = rng.normal(size=(5, 1)).astype(np.float32), np.array([0.7], dtype=np.float32)
    expected = np.abs(a - b) @ kernel[:, 0] + 0.7
    assert np.allclose(head_logits(tf.constant(a), tf.constant(b), tf.constant(kernel), tf.constant(bias)), expected, atol=1e-5)


def test_negatives_are_other_identities_and_hardest_when_all_are_candidates():
    rng = np.random.default_rng(2)
    pool = _unit(rng.normal(size=(10, 4))).astype(np.float32)
    pool_labels = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    anchors, anchor_labels = pool[0::2], pool_labels[0::2]
    for candidates in (1, 3, 10):
        chosen = select_negatives(tf.constant(anchors), tf.constant(anchor_labels), tf.constant(pool),
                                  tf.constant(pool_labels), tf.constant(candidates), tf.constant([1, candidates])).numpy()
        assert (pool_labels[chosen] != anchor_labels).all()
    similarity = anchors @ pool.T
    similarity[anchor_labels[:, None] == pool_labels[None, :]] = -np.inf
    hardest = select_negatives(tf.constant(anchors), tf.constant(anchor_labels), tf.constant(pool),
                               tf.constant(pool_labels), tf.constant(10), tf.constant([3, 4])).numpy()
    assert np.array_equal(hardest, similarity.argmax(axis=1))
