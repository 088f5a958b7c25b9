"""The one bridge between the app and the model package ``ml``.

Only Celery workers (and eager in-process tasks on a laptop) call into here; ``ml`` and its runtime
(LiteRT, which runs the networks as TensorFlow Lite files; the worker has no TensorFlow) are imported
lazily inside the functions, so importing this module costs nothing and the web process never loads
the model. The model is loaded once per process, on first use, then kept.

Before the load, the networks' (and OpenCV's) threads are sized so that the worker processes of one
host share its cores instead of each assuming it has all of them (``worker_tf_threads``); after it,
the tower and the three MTCNN networks run once on drawn door frames, so the first check-ins find
their tensors planned (bench/README.md has the figures).

Face problems come back as ``FaceRejected`` with a reason the decision can store; the ``ml``
exception types never leak past this module.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

from verification.errors import ModelUnavailable

logger = logging.getLogger(__name__)

# Set by ``accesscontrol.celery`` in the worker's main process before it forks its pool.
POOL_PROCESSES_ENV = "WORKER_POOL_PROCESSES"

# Reasons the rest of the app knows about; anything else from ``ml`` is an unreadable image.
_FACE_REASONS = {"no_face", "face_too_small", "multiple_faces"}

_model: Any = None
_model_lock = threading.Lock()


class FaceRejected(Exception):
    """The image is unusable for verification; ``reason`` says why (no_face, face_too_small, multiple_faces, ...)."""

    def __init__(self, reason: str, message: str = "", timings: dict[str, float] | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.timings = timings or {}


@dataclass(frozen=True)
class ModelInfo:
    """The loaded model's version and operating point.

    ``thresholds`` maps a reference count to the threshold the model's ``rule`` was calibrated for at
    that count (empty for a model with one threshold); ``threshold`` is the one-reference threshold.
    """

    version: str
    threshold: float
    # How the k reference scores make the decision score (``ml.operating_point``): "mean" or "template".
    rule: str = "mean"
    thresholds: tuple[tuple[int, float], ...] = ()
    # The manifest's ``operating_point``: the FAR the thresholds were chosen for, and the FAR expected at
    # each reference count on the model's own calibration people (empty for a manifest without one).
    target_far: float | None = None
    promised_far: tuple[tuple[int, float], ...] = ()
    # Where the thresholds come from: "model" (the manifest) or "site:<id>" (a SiteCalibration row,
    # ``services/thresholds.py``). Every decision's audit entry records it.
    threshold_source: str = "model"
    # The review band's lower edge per reference count (the manifest's ``review_band``, or the site's):
    # between it and the admit threshold a guard decides (``services/reviews.py``). Empty: no band.
    review_thresholds: tuple[tuple[int, float], ...] = ()
    # The FAR the lower edge was chosen for, and per count the expected FAR / FRR there (shown to guards).
    review_far: float | None = None
    review_expected: tuple[tuple[int, float, float], ...] = ()  # (k, far, frr)

    def threshold_for(self, references: int) -> float:
        """The threshold for a person with ``references`` ready photos (the largest calibrated count's
        beyond it: more references only lower the false-accept rate)."""
        from ml.operating_point import threshold_for_count  # worker-side module: ml is importable here

        return threshold_for_count(dict(self.thresholds), self.threshold, references)

    def review_threshold_for(self, references: int) -> float | None:
        """The review band's lower edge for ``references`` ready photos, never above the admit threshold;
        None when this model (or site calibration) has no band."""
        if not self.review_thresholds:
            return None
        from ml.operating_point import threshold_for_count

        per_k = dict(self.review_thresholds)
        return min(threshold_for_count(per_k, per_k[min(per_k)], references), self.threshold_for(references))


@dataclass(frozen=True)
class FaceEmbedding:
    """One aligned face crop (100x100x3 uint8 RGB), its embedding (float32) and stage timings in ms."""

    crop: np.ndarray
    embedding: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    # The five landmarks (left eye, right eye, nose, mouth left, mouth right) as x, y in the decoded
    # photo, for the enrolment quality checks (``verification/quality.py``); None when not known.
    landmarks: np.ndarray | None = None


@dataclass(frozen=True)
class AlignedFace:
    """The principal face of a photo: its aligned 100x100x3 uint8 RGB crop and its (5, 2) landmarks."""

    crop: np.ndarray
    landmarks: np.ndarray
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

                start = time.perf_counter()
                _configure_threads(worker_tf_threads())
                try:
                    model = ml.load_model(settings.FACE_MODEL_PATH or None)
                except (ml.ModelError, OSError) as exc:
                    raise ModelUnavailable(f"cannot load the face model: {exc}") from exc
                model.warm_up()
                _warm_up_detector()
                _model = model
                logger.info("face model %s loaded and warmed up in %.0f ms", model.version, _ms_since(start))
    return _model


def loaded_model_version() -> str:
    """The version of the model this process has loaded; "" before the first load (never loads it)."""
    model = _model
    return str(model.version) if model is not None else ""


def worker_tf_threads() -> int:
    """Threads each network (and OpenCV) may use in this process.

    ``WORKER_TF_THREADS`` when set; otherwise the CPUs this process may use (cgroup quota included)
    split evenly between the pool processes of its worker, at least one. Without the split, N
    worker processes would each start a pool as wide as the machine and fight over the cores.
    """
    if settings.WORKER_TF_THREADS:
        return int(settings.WORKER_TF_THREADS)
    raw = os.environ.get(POOL_PROCESSES_ENV, "").strip()
    processes = int(raw) if raw.isascii() and raw.isdigit() and int(raw) > 0 else 1
    return max(1, available_cpus() // processes)


def available_cpus() -> int:
    """CPUs this process may run on, capped by a container's CPU quota (as Celery sizes its pool)."""
    from celery.utils.sysinfo import cpu_budget

    return cpu_budget(use_cgroup_quota=True).count


