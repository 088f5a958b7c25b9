"""Face detection (MTCNN), the face policy of a door, and 5-point similarity alignment.

The detector (:mod:`ml.detector`) is loaded lazily, once per process. Detection runs on a downscaled
copy of the frame and the crop is taken from the original, so a large frame costs little more than a
small one: the copy is shrunk so that the smallest face of interest becomes MTCNN's 20 px.

Two sizes, two jobs:

- ``MIN_DETECT_FACE_PX`` (detection minimum): the smallest face searched for at all. A confident
  face between it and ``MIN_FACE_PX`` is reported as :class:`FaceTooSmall`, never as "no face".
- ``MIN_FACE_PX`` (verification minimum): the smallest face the model verifies reliably.

The policy (:func:`choose_principal_face`): the principal face is the largest confident face; it
must be at least ``MIN_FACE_PX``; another confident face refuses the frame
(:class:`MultipleFacesFound`) only when it is at least ``SECOND_FACE_RATIO`` of the principal's
size, i.e. close enough to be a second person at the door. Smaller faces are the background.

Speed (issue 12): searching a 640x480 frame down to 24-px faces is most of a check-in's CPU, and
almost all of it goes to the smallest faces (the pyramid's largest levels). A face at the door is
rarely that small, so :func:`find_principal_face` first searches only for faces of at least
``COARSE_SEARCH_FACE_PX``, on the same full-resolution copy (the boxes and landmarks are measured
exactly as in the fine search; only the pyramid's finest levels are skipped). When the largest face it
finds is big enough that every possible rival (``SECOND_FACE_RATIO`` of it) is at least that size, the
policy is decided on that search alone; otherwise (no face, a small one) the frame is searched again
down to ``MIN_DETECT_FACE_PX``.

Tried and rejected (issue 12): a coarser first search (down to 44 px) on a smaller copy is 2.3x cheaper,
but on 500 LFW fold-8 pairs placed in door frames it lowered genuine scores and the AUC from 0.974 to
0.970, and still to 0.971 with the principal face's landmarks measured again on a crop at the fine scale
(the landmarks of a face the detector sees at ~34 px move the aligned crop). The coarse search above
keeps the copy's resolution instead, which is why it leaves the scores alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ml.detector import DEFAULT_MIN_FACE_PX, run_detector
from ml.errors import FaceTooSmall, MultipleFacesFound, NoFaceFound
from ml.types import FACE_SIZE, ImageRGB

MIN_FACE_PX = 40
"""Verification minimum: smallest face side (pixels in the original frame) the model verifies.

A confident face smaller than this is refused as ``face_too_small``. Read off the measured
accuracy-versus-face-size curve of ``siamese-lfw-2.0.0`` (``python -m ml robustness --size-sweep``,
``ml/models/siamese-lfw-2/size_curve.json``): at faces 30 / 40 / 50 / 60 / 80 px wide the FAR stays
0.85-0.92 x 1e-3 and the FRR 55-57 %, as on the clean photos (0.91 x 1e-3, 55 %); the shipped
``siamese-lfw-2.1.0`` (``ml/models/siamese-lfw-2-1/size_curve.json``): FAR 0.89-0.98 x 1e-3 and FRR
51-53 % from 30 to 100 px (clean 1.00 x 1e-3, 50 %); ``siamese-lfw-2.2.0``: FAR 0.85-0.90 x 1e-3 and
FRR 49-51 % (clean 0.89 x 1e-3, 48 %); ``siamese-lfw-2.3.0``: FAR 0.63-0.69 x 1e-3 and FRR 52-53 % (clean
0.69 x 1e-3, 51 %); ``siamese-lfw-3.0.0``, the network of 3.0.1 and 3.0.2: FAR 0.52-0.61 x 1e-3 and FRR
45-49 % from 30 to 100 px (clean 0.62 x 1e-3, 44 %); the shipped ``siamese-lfw-3.0.2`` (AS-norm,
``ml/models/siamese-lfw-3/size_curve.json``): FAR 0.97-1.03 x 1e-3 and FRR 38.5-41.4 % (clean 1.02 x 1e-3,
37 %), the smallest faces a point or two worse. 40 px rather than
30: it is the smallest minimum whose possible rivals (``SECOND_FACE_RATIO`` x 40 = 24 px) are still
above the detector's floor ``MIN_DETECT_FACE_PX``, so every face that could refuse the frame is seen.
"""

MIN_DETECT_FACE_PX = 24
"""Detection minimum: smallest face side (original-frame pixels) the detector searches for.

