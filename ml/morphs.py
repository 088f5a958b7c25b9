"""Teacher morphs: blends of two training people's aligned faces, labelled by the teacher alone.

LFW's training folds hold about 9,000 photos, so the student sees the teacher's face space only at
those points. A pixel blend of two different people's aligned faces is a face of nobody in the
data, lying between them; the teacher's descriptor of that blend says where it falls, so each morph
is one more point on which the student can match the teacher, in the region between identities
where impostor pairs are confused. Morphs have no identity: they take part only in the
distillation losses, never in CosFace or the pair losses.

Pairs are drawn among *training* rows only (never validation or held-out people), seeded, so the
teacher's targets can be computed once and cached (:func:`ml.teacher.build_teacher_morphs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA_RANGE = (0.2, 0.8)
"""Blend weights of the second face: far enough from either parent to be a new face."""


@dataclass(frozen=True)
class Morphs:
    first: np.ndarray  # (N,) cache rows
    second: np.ndarray  # (N,) cache rows of another person
    alpha: np.ndarray  # (N,) float32 weight of ``second``


def draw_morphs(rows: np.ndarray, labels: np.ndarray, count: int, *, seed: int) -> Morphs:
    """``count`` seeded pairs of cache ``rows`` of two different people (``labels``: one identity per row)."""
    rows, labels = np.asarray(rows, np.int64), np.asarray(labels)
    if len(rows) != len(labels):
        raise ValueError("one label per row")
    if len(np.unique(labels)) < 2:
        raise ValueError("morphs need at least two people")
    rng = np.random.default_rng([seed, 11])
    first = rng.integers(0, len(rows), size=count)
    second = rng.integers(0, len(rows), size=count)
    same = labels[first] == labels[second]
    while same.any():  # redraw the partner until every pair is two people
        second[same] = rng.integers(0, len(rows), size=int(same.sum()))
        same = labels[first] == labels[second]
    alpha = rng.uniform(*ALPHA_RANGE, size=count).astype(np.float32)
    return Morphs(rows[first], rows[second], alpha)


def blend(first: np.ndarray, second: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    """uint8 ``(1 - alpha) * first + alpha * second`` (images, or batches with one alpha per image)."""
    alpha = np.asarray(alpha, np.float32).reshape((-1,) + (1,) * (np.ndim(first) - 1) if np.ndim(alpha) else ())
    mixed = (1.0 - alpha) * np.asarray(first, np.float32) + alpha * np.asarray(second, np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