def _configure_threads(threads: int) -> None:
    import cv2

    from ml.lite import set_threads

    cv2.setNumThreads(threads)
    set_threads(threads)  # every network (tower, MTCNN) is created after this, with this many threads
    logger.info("the networks (TensorFlow Lite) and OpenCV use %d thread(s) in this process", threads)


def warm_up_frame() -> np.ndarray:
    """A 640x480 RGB frame with a drawn face that MTCNN finds with high confidence.

    Drawn rather than read from a photo so the worker carries no biometric sample. A face, not a
    blank frame: MTCNN's second and third networks only run on candidates from the first.
    """
    import cv2

    frame = np.full((480, 640, 3), 200, np.uint8)
    cv2.ellipse(frame, (320, 240), (90, 120), 0, 0, 360, (200, 160, 140), -1)
    for x in (285, 355):
        cv2.ellipse(frame, (x, 215), (18, 9), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(frame, (x, 215), 7, (40, 30, 30), -1)
        cv2.line(frame, (x - 22, 192), (x + 22, 190), (60, 40, 30), 5)
    cv2.line(frame, (320, 225), (312, 270), (150, 110, 100), 4)
    cv2.ellipse(frame, (320, 300), (30, 10), 0, 0, 180, (120, 60, 60), 5)
    drawn = cv2.GaussianBlur(frame, (9, 9), 3)
    # Shown at 0.6x (a ~110 px face): at the detector's search scale for 24 px faces the drawing at
    # full size scores 0.87, under MIN_CONFIDENCE; at 0.6x it scores 0.93.
    small = cv2.resize(drawn, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    out = np.full_like(drawn, 200)
    top, left = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    return out


def warm_up_frames() -> list[np.ndarray]:
    """The drawn face upright, upside down, and at half size: three different candidate counts.

    Each network plans its tensors once per input shape (``ml.lite``): PNet per pyramid level, RNet and
    ONet per power-of-two number of candidates. These 640x480 frames, through both searches a check-in
    runs (``ml.align.find_principal_face``), plan every level of a door's frame and the common candidate
    counts here instead of on the first doors' check-ins.
    """
    import cv2

    upright = warm_up_frame()
    small = np.full_like(upright, 200)
    small[120:360, 160:480] = cv2.resize(upright, (320, 240), interpolation=cv2.INTER_AREA)
    return [upright, np.ascontiguousarray(upright[::-1]), small]


def _warm_up_detector() -> None:
    """Load MTCNN and plan its networks for a door's frames (what the first check-ins would pay otherwise)."""
    import ml

    upright, *others = warm_up_frames()
    try:
        ml.extract_face(upright)
    except ml.FaceError:
        # Still loaded and partly warm; a detector that no longer sees the drawing only costs speed.
        logger.warning("detector warm-up frame was not seen as one face; the first check-ins will be slower")
    for frame in others:
        ml.detect_faces(frame)


def configured_model_version() -> str:
    """The version in the configured model's manifest, read without loading the model."""
    import ml
    from ml.inference import read_manifest

    try:
        return str(read_manifest(settings.FACE_MODEL_PATH or ml.SHIPPED_MODEL_DIR)["version"])
    except ml.ModelError as exc:
        raise ModelUnavailable(f"cannot read the face model's manifest: {exc}") from exc


def model_info() -> ModelInfo:
    model = get_model()
    operating = (getattr(model, "manifest", None) or {}).get("operating_point") or {}
    target_far = operating.get("target_far")
    promised = {
        int(k): float(row["far"]) for k, row in (operating.get("expected") or {}).items()
        if isinstance(row, dict) and isinstance(row.get("far"), (int, float))
    }
    band = (getattr(model, "manifest", None) or {}).get("review_band") or {}
    review_far = band.get("review_far")
    return ModelInfo(version=str(model.version), threshold=float(model.threshold), rule=str(getattr(model, "rule", "mean")),
                     thresholds=tuple(sorted(model.thresholds().items())),
                     target_far=None if target_far is None else float(target_far),
                     promised_far=tuple(sorted(promised.items())),
                     review_thresholds=tuple(sorted((int(k), float(v)) for k, v in (band.get("thresholds") or {}).items())),
                     review_far=None if review_far is None else float(review_far),
                     review_expected=tuple(sorted(
                         (int(k), float(row["far"]), float(row["frr"]))
                         for k, row in (band.get("per_references") or {}).items()
                         if isinstance(row, dict) and isinstance(row.get("far"), (int, float))
                         and isinstance(row.get("frr"), (int, float))
                     )))


def _decode(data: bytes) -> tuple[np.ndarray, dict[str, float]]:
    """The decoded RGB frame and its decode time; an unreadable image becomes ``FaceRejected``."""
    import ml

    start = time.perf_counter()
    try:
        rgb = ml.decode_image(data, max_pixels=settings.IMAGE_MAX_PIXELS)
    except ml.ImageError as exc:
        raise FaceRejected("unreadable_image", str(exc), {"decode_ms": _ms_since(start)}) from exc
    return rgb, {"decode_ms": _ms_since(start)}


def _face_rejected(exc: Exception, timings: dict[str, float]) -> FaceRejected:
    """``ml``'s face error as the rejection the app knows (an unknown reason reads as no face)."""
    reason = getattr(exc, "reason", "")
    return FaceRejected(reason if reason in _FACE_REASONS else "no_face", str(exc), timings)


def _decode_and_detect(data: bytes, detect: Any) -> tuple[np.ndarray, np.ndarray | None, dict[str, float]]:
    """Decode ``data`` and run ``detect(rgb) -> (crop, landmarks or None)``: the aligned crop, the
    landmarks and the decode/detect timings. Image and face problems become ``FaceRejected``."""
    import ml

    rgb, timings = _decode(data)
    start = time.perf_counter()
    try:
        crop, landmarks = detect(rgb)
    except ml.FaceError as exc:
        timings["detect_ms"] = _ms_since(start)
        raise _face_rejected(exc, timings) from exc
    timings["detect_ms"] = _ms_since(start)
    return np.asarray(crop, dtype=np.uint8), landmarks, timings


def _principal_with_landmarks(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from ml.align import align_face as align, find_principal_face

    face = find_principal_face(rgb)  # as ml.extract_face, keeping the landmarks
    return align(rgb, face.landmarks), np.asarray(face.landmarks, np.float64)


def align_face(data: bytes) -> AlignedFace:
    """Decode, detect the principal face (``ml.align``'s face policy) and align it; no embedding, so
    only the detector loads. Raises ``FaceRejected``."""
    crop, landmarks, timings = _decode_and_detect(data, _principal_with_landmarks)
    return AlignedFace(crop=crop, landmarks=landmarks, timings=timings)


def _embedded(crop: np.ndarray, timings: dict[str, float], landmarks: np.ndarray | None = None) -> FaceEmbedding:
    model = get_model()
    start = time.perf_counter()
    embedding = model.embed(crop[np.newaxis, ...])[0]
    timings = {**timings, "embed_ms": _ms_since(start)}
    return FaceEmbedding(crop=crop, embedding=np.asarray(embedding, dtype=np.float32), timings=timings, landmarks=landmarks)


def embed_face(data: bytes) -> FaceEmbedding:
    """Decode, detect + align the principal face (``ml.align``'s face policy), embed it. Raises ``FaceRejected``."""
    import ml

    crop, _, timings = _decode_and_detect(data, lambda rgb: (ml.extract_face(rgb), None))
    return _embedded(crop, timings)


def embed_faces(datas: list[bytes]) -> list[FaceEmbedding | FaceRejected]:
    """:func:`embed_face` for several snapshots at once, one result (or rejection) per snapshot, in order.

    Same-sized frames share one call of the face search's first, coarse step
    (``ml.align.coarse_search_batch``) and all faces one call of the network: per frame that costs less
    than one at a time (bench/README.md). Each frame gets exactly the face policy and the crop it would
    get alone; one bad frame rejects only itself. A frame's timings are its own decode and its share of
    the batched steps.
    """
    import ml
    from ml import align

    results: list[FaceEmbedding | FaceRejected | None] = [None] * len(datas)
    frames: dict[int, np.ndarray] = {}
    timings: list[dict[str, float]] = [{} for _ in datas]
    for index, data in enumerate(datas):
        try:
            frames[index], timings[index] = _decode(data)
        except FaceRejected as rejected:
            results[index] = rejected

    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, rgb in frames.items():
        by_shape.setdefault(rgb.shape, []).append(index)
    crops: dict[int, np.ndarray] = {}
    for indices in by_shape.values():
        start = time.perf_counter()
        first = align.coarse_search_batch([frames[i] for i in indices])
        shared_ms = _ms_since(start) / len(indices)
        for index, faces in zip(indices, first):
            start = time.perf_counter()
            try:
                face = align.principal_after_coarse_search(frames[index], faces)
                crops[index] = align.align_face(frames[index], face.landmarks)
            except ml.FaceError as exc:
                results[index] = _face_rejected(exc, timings[index])
            finally:
                timings[index]["detect_ms"] = round(shared_ms + _ms_since(start), 3)

    if crops:
        order = sorted(crops)
        start = time.perf_counter()
        embeddings = get_model().embed(np.stack([crops[i] for i in order]))
        embed_ms = round(_ms_since(start) / len(order), 3)
        for index, embedding in zip(order, embeddings):
            results[index] = FaceEmbedding(crop=np.asarray(crops[index], dtype=np.uint8),
                                           embedding=np.asarray(embedding, dtype=np.float32),
                                           timings={**timings[index], "embed_ms": embed_ms})
    return results  # type: ignore[return-value]  # every slot is filled above


def embed_reference_face(data: bytes) -> FaceEmbedding:
    """As :func:`embed_face`, with the face's landmarks kept for the enrolment quality checks."""
    face = align_face(data)
    return _embedded(face.crop, face.timings, face.landmarks)


def score(probe: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, float]:
    """Siamese score of one probe embedding against M reference embeddings, and the time in ms."""
    model = get_model()
    start = time.perf_counter()
    scores = model.score(np.asarray(probe, dtype=np.float32), np.asarray(references, dtype=np.float32))
    return np.asarray(scores, dtype=np.float32).reshape(-1), _ms_since(start)


def decision_score(probe: np.ndarray, references: np.ndarray, scores: np.ndarray) -> float:
    """The one score compared with the threshold, under the model's rule (``scores``: :func:`score`'s)."""
    return get_model().decision_score(np.asarray(probe, np.float32), np.asarray(references, np.float32), scores)


def score_pairs(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise Siamese scores of two (M, D) arrays of stored embeddings (the head only, no images)."""
    model = get_model()
    return np.asarray(model.score_pairs(np.asarray(first, np.float32), np.asarray(second, np.float32)),
                      dtype=np.float32).reshape(-1)


# --- Site calibration: ``ml``'s NumPy helpers (``ml.largescale``, ``ml.operating_point``) ---------------
# Pure NumPy, but imported lazily like everything from ``ml``: the web process never imports it.


def checkin_trials(embeddings: np.ndarray, people: np.ndarray, *, references: int,
                   scorer: Any, draws: int = 3, seed: int = 0, rule: str | None = None) -> Any:
    """Check-in-like trials (an ``ml.largescale.Trials``) among stored embeddings, ``people`` one id a row.

    One reference: every same-person pair is a genuine trial, every cross-person pair an impostor trial.
    ``references`` k > 1: the loaded model's rule, as its operating point was chosen (``ml.operating_point``):
    every row a probe against every other person enrolled with k of their rows (``draws`` seeded
    enrolments; only people with k + 1 rows are enrolled), genuine trials their remaining rows.
    ``scorer``: (M, D) x (M, D) -> (M,), e.g. :func:`score_pairs`.
    """
    from ml.largescale import Trials, all_pairs
    from ml.operating_point import draw_enrolments, reference_trials

    embeddings = np.asarray(embeddings, dtype=np.float32)
    people = np.asarray(people)
    if references == 1:
        return Trials.from_pairs(all_pairs(embeddings, people, scorer), people)
    enrolments = draw_enrolments(people, references, draws=draws, seed=seed)
    if not enrolments or not enrolments[0].references:
        return Trials(np.zeros(0, np.float32), people[:0], np.zeros(0, np.float32), np.zeros((0, 2), people.dtype))
    return reference_trials(embeddings, people, scorer, enrolments, rule=rule or get_model().rule)


def rates_with_ci(trials: Any, threshold: float, *, resamples: int = 200, seed: int = 0) -> dict[str, Any]:
    """FAR and FRR of ``trials`` at ``threshold`` with people-bootstrap 95 % intervals (``ml.largescale``)."""
    from ml.largescale import rates_with_ci as rates

    return rates(trials, threshold, resamples=resamples, seed=seed)


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The lowest threshold letting at most ``far`` of ``impostor`` through (``ml.largescale``)."""
    from ml.largescale import threshold_at_far as at_far

    return at_far(impostor, far)
