"""MTCNN's box arithmetic in NumPy: candidates from PNet's map, suppression, regression, patches.

Rows are ``[frame, x1, y1, x2, y2, confidence]`` (plus ten landmark columns after ONet: five x, then
five y), in pixels of the frame the detector was given. Each function does what the corresponding
step of mtcnn 1.0 does (``mtcnn.utils.bboxes`` and ``extract_patches``), so the networks see the same
inputs and the detections come out the same; :mod:`ml.detector` chains them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PNET_STRIDE, PNET_CELL = 2, 12
"""PNet's map: one cell per 2 pixels of a pyramid level, each looking at a 12x12 window."""

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""The five landmarks in ONet's column order (mtcnn's names)."""


def candidate_boxes(offsets: np.ndarray, face_probability: np.ndarray, threshold: float) -> np.ndarray:
    """Boxes of the cells of PNet's map (``(N, h, w, 4)`` offsets, ``(N, h, w)`` face probability) above
    ``threshold``, regressed, in the level's pixels, highest probability first."""
    frame, row, col = np.nonzero(face_probability > threshold)
    reg = offsets[frame, row, col].astype(np.float64)
    x1, y1 = col * PNET_STRIDE + 1.0, row * PNET_STRIDE + 1.0
    x2, y2 = col * PNET_STRIDE + float(PNET_CELL), row * PNET_STRIDE + float(PNET_CELL)
    size = PNET_CELL - 1.0
    found = np.stack([frame, x1 + reg[:, 0] * size, y1 + reg[:, 1] * size, x2 + reg[:, 2] * size,
                      y2 + reg[:, 3] * size, face_probability[frame, row, col]], axis=1)
    return found[np.argsort(found[:, 5])[::-1]]


def overlap(rects: np.ndarray, method: str) -> np.ndarray:
    """Pairwise overlap of ``(M, 4)`` ``x1, y1, x2, y2`` rectangles: intersection over union, or over the
    smaller of the two (``"min"``, which suppresses a box lying inside a larger one)."""
    area = (rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])
    width = np.maximum(0, np.minimum(rects[None, :, 2], rects[:, None, 2]) - np.maximum(rects[None, :, 0], rects[:, None, 0]))
    height = np.maximum(0, np.minimum(rects[None, :, 3], rects[:, None, 3]) - np.maximum(rects[None, :, 1], rects[:, None, 1]))
    inter = width * height
    if method == "union":
        return inter / (area[:, None] + area[None, :] - inter)
    if method == "min":
        return inter / np.minimum(area[:, None], area[None, :])
    raise ValueError("method must be 'union' or 'min'")


def suppress(rows: np.ndarray, threshold: float, method: str, *, sort: bool) -> np.ndarray:
    """Non-maximum suppression per frame, mtcnn 1.0's rule: a box goes when any box before it (higher
    confidence, once ``sort`` orders them) overlaps it by more than ``threshold``, even one that
    itself went. ``sort=False`` keeps the order given (PNet's levels arrive sorted)."""
    if sort:
        rows = rows[np.argsort(rows[:, 5])[::-1]]
    kept = []
    for frame in np.unique(rows[:, 0]):
        mine = rows[rows[:, 0] == frame]
        beaten = np.triu(overlap(mine[:, 1:5], method) > threshold, k=1).any(axis=0)
        kept.append(mine[~beaten])
    return np.concatenate(kept) if kept else np.empty((0, rows.shape[1]))


def to_square(rows: np.ndarray) -> np.ndarray:
    """Each box grown to a square around its centre (its longer side)."""
    rows = rows.copy()
    width, height = rows[:, 3] - rows[:, 1], rows[:, 4] - rows[:, 2]
    side = np.maximum(width, height)
    rows[:, 1] += width * 0.5 - side * 0.5
    rows[:, 2] += height * 0.5 - side * 0.5
    rows[:, 3] = rows[:, 1] + side
    rows[:, 4] = rows[:, 2] + side
    return rows


