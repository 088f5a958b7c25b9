"""Enrolment quality: measurements of one reference photo's face, and the bounds a reference must meet.

Pure NumPy, no model: it works on what ``verification.inference.embed_reference_face`` returns, the
aligned 100x100 RGB crop and the five landmarks in the photo. A reference photo is compared with every
door snapshot of its person for as long as it is enrolled, so a bad one costs on every check-in:

- ``too_dark`` / ``too_bright``: mean luma (BT.601, 0-255) of the crop's face region outside the bounds;
- ``blurred``: variance of the 4-neighbour Laplacian of that region's luma below the bound (a sharp
  face has edges; blur and heavy JPEG smoothing remove them);
- ``face_turned``: the nose's offset from the eye midpoint, along the eye line, as a fraction of the
  inter-ocular distance (0 for a frontal face, about +-0.5 in profile; roll and scale do not change it)
  beyond the bound. The aligned crop is not used for this: alignment pulls the landmarks onto the
  frontal template and would hide the turn.

``face_too_small`` is the detector's face policy (``ml.align``), checked before any of these.
How the bounds were chosen, on the fixture faces and degraded copies of them: README "Enrolment quality".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# The face region of a 100x100 aligned crop (ArcFace template: eyes at y~46, mouth corners at y~82):
# rows 20-90, columns 20-80. Outside it is background and hair, whose texture says nothing of the face.
FACE_REGION = (slice(20, 90), slice(20, 80))


@dataclass(frozen=True)
class QualityBounds:
    min_luminance: float = 50.0
    max_luminance: float = 190.0
    min_sharpness: float = 25.0
    max_yaw: float = 0.25


BOUNDS = QualityBounds()


@dataclass(frozen=True)
class FaceQuality:
    luminance: float  # mean luma of the face region, 0-255
    sharpness: float  # variance of the Laplacian of the face region's luma
    yaw: float | None  # nose offset along the eye line / inter-ocular distance; None without landmarks

    def as_dict(self) -> dict[str, float | None]:
        return {k: (None if v is None else round(float(v), 4)) for k, v in asdict(self).items()}


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the interior of a 2-D array."""
    g = np.asarray(gray, dtype=np.float64)
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def yaw_from_landmarks(landmarks: np.ndarray) -> float:
    """Signed nose offset from the eye midpoint along the eye line, in inter-ocular distances."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    left_eye, right_eye, nose = points[0], points[1], points[2]
    axis = right_eye - left_eye
    distance = float(np.hypot(*axis))
    if distance <= 0:
        return float("inf")
    return float(np.dot(nose - (left_eye + right_eye) / 2.0, axis / distance) / distance)


def measure(*, crop: np.ndarray, landmarks: np.ndarray | None) -> FaceQuality:
    crop = np.asarray(crop)
    if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"expected an aligned RGB uint8 crop, got {crop.dtype} {crop.shape}")
    face = _luma(crop)[FACE_REGION]
    return FaceQuality(
        luminance=float(face.mean()),
        sharpness=laplacian_variance(face),
        yaw=None if landmarks is None else yaw_from_landmarks(landmarks),
    )


def problem(quality: FaceQuality, bounds: QualityBounds = BOUNDS) -> str:
    """The reason to refuse a reference with this quality ("" when it is good). Light first: a dark
    photo is also a soft one, and "too dark" is what the operator can fix."""
    if quality.luminance < bounds.min_luminance:
        return "too_dark"
    if quality.luminance > bounds.max_luminance:
        return "too_bright"
    if quality.sharpness < bounds.min_sharpness:
        return "blurred"
    if quality.yaw is not None and abs(quality.yaw) > bounds.max_yaw:
        return "face_turned"
    return ""
