"""MTCNN (the ``mtcnn`` 1.0 package's networks and weights) run the way a door needs it.

``mtcnn.MTCNN.detect_faces`` works, but three things in mtcnn 1.0 (pinned to 1.0.*) cost a door dearly
or stop it from searching efficiently, so :func:`run_detector` drives the package's three stages itself:

- **Eager Keras calls.** The stages call their Keras models eagerly, layer by layer: on a 640x480
  frame that dispatch overhead was ~75 ms of ~80. Each model runs as a ``tf.function`` here, traced
  once for inputs of any size and count (``_STAGE_INPUTS``), so no door ever pays a trace (0.2-3 s).
- **The frame converted again and again.** The normalised frame is a NumPy array, and every pyramid
  level and both refinement stages convert it to a tensor anew (2.5 MB each for a 533x400 copy, eleven
  times per frame). It is converted once here, with identical output: 4-11 % of a detection's CPU on a
  quiet machine (``bench/face_search.py``), more when memory bandwidth is contended.
- **A pyramid that ignores ``min_face_size``.** The package sizes its image pyramid for 20-px faces
  whatever is asked, so a larger ``min_face_size`` adds levels below PNet's 12-px input and the whole
  call silently finds nothing. :func:`pyramid_scales` keeps only levels PNet can read, so a search can
  start at larger faces (:func:`ml.align.find_principal_face`'s first, coarse search) while RNet and ONet
  still cut their patches from the same full-resolution frame.

With the package's defaults (``min_face_px`` 20) :func:`run_detector` returns what
``MTCNN().detect_faces`` returns (``tests/ml/test_detector.py`` checks it).
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from ml.types import ImageRGB

PNET_INPUT_PX = 12
"""PNet's receptive field: a pyramid level's shorter side must be at least this."""

PYRAMID_FACTOR = 0.709
"""Each pyramid level is this much smaller than the last (mtcnn's default, ~1/sqrt(2))."""

DEFAULT_MIN_FACE_PX = 20
"""mtcnn's default smallest face, in pixels of the frame given to the detector."""

_detector: Any = None
_detector_lock = threading.Lock()


def load_detector() -> Any:
    """The process's MTCNN with its three networks compiled as TensorFlow graphs (loaded once, lazily)."""
    global _detector
    if _detector is None:
        with _detector_lock:
            if _detector is None:
                _detector = _compiled_mtcnn()
    return _detector


_STAGE_INPUTS = {"StagePNet": (None, None, None, 3), "StageRNet": (None, 24, 24, 3), "StageONet": (None, 48, 48, 3)}
"""Input shape of each stage's network: PNet reads whole pyramid levels, RNet and ONet fixed-size patches."""


def _compiled_mtcnn() -> Any:
    import tensorflow as tf
    from mtcnn import MTCNN  # imports TensorFlow: only on first detection

    detector = MTCNN()
    for stage in detector.stages:  # ``_model`` is mtcnn 1.0's attribute (the package is pinned)
        signature = [tf.TensorSpec(_STAGE_INPUTS[type(stage).__name__], tf.float32)]
        stage._model = tf.function(stage._model, input_signature=signature)
    return detector


def pyramid_scales(height: int, width: int, min_face_px: float) -> np.ndarray:
    """The scales of PNet's image pyramid for a ``height`` x ``width`` frame searched down to ``min_face_px``.

    The first level maps a face of ``min_face_px`` onto PNet's 12-px input; each next one is
    ``PYRAMID_FACTOR`` smaller, down to the last level whose shorter side PNet can still read. For
    ``min_face_px`` 20 these are exactly mtcnn 1.0's levels.
    """
    if min_face_px <= 0:
        raise ValueError("min_face_px must be positive")
    first = PNET_INPUT_PX / float(min_face_px)
    shorter = float(min(height, width))
    if shorter * first < PNET_INPUT_PX:
        return np.empty(0)
    count = int(np.floor(np.log(PNET_INPUT_PX / (shorter * first)) / np.log(PYRAMID_FACTOR) + 1e-9)) + 1
    scales = first * PYRAMID_FACTOR ** np.arange(count)
    return scales[shorter * scales >= PNET_INPUT_PX]


def run_detector(images: Sequence[ImageRGB], *, min_face_px: float = DEFAULT_MIN_FACE_PX) -> list[list[dict[str, Any]]]:
    """MTCNN on same-sized RGB frames, in mtcnn's JSON form (``box`` xywh, ``confidence``, ``keypoints``).

    One list of detections per frame. ``min_face_px`` is the smallest face searched for, in pixels of
    these frames; larger values skip the pyramid's finest, costliest levels.
    """
    import tensorflow as tf
    from mtcnn.utils.bboxes import fix_bboxes_offsets, limit_bboxes, to_json
    from mtcnn.utils.images import standarize_batch

    if not images:
        return []
    detector = load_detector()
    normalised, shapes, padding = standarize_batch(np.stack(images), justification="center", normalize=True)
    normalised = tf.convert_to_tensor(normalised, dtype=tf.float32)  # once, not at every stage
    height, width = images[0].shape[:2]
    try:
        boxes = _proposals(detector.stages[0], normalised, pyramid_scales(height, width, min_face_px))
        for stage in detector.stages[1:]:  # RNet refines, ONet adds the landmarks
            if len(boxes) == 0:
                break
            boxes = stage(bboxes_batch=boxes, images_normalized=normalised, images_oshapes=shapes)
    except tf.errors.InvalidArgumentError:  # mtcnn's own signal for "nothing left to refine"
        boxes = np.empty((0, 16))
    if len(boxes) == 0 or boxes.shape[1] < 16:
        return [[] for _ in images]
    boxes = limit_bboxes(fix_bboxes_offsets(boxes, padding), images_shapes=shapes, limit_landmarks=False)
    return to_json(boxes, images_count=len(images), output_as_width_height=True, input_as_width_height=False)


def _proposals(pnet: Any, normalised: Any, scales: np.ndarray) -> np.ndarray:
    """PNet's candidate boxes over the pyramid, as mtcnn 1.0's ``StagePNet`` makes them (its thresholds)."""
    from mtcnn.utils.bboxes import generate_bounding_box, resize_to_square, smart_nms_from_bboxes, upscale_bboxes
    from mtcnn.utils.images import scale_images

    batch = int(normalised.shape[0])
    per_level = []
    for scale in scales:
        offsets, scores = pnet._model(scale_images(normalised, scale))
        found = generate_bounding_box(offsets, scores, 0.6)
        found = upscale_bboxes(found, np.asarray([scale] * batch))
        per_level.append(smart_nms_from_bboxes(found, threshold=0.5, method="union", initial_sort=False))
    if not per_level:
        return np.empty((0, 6))
    merged = smart_nms_from_bboxes(np.concatenate(per_level, axis=0), threshold=0.7, method="union", initial_sort=True)
    return resize_to_square(merged)
