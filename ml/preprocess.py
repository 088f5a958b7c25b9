"""Detect and align every LFW image once into an on-disk cache, so retraining never re-detects.

LFW deep-funneled images are 250x250 with the labelled person centred; background faces are
common, so the detection nearest the centre is taken. When nothing is detected the crop falls back
to the median landmarks of all detections (the funnelled face sits at about the same place), and
the cache records which crops are fallbacks.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from ml._extras import train_extra
from ml.align import align_face, detect_faces_batch, face_template
from ml.image import decode_image
from ml.lfw import list_images
from ml.types import FACE_SIZE

log = logging.getLogger(__name__)

CACHE_MARGIN = 8
"""Extra pixels kept around the aligned crop so augmentation can shift/scale without borders."""

_LFW_MIN_FACE_PX = 40


def build_cache(
    lfw_dir: str | os.PathLike[str],
    cache_path: str | os.PathLike[str],
    *,
    margin: int = CACHE_MARGIN,
    paths: list[str] | None = None,
) -> Path:
    """Write ``cache_path`` (.npz): ``crops`` (N, S, S, 3) uint8 with S = 100 + 2*margin, ``paths``,
    ``detected`` (False for centred fallbacks) and ``fingerprint`` (SHA-256 over paths and bytes)."""
    paths = list_images(lfw_dir) if paths is None else list(paths)
    crops, detected, fingerprint = align_lfw_images(lfw_dir, paths, margin=margin)
    out = Path(cache_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez(tmp, crops=crops, paths=np.array(paths), detected=detected, fingerprint=np.array(fingerprint))
    os.replace(tmp, out)
    return out


def align_lfw_images(
    lfw_dir: str | os.PathLike[str], paths: list[str], *, margin: int = CACHE_MARGIN, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray, str]:
    """Aligned margin crops of ``images/``-relative ``paths`` (centre-most face), fallback flags, and
    a SHA-256 fingerprint over the paths and file bytes."""
    root = Path(lfw_dir) / "images"
    side = FACE_SIZE + 2 * margin
    crops = np.zeros((len(paths), side, side, 3), dtype=np.uint8)
    detected = np.zeros(len(paths), dtype=bool)
    landmarks = np.zeros((len(paths), 5, 2), dtype=np.float64)
    digest = hashlib.sha256()
    groups: dict[tuple[int, int], list[int]] = {}
    images: dict[int, np.ndarray] = {}

    def flush(shape: tuple[int, int]) -> None:
        indices = groups.pop(shape, [])
        batch = [images.pop(i) for i in indices]
        if not batch:
            return
        for index, image, faces in zip(indices, batch, detect_faces_batch(batch, min_face_px=_LFW_MIN_FACE_PX)):
            if faces:
                cy, cx = image.shape[0] / 2.0, image.shape[1] / 2.0
                face = min(faces, key=lambda f: (f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2)
                landmarks[index] = face.landmarks
                detected[index] = True
                crops[index] = align_face(image, face.landmarks, margin=margin)

    tqdm = train_extra("tqdm").tqdm
    for index, rel in enumerate(tqdm(paths, desc="detect+align", unit="img", mininterval=10)):
        data = (root / rel).read_bytes()
        digest.update(rel.encode())
        digest.update(hashlib.sha256(data).digest())
        image = decode_image(data)
        images[index] = image
        groups.setdefault(image.shape[:2], []).append(index)
        if len(groups[image.shape[:2]]) >= batch_size:
            flush(image.shape[:2])
    for shape in list(groups):
        flush(shape)

    missing = np.flatnonzero(~detected)
    if len(missing):
        # Funnelled faces sit in about the same place: use the median detected landmarks, or
        # a template centred in the frame when nothing at all was detected.
        for index in missing:
            image = decode_image((root / paths[index]).read_bytes())
            if detected.any():
                fallback = np.median(landmarks[detected], axis=0)
            else:
                fallback = face_template(FACE_SIZE) * (min(image.shape[:2]) / 2.0 / FACE_SIZE) + np.array(image.shape[1::-1]) / 4.0
            crops[index] = align_face(image, fallback, margin=margin)
    log.info("aligned %d images; %d had no detection and used the centred fallback", len(paths), len(missing))
    for index in missing[:50]:
        log.info("fallback crop: %s", paths[index])
    return crops, detected, digest.hexdigest()


def load_cache(cache_path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load a cache written by :func:`build_cache` fully into memory."""
    with np.load(cache_path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
