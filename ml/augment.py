"""Training augmentation that mimics door cameras, on cached crops with a margin (NumPy + OpenCV).

Geometry: small rotation, scale and shift (imperfect alignment, pose), horizontal flip.
Photometry: brightness, contrast, gamma, colour cast, saturation, greyscale (IR/cheap sensors).
Degradation: Gaussian blur, low resolution, sensor noise, JPEG compression.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ml.types import FACE_SIZE


def center_crop(crops: np.ndarray, margin: int) -> np.ndarray:
    """The aligned ``FACE_SIZE`` crop inside margin crops (what detection + alignment yields)."""
    if margin == 0:
        return crops
    return np.ascontiguousarray(crops[:, margin : margin + FACE_SIZE, margin : margin + FACE_SIZE])


def jitter_geometry(crop: np.ndarray, margin: int, rng: np.random.Generator) -> np.ndarray:
    """The aligned face out of a margin crop, slightly rotated, scaled, shifted and maybe mirrored."""
    angle = rng.uniform(-10.0, 10.0)
    scale = math.exp(rng.uniform(math.log(0.9), math.log(1.1)))
    shift = rng.uniform(-4.0, 4.0, size=2)
    side = crop.shape[0]
    center = (side / 2.0, side / 2.0)
    matrix = cv2.getRotationMatrix2D(center, angle, scale)
    matrix[:, 2] += shift - margin  # land the face centre on the output centre, shifted
    out = cv2.warpAffine(crop, matrix, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return out


def _photometry(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = face.astype(np.float32) / 255.0
    if rng.random() < 0.8:
        x = x * rng.uniform(0.9, 1.1, size=3).astype(np.float32)  # white balance / colour cast
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * np.float32(rng.uniform(0.6, 1.3))  # saturation
        mean = x.mean()
        x = (x - mean) * np.float32(rng.uniform(0.7, 1.3)) + mean + np.float32(rng.uniform(-0.15, 0.15))
    if rng.random() < 0.3:
        x = np.power(np.clip(x, 0.0, 1.0), np.float32(rng.uniform(0.7, 1.5)))
    if rng.random() < 0.1:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)


def _degradation(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    roll = rng.random()
    if roll < 0.15:
        face = cv2.GaussianBlur(face, (0, 0), sigmaX=rng.uniform(0.5, 1.5))
    elif roll < 0.3:
        low = int(rng.integers(32, 72))
        face = cv2.resize(cv2.resize(face, (low, low), interpolation=cv2.INTER_AREA), (FACE_SIZE, FACE_SIZE))
    if rng.random() < 0.15:
        noise = rng.normal(0.0, rng.uniform(2.0, 8.0), size=face.shape)
        face = np.clip(face + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        face = jpeg_round_trip(face, int(rng.integers(25, 90)))
    return face


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` after JPEG encoding at ``quality`` and decoding (unchanged if encoding fails).
    Channel order is irrelevant for the round trip; only the artefacts matter."""
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if ok else image


def augment_batch(crops: np.ndarray, margin: int, rng: np.random.Generator) -> np.ndarray:
    """(N, S, S, 3) uint8 margin crops -> (N, 100, 100, 3) uint8 augmented faces."""
    out = np.empty((len(crops), FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
    for i, crop in enumerate(crops):
        face = jitter_geometry(crop, margin, rng)
        face = _photometry(face, rng)
        out[i] = _degradation(face, rng)
    return out
