"""Face detection (MTCNN) and 5-point similarity alignment to a fixed template.

The detector is loaded lazily, once per process. Detection runs on a downscaled copy of the
frame (faces smaller than ``MIN_FACE_PX`` are not wanted anyway) and the crop is taken from the
original, so a large frame costs little more than a small one.

mtcnn 1.0 builds a broken image pyramid when ``min_face_size`` is above its default of 20 (the
smallest levels fall under PNet's 12 px input and the whole call silently returns no faces), so
instead of raising ``min_face_size`` we shrink the frame: a face of ``MIN_FACE_PX`` in the
original becomes 20 px in the copy the detector sees.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ml.errors import MultipleFacesFound, NoFaceFound
from ml.types import FACE_SIZE, ImageRGB

MIN_FACE_PX = 60
"""Smallest face side (pixels in the original frame) that counts as a usable face.

At a door the person verifying fills a good part of the frame; smaller faces are passers-by in the
background (and too blurry to verify). It also sets the detection scale (a 640x480 frame is
searched at 213x160); MTCNN's time per frame is then mostly its fixed per-stage overhead.
"""

MIN_CONFIDENCE = 0.90
"""Detector confidence a face needs to count as usable (MTCNN's own last stage keeps >= 0.8)."""

MAX_DETECT_SIDE = 640
"""Frames are shrunk so their longer side is at most this before detection."""

_DETECTOR_FACE_PX = 20  # mtcnn's default (and only safe) min_face_size

# ArcFace's 5-point template for 112x112 crops (left eye, right eye, nose, mouth left, mouth right,
# "left" meaning the image's left), scaled to our crop size below.
_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
_KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def face_template(size: int = FACE_SIZE, margin: int = 0) -> np.ndarray:
    """The (5, 2) landmark positions of an aligned crop of ``size`` plus ``margin`` on each side."""
    return _TEMPLATE_112 * (size / 112.0) + margin


@dataclass(frozen=True)
class DetectedFace:
    """One detection in original-frame pixel coordinates."""

    box: tuple[float, float, float, float]  # x, y, width, height
    confidence: float
    landmarks: np.ndarray  # (5, 2) x, y in _KEYPOINTS order

    @property
    def size(self) -> float:
        return float(min(self.box[2], self.box[3]))

    @property
    def center(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return (x + w / 2.0, y + h / 2.0)


_detector: Any = None
_detector_lock = threading.Lock()


def _get_detector() -> Any:
    global _detector
    if _detector is None:
        with _detector_lock:
            if _detector is None:
                _detector = _compiled_mtcnn()
    return _detector


def _compiled_mtcnn() -> Any:
    """MTCNN with its three networks run as TensorFlow graphs.

    mtcnn 1.0 calls its Keras models eagerly, layer by layer: on a 640x480 frame that dispatch
    overhead is ~75 ms of a ~80 ms detection. Wrapping each stage's model in ``tf.function``
    (``reduce_retracing`` so pyramid levels of new sizes share one graph) gives the same boxes
    and landmarks in ~20 ms. ``_model`` is mtcnn's attribute (the package is pinned to 1.0.*).
    """
    import tensorflow as tf
    from mtcnn import MTCNN  # imports TensorFlow: only on first detection

    detector = MTCNN()
    for stage in detector.stages:
        if hasattr(stage, "_model"):
            stage._model = tf.function(stage._model, reduce_retracing=True)
    return detector


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("expected an RGB uint8 array of shape (H, W, 3)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError("image has no pixels")


def _detection_scale(height: int, width: int, min_face_px: int) -> float:
    return min(1.0, _DETECTOR_FACE_PX / float(min_face_px), MAX_DETECT_SIDE / float(max(height, width)))


def detect_faces_batch(images: Sequence[ImageRGB], *, min_face_px: int = MIN_FACE_PX) -> list[list[DetectedFace]]:
    """Detect faces in several same-sized RGB frames at once (one MTCNN call); largest first."""
    import cv2

    if not images:
        return []
    for image in images:
        _check_image(image)
    height, width = images[0].shape[:2]
    if any(image.shape[:2] != (height, width) for image in images):
        raise ValueError("detect_faces_batch needs frames of one size")
    scale = _detection_scale(height, width, min_face_px)
    small_h, small_w = max(1, round(height * scale)), max(1, round(width * scale))
    if min(small_h, small_w) < 2 * 12:  # too small for MTCNN's first stage to find anything
        return [[] for _ in images]
    if scale < 1.0:
        small = [cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA) for image in images]
    else:
        small = list(images)
    raw = _get_detector().detect_faces(small if len(small) > 1 else small[0])
    per_image = raw if len(small) > 1 else [raw]
    sx, sy = width / small_w, height / small_h
    results = []
    for detections in per_image:
        faces = []
        for det in detections:
            x, y, w, h = (float(v) for v in det["box"])
            landmarks = np.array([det["keypoints"][k] for k in _KEYPOINTS], dtype=np.float64)
            landmarks[:, 0] *= sx
            landmarks[:, 1] *= sy
            faces.append(DetectedFace((x * sx, y * sy, w * sx, h * sy), float(det["confidence"]), landmarks))
        faces.sort(key=lambda f: f.size, reverse=True)
        results.append(faces)
    return results


def detect_faces(image: ImageRGB, *, min_face_px: int = MIN_FACE_PX) -> list[DetectedFace]:
    """All faces MTCNN finds in an RGB frame, in original coordinates, largest first."""
    return detect_faces_batch([image], min_face_px=min_face_px)[0]


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) mapping ``source`` onto ``target``.

    Umeyama's closed form; returns the 2x3 matrix for ``cv2.warpAffine``.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rotation = u @ sign @ vt
    variance = (src_c**2).sum() / len(src)
    scale = float(np.trace(np.diag(singular) @ sign) / variance) if variance > 0 else 1.0
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(image: ImageRGB, landmarks: np.ndarray, *, size: int = FACE_SIZE, margin: int = 0) -> ImageRGB:
    """Warp ``image`` so ``landmarks`` land on the template; returns ``(size+2m, size+2m, 3)`` uint8."""
    import cv2

    _check_image(image)
    matrix = similarity_transform(landmarks, face_template(size, margin))
    side = size + 2 * margin
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def usable_faces(faces: Sequence[DetectedFace], *, min_face_px: int = MIN_FACE_PX) -> list[DetectedFace]:
    """Faces confident and large enough to be verified (and so to count as a second face)."""
    return [f for f in faces if f.confidence >= MIN_CONFIDENCE and f.size >= min_face_px]


def extract_face(image_rgb: ImageRGB) -> ImageRGB:
    """The aligned 100x100 RGB crop of the one usable face in ``image_rgb``.

    Raises :class:`NoFaceFound` when there is none and :class:`MultipleFacesFound` when a second
    face of usable size is present (never silently picks one).
    """
    _check_image(image_rgb)
    faces = usable_faces(detect_faces(image_rgb))
    if not faces:
        raise NoFaceFound("no face of usable size found")
    if len(faces) > 1:
        raise MultipleFacesFound(f"{len(faces)} faces of usable size found; exactly one is required")
    return align_face(image_rgb, faces[0].landmarks)
