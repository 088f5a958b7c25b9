"""MTCNN (the ``mtcnn`` 1.0 package's networks and weights) run the way a door needs it, without TensorFlow.

The three networks are the package's, converted once to TensorFlow Lite (``ml/detector_models``,
:func:`ml.convert.write_detector_files`) and run by LiteRT (:mod:`ml.lite`); the steps between them
(image pyramid, candidate boxes, non-maximum suppression, box regression, patches, landmarks) are
NumPy and OpenCV here, the same arithmetic as mtcnn 1.0's stages with the package's thresholds.
Against ``MTCNN().detect_faces`` the boxes and landmarks are the same pixels and the confidences equal
to 1e-4 (``tests/ml/test_detector.py``). What this changes for a door:

- **No TensorFlow in the worker.** mtcnn 1.0 imports TensorFlow for its resizes and crops; here they
  are OpenCV's area resize and a NumPy bilinear crop with ``tf.image.crop_and_resize``'s sampling.
- **No per-call overhead.** The package calls its Keras models eagerly, layer by layer (~75 ms of ~80 on a
  640x480 frame); LiteRT runs each network as one planned graph with XNNPACK's kernels.
- **A pyramid that honours ``min_face_px``.** The package sizes its image pyramid for 20-px faces
  whatever is asked, so a larger ``min_face_size`` adds levels below PNet's 12-px input and the whole
  call silently finds nothing. :func:`pyramid_scales` keeps only levels PNet can read, so a search can
  start at larger faces (:func:`ml.align.find_principal_face`'s first, coarse search) while RNet and ONet
  still cut their patches from the same full-resolution frame.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from ml import boxes
from ml.boxes import boxes_to_json, clip_boxes
from ml.types import ImageRGB

PNET_INPUT_PX = 12
"""PNet's receptive field: a pyramid level's shorter side must be at least this."""

PYRAMID_FACTOR = 0.709
"""Each pyramid level is this much smaller than the last (mtcnn's default, ~1/sqrt(2))."""

DEFAULT_MIN_FACE_PX = 20
"""mtcnn's default smallest face, in pixels of the frame given to the detector."""

DETECTOR_DIR = Path(__file__).resolve().parent / "detector_models"
"""The three networks as TensorFlow Lite files (converted from mtcnn 1.0's weights, MIT licence)."""

DETECTOR_FILES = {"StagePNet": "pnet.tflite", "StageRNet": "rnet.tflite", "StageONet": "onet.tflite"}
"""mtcnn 1.0's stage class -> the file in ``DETECTOR_DIR`` its network was converted to."""

PNET_THRESHOLD, RNET_THRESHOLD, ONET_THRESHOLD = 0.6, 0.7, 0.8
"""Face probability each stage needs to pass a candidate on (mtcnn 1.0's defaults)."""


class Networks(NamedTuple):
    pnet: Any
    rnet: Any
    onet: Any


_detector: Networks | None = None
_detector_lock = threading.Lock()


def load_detector() -> Networks:
    """The process's three MTCNN networks (loaded once, lazily)."""
    global _detector
    if _detector is None:
        with _detector_lock:
            if _detector is None:
                from ml.lite import LiteNetwork

                _detector = Networks(
                    # PNet: one interpreter per pyramid level of a frame size (a coarse and a fine search
                    # of a 533x400 copy read 16 levels); RNet and ONet: any number of patches.
                    LiteNetwork(DETECTOR_DIR / DETECTOR_FILES["StagePNet"], max_shapes=40),
                    LiteNetwork(DETECTOR_DIR / DETECTOR_FILES["StageRNet"], pad_batch=True),
                    LiteNetwork(DETECTOR_DIR / DETECTOR_FILES["StageONet"], pad_batch=True),
                )
    return _detector


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
    if not len(images):
        return []
    networks = load_detector()
    frames = (np.stack(images).astype(np.float32) - 127.5) / 128.0  # mtcnn's normalisation, to [-1, 1]
    height, width = frames.shape[1:3]
    found = _proposals(networks.pnet, frames, pyramid_scales(height, width, min_face_px))
    if len(found):
        found = _refine(networks.rnet, frames, found)
    if len(found):
        found = _finish(networks.onet, frames, found)
    if not len(found):
        return [[] for _ in images]
    return boxes_to_json(clip_boxes(found, height, width), len(images))


def _outputs_by_width(outputs: list[np.ndarray]) -> dict[int, np.ndarray]:
    """A network's outputs keyed by their last dimension: 4 box offsets, 2 class scores, 10 landmarks
    (unique per network, so the converter's output order does not matter)."""
    return {int(out.shape[-1]): out for out in outputs}


def _proposals(pnet: Any, frames: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """PNet's candidate boxes over the pyramid, as mtcnn 1.0's ``StagePNet`` makes them (its thresholds)."""
    import cv2

    per_level = []
    height, width = frames.shape[1:3]
    for scale in scales:
        size = (int(width * scale), int(height * scale))  # truncated, as TensorFlow's resize sizes it
        # Frame by frame: PNet's shapes then depend on the level alone, not on how many frames came.
        maps = [_outputs_by_width(pnet(cv2.resize(frame, size, interpolation=cv2.INTER_AREA)[None])) for frame in frames]
        offsets, faces = (np.concatenate([out[channels] for out in maps]) for channels in (4, 2))
        found = boxes.candidate_boxes(offsets, faces[..., 1], PNET_THRESHOLD)
        found[:, 1:5] /= scale
        per_level.append(boxes.suppress(found, 0.5, "union", sort=False))
    if not per_level:
        return np.empty((0, 6))
    merged = boxes.suppress(np.concatenate(per_level), 0.7, "union", sort=True)
    return boxes.to_square(merged)


def _refine(rnet: Any, frames: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """RNet's verdict on each candidate: new confidence, regressed box, kept above its threshold."""
    out = _outputs_by_width(rnet(boxes.crop_patches(frames, candidates, 24)))
    refined = boxes.regress(boxes.with_confidence(candidates, out[2][:, 1]), out[4])
    refined = refined[refined[:, 5] > RNET_THRESHOLD]
    return boxes.to_square(boxes.suppress(refined, 0.7, "union", sort=True))


def _finish(onet: Any, frames: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """ONet's verdict with the five landmarks: rows ``[frame, x1, y1, x2, y2, confidence, 5 x, 5 y]``."""
    out = _outputs_by_width(onet(boxes.crop_patches(frames, candidates, 48)))
    landmarks = boxes.place_landmarks(out[10], candidates)
    final = np.concatenate([boxes.regress(boxes.with_confidence(candidates, out[2][:, 1]), out[4]), landmarks], axis=1)
    final = final[final[:, 5] > ONET_THRESHOLD]
    return boxes.suppress(final, 0.7, "min", sort=True)
