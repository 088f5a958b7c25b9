"""The one bridge between the app and the model package ``ml``.

Only Celery workers (and eager in-process tasks on a laptop) call into here; ``ml`` and TensorFlow are
imported lazily inside the functions, so importing this module costs nothing and the web process
never loads TensorFlow. The model is loaded once per process, on first use, then kept.

Face problems come back as ``FaceRejected`` with a reason the decision can store; the ``ml``
exception types never leak past this module.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

from verification.errors import ModelUnavailable

# Reasons the rest of the app knows about; anything else from ``ml`` is an unreadable image.
_FACE_REASONS = {"no_face", "multiple_faces"}

_model: Any = None
_model_lock = threading.Lock()


class FaceRejected(Exception):
    """The image is unusable for verification; ``reason`` says why (no_face, multiple_faces, ...)."""

    def __init__(self, reason: str, message: str = "", timings: dict[str, float] | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.timings = timings or {}


@dataclass(frozen=True)
class ModelInfo:
    version: str
    threshold: float


@dataclass(frozen=True)
class FaceEmbedding:
    """One aligned face crop (100x100x3 uint8 RGB), its embedding (float32) and stage timings in ms."""

    crop: np.ndarray
    embedding: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def get_model() -> Any:
    """The process's model, loaded (and warmed up) on first call."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                import ml

                try:
                    model = ml.load_model(settings.FACE_MODEL_PATH or None)
                except (ml.ModelError, OSError) as exc:
                    raise ModelUnavailable(f"cannot load the face model: {exc}") from exc
                model.warm_up()
                _model = model
    return _model


def configured_model_version() -> str:
    """The version in the configured model's manifest, read without loading TensorFlow."""
    import ml
    from ml.inference import read_manifest

    try:
        return str(read_manifest(settings.FACE_MODEL_PATH or ml.SHIPPED_MODEL_DIR)["version"])
    except ml.ModelError as exc:
        raise ModelUnavailable(f"cannot read the face model's manifest: {exc}") from exc


def model_info() -> ModelInfo:
    model = get_model()
    return ModelInfo(version=str(model.version), threshold=float(model.threshold))


def embed_face(data: bytes) -> FaceEmbedding:
    """Decode, detect + align the single face, embed it. Raises ``FaceRejected``."""
    import ml

    timings: dict[str, float] = {}
    start = time.perf_counter()
    try:
        rgb = ml.decode_image(data, max_pixels=settings.IMAGE_MAX_PIXELS)
    except ml.ImageError as exc:
        raise FaceRejected("unreadable_image", str(exc), {"decode_ms": _ms_since(start)}) from exc
    timings["decode_ms"] = _ms_since(start)

    start = time.perf_counter()
    try:
        crop = ml.extract_face(rgb)
    except ml.FaceError as exc:
        timings["detect_ms"] = _ms_since(start)
        reason = exc.reason if exc.reason in _FACE_REASONS else "no_face"
        raise FaceRejected(reason, str(exc), timings) from exc
    timings["detect_ms"] = _ms_since(start)

    model = get_model()
    start = time.perf_counter()
    embedding = model.embed(np.asarray(crop, dtype=np.uint8)[np.newaxis, ...])[0]
    timings["embed_ms"] = _ms_since(start)
    return FaceEmbedding(crop=np.asarray(crop, dtype=np.uint8), embedding=np.asarray(embedding, dtype=np.float32), timings=timings)


def score(probe: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, float]:
    """Siamese score of one probe embedding against M reference embeddings, and the time in ms."""
    model = get_model()
    start = time.perf_counter()
    scores = model.score(np.asarray(probe, dtype=np.float32), np.asarray(references, dtype=np.float32))
    return np.asarray(scores, dtype=np.float32).reshape(-1), _ms_since(start)
