"""Losses: binary cross-entropy on Siamese pairs (the deployed head) and CosFace over identities.

CosFace (large-margin cosine loss, Wang et al. 2018) is an auxiliary metric-learning loss on the
L2-normalised embeddings; it shapes the embedding space far better than pairs alone on small data.
The deployed decision stays the sigmoid head trained with BCE.
"""

from __future__ import annotations

import tensorflow as tf


def pair_bce(logits: tf.Tensor, same: tf.Tensor) -> tf.Tensor:
    """Mean binary cross-entropy of head logits against 1 (same) / 0 (different)."""
    labels = tf.cast(same, logits.dtype)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def cosface(embeddings: tf.Tensor, labels: tf.Tensor, class_weights: tf.Tensor, *, scale: float, margin: float) -> tf.Tensor:
    """Mean CosFace loss: softmax over ``scale * (cos(theta) - margin * onehot)``.

    ``embeddings`` (B, D) are expected L2-normalised; ``class_weights`` (C, D) are normalised here.
    """
    centres = tf.math.l2_normalize(class_weights, axis=1)
    cosine = tf.matmul(embeddings, centres, transpose_b=True)
    onehot = tf.one_hot(labels, tf.shape(centres)[0], dtype=cosine.dtype)
    logits = scale * (cosine - margin * onehot)
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=logits))


def head_logits(first: tf.Tensor, second: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    """The Siamese head before its sigmoid: ``|a - b| . w + b`` (L1Distance then Dense(1))."""
    return tf.squeeze(tf.matmul(tf.abs(first - second), kernel), axis=1) + bias[0]


def select_negatives(anchors: tf.Tensor, anchor_labels: tf.Tensor, pool: tf.Tensor, pool_labels: tf.Tensor,
                     candidates: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """For each anchor, index into ``pool`` of a different-identity negative.

    ``candidates`` random different-identity rows are drawn per anchor and the most similar one is
    taken: 1 means a random negative, larger values mean harder negatives (the curriculum raises
    it as training goes on).
    """
    similarity = tf.matmul(tf.stop_gradient(anchors), tf.stop_gradient(pool), transpose_b=True)
    valid = tf.not_equal(anchor_labels[:, None], pool_labels[None, :])
    noise = tf.random.stateless_uniform(tf.shape(similarity), seed=seed)
    noise = tf.where(valid, noise, 2.0)  # invalid rows sort last
    rank = tf.argsort(tf.argsort(noise, axis=1), axis=1)
    eligible = tf.logical_and(valid, rank < tf.cast(candidates, rank.dtype))
    masked = tf.where(eligible, similarity, -1e9)
    return tf.argmax(masked, axis=1, output_type=tf.int32)