def with_confidence(rows: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """The rows with a refining network's face probability as their confidence."""
    rows = rows.copy()
    rows[:, 5] = confidence
    return rows


def regress(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Boxes moved by a network's ``(M, 4)`` offsets, in units of the box's size (+1, mtcnn's convention)."""
    rows = rows.copy()
    width, height = rows[:, 3] - rows[:, 1] + 1, rows[:, 4] - rows[:, 2] + 1
    rows[:, 1:5] += offsets * np.stack([width, height, width, height], axis=1)
    return rows


def place_landmarks(relative: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """ONet's ``(M, 10)`` landmarks (fractions of the box it saw) in frame pixels: five x, then five y."""
    width, height = rows[:, 3:4] - rows[:, 1:2] + 1, rows[:, 4:5] - rows[:, 2:3] + 1
    placed = relative.astype(np.float64)
    placed[:, :5] = width * placed[:, :5] + rows[:, 1:2] - 1
    placed[:, 5:] = height * placed[:, 5:] + rows[:, 2:3] - 1
    return placed


def crop_patches(frames: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` patches of ``frames`` ``(N, H, W, C)`` under each box, bilinear, zero outside.

    Sampled where ``tf.image.crop_and_resize`` samples for the same boxes given as fractions of the
    frame (mtcnn passes ``x / W``, ``y / H``): ``size`` points from ``x1 (W - 1) / W`` to
    ``x2 (W - 1) / W``. Computed in float32 like TensorFlow's kernel.
    """
    height, width = frames.shape[1:3]
    frame = rows[:, 0].astype(np.int64)
    steps = np.arange(size, dtype=np.float32)

    def axis(low: np.ndarray, high: np.ndarray, extent: int) -> tuple[np.ndarray, ...]:
        low = (low / extent).astype(np.float32)
        high = (high / extent).astype(np.float32)
        scale = (high - low) * np.float32(extent - 1) / np.float32(size - 1)
        at = low[:, None] * np.float32(extent - 1) + steps[None, :] * scale[:, None]
        inside = (at >= 0) & (at <= extent - 1)
        first = np.clip(np.floor(at), 0, extent - 1).astype(np.int64)
        second = np.clip(np.ceil(at), 0, extent - 1).astype(np.int64)
        return first, second, (at - np.floor(at)).astype(np.float32), inside

    top, bottom, y_lerp, y_in = axis(rows[:, 2], rows[:, 4], height)
    left, right, x_lerp, x_in = axis(rows[:, 1], rows[:, 3], width)
    f = frame[:, None, None]

    def along_row(ys: np.ndarray) -> np.ndarray:
        """Rows ``ys`` of each patch, interpolated between their left and right samples."""
        near = frames[f, ys[:, :, None], left[:, None, :]]
        return near + (frames[f, ys[:, :, None], right[:, None, :]] - near) * x_lerp[:, None, :, None]

    upper, lower = along_row(top), along_row(bottom)
    patches = upper + (lower - upper) * y_lerp[:, :, None, None]
    patches *= (y_in[:, :, None] & x_in[:, None, :])[..., None]
    return patches.astype(np.float32)


def clip_boxes(rows: np.ndarray, height: int, width: int) -> np.ndarray:
    """Box corners kept inside the frame (landmarks are left where ONet put them)."""
    rows = rows.copy()
    rows[:, [1, 3]] = np.clip(rows[:, [1, 3]], 0, width - 1)
    rows[:, [2, 4]] = np.clip(rows[:, [2, 4]], 0, height - 1)
    return rows


def boxes_to_json(rows: np.ndarray, frames: int) -> list[list[dict[str, Any]]]:
    """mtcnn's JSON form per frame: ``box`` ``[x, y, width, height]`` and each landmark ``[x, y]`` in
    whole pixels (rounded, as the package rounds them), ``confidence`` as a float."""
    result: list[list[dict[str, Any]]] = [[] for _ in range(frames)]
    for row in rows:
        x1, y1, x2, y2 = row[1:5]
        box = np.round([x1, y1, x2 - x1, y2 - y1]).astype(int).tolist()
        points = np.round(row[6:16]).astype(int)
        keypoints = {name: [int(points[i]), int(points[5 + i])] for i, name in enumerate(LANDMARK_NAMES)}
        result[int(row[0])].append({"box": box, "confidence": float(row[5]), "keypoints": keypoints})
    return result
