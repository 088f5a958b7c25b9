"""Teacher views: one degraded look at a training face, shown alike to the teacher and the student.

Distillation with the teacher's descriptor of the *clean* photo asks the student to map every degraded
copy of a face onto one point, which is not what the teacher computes on those inputs. A view instead
draws one set of camera conditions (colour cast, low light, greyscale, blur, low resolution, noise,
JPEG) from a seed; the teacher describes its own face chip under that view once (cached), and during
training the student sees its crop of the same photo under the same view and matches that descriptor
("consistent teaching"). Pixel parameters are drawn for a face about 100 px wide (the student's
``FACE_SIZE`` crop) and scaled by ``face_width`` for dlib's larger face chip, so one draw degrades both alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ml.augment import jpeg_round_trip

VIEW_STREAM = 11  # keeps view draws apart from the batch order's and augmentation's random streams


@dataclass(frozen=True)
class View:
    """One draw of camera conditions (all pixel sizes for a face about 100 px wide)."""

    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    saturation: float = 1.0
    contrast: float = 1.0
    brightness: float = 0.0
    exposure: float = 1.0  # < 1: low light (multiplies the image before the gamma)
    gamma: float = 1.0
    greyscale: bool = False
    blur_sigma: float = 0.0
    low_side: int = 0  # > 0: the face is seen at this many pixels and scaled back up
    noise_sigma: float = 0.0
    jpeg_quality: int = 0  # > 0: JPEG round trip at this quality
    noise_seed: int = 0


def view_rng(seed: int, row: int, index: int) -> np.random.Generator:
    """The random stream of view ``index`` (1-based) of cache row ``row``: the teacher pass and every
    training step that shows this view draw the same conditions from it."""
    return np.random.default_rng([seed, VIEW_STREAM, row, index])


def draw_view(rng: np.random.Generator) -> View:
    """Camera conditions leaning toward the robustness suite's (greyscale, low light, small faces, JPEG)."""
    gains = tuple(float(g) for g in rng.uniform(0.85, 1.15, size=3))
    saturation, contrast = float(rng.uniform(0.5, 1.3)), float(rng.uniform(0.5, 1.3))
    brightness = float(rng.uniform(-0.15, 0.15))
    exposure = float(rng.uniform(0.25, 0.6)) if rng.random() < 0.25 else 1.0
    gamma = float(rng.uniform(0.7, 1.6)) if rng.random() < 0.3 else 1.0
    greyscale = bool(rng.random() < 0.25)
    roll = rng.random()
    blur_sigma = float(rng.uniform(0.5, 2.0)) if roll < 0.2 else 0.0
    low_side = int(rng.integers(28, 72)) if 0.2 <= roll < 0.5 else 0
    noise_sigma = float(rng.uniform(2.0, 8.0)) if rng.random() < 0.2 else 0.0
    jpeg_quality = int(rng.integers(20, 90)) if rng.random() < 0.4 else 0
    return View(gains, saturation, contrast, brightness, exposure, gamma, greyscale, blur_sigma, low_side, noise_sigma,
                jpeg_quality, int(rng.integers(2**31)))


def apply_view(face: np.ndarray, view: View, face_width: float = 100.0) -> np.ndarray:
    """(H, W, 3) uint8 ``face`` seen under ``view``; ``face_width`` (pixels) scales the blur and the
    low-resolution step when the face is not about 100 px wide."""
    x = face.astype(np.float32) / 255.0
    x = x * np.asarray(view.gains, np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * np.float32(view.saturation)
    mean = x.mean()
    x = (x - mean) * np.float32(view.contrast) + mean + np.float32(view.brightness)
    x = np.clip(x * np.float32(view.exposure), 0.0, 1.0)
    if view.gamma != 1.0:
        x = np.power(x, np.float32(view.gamma))
    if view.greyscale:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    out = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    scale = face_width / 100.0
    if view.blur_sigma:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=view.blur_sigma * scale)
    if view.low_side:
        height, width = out.shape[:2]
        factor = view.low_side / face_width
        small = (max(2, round(width * factor)), max(2, round(height * factor)))
        out = cv2.resize(cv2.resize(out, small, interpolation=cv2.INTER_AREA), (width, height), interpolation=cv2.INTER_LINEAR)
    if view.noise_sigma:
        noise = np.random.default_rng(view.noise_seed).normal(0.0, view.noise_sigma, size=out.shape)
        out = np.clip(out + noise, 0, 255).astype(np.uint8)
    if view.jpeg_quality:
        out = jpeg_round_trip(out, view.jpeg_quality)
    return np.ascontiguousarray(out)


def views_of(seed: int, row: int, count: int) -> list[View]:
    """Views 1..``count`` of cache row ``row``."""
    return [draw_view(view_rng(seed, row, index)) for index in range(1, count + 1)]