Below ``MIN_FACE_PX`` so that a face too small to verify is reported as such instead of as no face
(LFW photos downscaled to 150 px have ~55 px faces), and at most ``SECOND_FACE_RATIO`` x ``MIN_FACE_PX``
so that every rival of the smallest usable face is seen. It also sets the resolution of every search:
a 640x480 frame is searched at 533x400.
"""

SECOND_FACE_RATIO = 0.6
"""A second face refuses the frame only when its side is at least this fraction of the principal's.

Apparent size falls as 1/distance: a face 0.6 as large is about 1.7x as far from the camera, e.g.
someone standing right behind the person at the door. Smaller faces are passers-by in the
background and are ignored.
"""

COARSE_SEARCH_FACE_PX = 40
"""Smallest face :func:`find_principal_face`'s first search looks for (original-frame pixels).

Its result decides the frame when the largest face is at least ``COARSE_SEARCH_FACE_PX /
SECOND_FACE_RATIO`` (67 px): then no face the fine search could add would be a rival. Door faces are
mostly larger (a 640x480 camera with a 60-degree lens sees a face 1 m away at about 80 px); the
benchmark's door frame holds a 78-px face. Measured (``bench/face_search.py``, 513 fold-8 LFW photos
placed in 640x480 frames with faces of ~65-190 px, one TensorFlow thread): 89 % of frames were decided by
the coarse search alone; CPU per frame 34.8 ms median against 45.4 ms for the fine search alone (47.1
with mtcnn's own driver), 35.0 against 48.4 ms on the benchmark's frame; the face policy's answer was
the same for 506 of 513 frames (the other 7 both ways, 4 and 3: a partial background face near the 0.6
ratio, seen a little larger or smaller by one search than the other); AUC over the 253 usable pairs 0.9746
against 0.9759 (on another draw at 48 px: 0.9785 against 0.9774). 48 px decided 70 % of a similar set
alone, 60 px 48 %.
"""

MIN_CONFIDENCE = 0.90
"""Detector confidence a detection needs to count as a face at all (MTCNN's own last stage keeps >= 0.8)."""

MAX_DETECT_SIDE = 640
"""Frames are shrunk so their longer side is at most this before detection."""


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


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("expected an RGB uint8 array of shape (H, W, 3)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError("image has no pixels")


def _detection_scale(height: int, width: int, min_face_px: float) -> float:
    return min(1.0, DEFAULT_MIN_FACE_PX / float(min_face_px), MAX_DETECT_SIDE / float(max(height, width)))


def detect_faces_batch(
    images: Sequence[ImageRGB], *, min_face_px: float = MIN_DETECT_FACE_PX, detail_face_px: float | None = None
) -> list[list[DetectedFace]]:
    """Detect faces in several same-sized RGB frames at once (one MTCNN call); largest first.

    ``min_face_px`` is the smallest face side searched for (somewhat smaller faces are sometimes found
    too). ``detail_face_px`` (default ``min_face_px``, at most it) sets the resolution: the frame is
    shrunk so that a face of that size becomes MTCNN's 20 px, and boxes and landmarks are measured on
    that copy. Every detection is returned, whatever its confidence.
    """
    import cv2

    if not images:
        return []
    for image in images:
        _check_image(image)
    height, width = images[0].shape[:2]
    if any(image.shape[:2] != (height, width) for image in images):
        raise ValueError("detect_faces_batch needs frames of one size")
    detail = min_face_px if detail_face_px is None else detail_face_px
    if not 0 < detail <= min_face_px:
        raise ValueError("detail_face_px must be positive and at most min_face_px")
    scale = _detection_scale(height, width, detail)
    small_h, small_w = max(1, round(height * scale)), max(1, round(width * scale))
    if min(small_h, small_w) < 2 * 12:  # too small for MTCNN's first stage to find anything
        return [[] for _ in images]
    if scale < 1.0:
        small = [cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA) for image in images]
    else:
        small = list(images)
    per_image = run_detector(small, min_face_px=max(DEFAULT_MIN_FACE_PX, min_face_px * scale))
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


def detect_faces(
    image: ImageRGB, *, min_face_px: float = MIN_DETECT_FACE_PX, detail_face_px: float | None = None
) -> list[DetectedFace]:
    """All faces MTCNN finds in an RGB frame, in original coordinates, largest first (see
    :func:`detect_faces_batch`)."""
    return detect_faces_batch([image], min_face_px=min_face_px, detail_face_px=detail_face_px)[0]


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


def choose_principal_face(
    faces: Sequence[DetectedFace],
    *,
    min_face_px: float = MIN_FACE_PX,
    second_face_ratio: float = SECOND_FACE_RATIO,
    min_confidence: float = MIN_CONFIDENCE,
) -> DetectedFace:
    """The face to verify among ``faces`` (any order), by the door's face policy.

    Only detections of at least ``min_confidence`` count as faces. The principal face is the largest
    of them. Raises :class:`NoFaceFound` when there is none, :class:`FaceTooSmall` when the principal
    is under ``min_face_px`` (checked first: nothing in the frame can be verified), and
    :class:`MultipleFacesFound` when another face is at least ``second_face_ratio`` of its size.
    """
    confident = sorted((f for f in faces if f.confidence >= min_confidence), key=lambda f: f.size, reverse=True)
    if not confident:
        raise NoFaceFound("no face found")
    principal = confident[0]
    if principal.size < min_face_px:
        raise FaceTooSmall(
            f"the face is {principal.size:.0f} px wide; at least {min_face_px:.0f} px is needed to verify it"
        )
    rivals = [f for f in confident[1:] if f.size >= second_face_ratio * principal.size]
    if rivals:
        raise MultipleFacesFound(
            f"another face ({rivals[0].size:.0f} px) is at least {second_face_ratio:.0%} of the largest"
            f" ({principal.size:.0f} px): one person at a time in front of the camera"
        )
    return principal


def find_principal_face(image_rgb: ImageRGB) -> DetectedFace:
    """Detect faces in ``image_rgb`` and apply :func:`choose_principal_face`.

    Searched first for faces of at least ``COARSE_SEARCH_FACE_PX`` only, then, when that cannot
    settle the policy, down to ``MIN_DETECT_FACE_PX`` (see :func:`principal_after_coarse_search`).
    """
    _check_image(image_rgb)
    return principal_after_coarse_search(image_rgb, coarse_search(image_rgb))


def coarse_search(image_rgb: ImageRGB) -> list[DetectedFace]:
    """The first search of :func:`find_principal_face`: faces of ``COARSE_SEARCH_FACE_PX`` and up, measured
    at the fine search's resolution."""
    return detect_faces(image_rgb, min_face_px=COARSE_SEARCH_FACE_PX, detail_face_px=MIN_DETECT_FACE_PX)


def coarse_search_batch(images: Sequence[ImageRGB]) -> list[list[DetectedFace]]:
    """:func:`coarse_search` of several same-sized frames in one detector call (rush-hour batches, the
    robustness suite); :func:`principal_after_coarse_search` does the rest per frame."""
    return detect_faces_batch(images, min_face_px=COARSE_SEARCH_FACE_PX, detail_face_px=MIN_DETECT_FACE_PX)


def coarse_search_decides(faces: Sequence[DetectedFace]) -> bool:
    """Whether the coarse search's ``faces`` settle the face policy: their largest confident face is so
    large that any rival (``SECOND_FACE_RATIO`` of it) would have been searched for too."""
    confident = [f.size for f in faces if f.confidence >= MIN_CONFIDENCE]
    return bool(confident) and SECOND_FACE_RATIO * max(confident) >= COARSE_SEARCH_FACE_PX


def principal_after_coarse_search(
    image_rgb: ImageRGB, faces: Sequence[DetectedFace], *, min_face_px: float = MIN_FACE_PX
) -> DetectedFace:
    """The rest of :func:`find_principal_face` given the coarse search's ``faces``.

    The coarse result decides when :func:`coarse_search_decides`; otherwise the frame is searched again
    down to ``MIN_DETECT_FACE_PX``, which also tells a face too small to verify from no face.
    """
    if not coarse_search_decides(faces):
        faces = detect_faces(image_rgb, min_face_px=MIN_DETECT_FACE_PX)
    return choose_principal_face(faces, min_face_px=min_face_px)


def extract_face(image_rgb: ImageRGB) -> ImageRGB:
    """The aligned 100x100 RGB crop of the principal face in ``image_rgb`` (see :func:`choose_principal_face`).

    Raises :class:`NoFaceFound`, :class:`FaceTooSmall` or :class:`MultipleFacesFound`; never
    silently picks between two people at the door.
    """
    return align_face(image_rgb, find_principal_face(image_rgb).landmarks)
