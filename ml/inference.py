"""Load a model directory and run it: embed faces with the tower, score with the Siamese head.

A model directory holds ``model.keras`` (the whole Siamese network, what training and evaluation of
training runs read), ``manifest.json`` (version, calibrated threshold, training config, data
fingerprint, evaluation report) and the serving files :mod:`ml.convert` derives from the network:
``tower.tflite`` (the tower as TensorFlow Lite) and ``head.npz`` (the head's weights). With those the
model runs on LiteRT alone, without TensorFlow: that is how the worker runs it, and what
``python -m ml evaluate`` measures. A directory without them (the older models kept for reproduction)
loads ``model.keras`` with TensorFlow instead; the embeddings agree within 1e-5 (``tests/ml/test_lite.py``). Models are cached per process per resolved path, so every caller shares one copy.

Scoring a probe against cached reference embeddings needs only the head: ``sigmoid(w . |p - r| + b)``
in NumPy, which is what the Keras head computes (tested equal), without a network call.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ml.scoring import PairScorer, head_logits, sigmoid
from ml.types import FACE_SIZE, Embeddings, FaceBatch

SHIPPED_MODEL_DIR = Path(__file__).resolve().parent / "models" / "siamese-lfw-3"
MODEL_FILE = "model.keras"
TOWER_LITE_FILE = "tower.tflite"
HEAD_FILE = "head.npz"
MANIFEST_FILE = "manifest.json"
COHORT_FILE = "cohort.npy"

_cache: dict[Path, "FaceModel"] = {}
_cache_lock = threading.Lock()


class ModelError(RuntimeError):
    """A model directory is missing, incomplete or inconsistent."""


def read_manifest(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(model_dir) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelError(f"no {MANIFEST_FILE} in {model_dir}") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    for key in ("version", "threshold"):
        if key not in manifest:
            raise ModelError(f"{path} has no '{key}'")
    threshold = manifest["threshold"]
    if not isinstance(threshold, (int, float)) or not 0.0 <= float(threshold) <= 1.0:
        raise ModelError(f"{path}: threshold must be a number in [0, 1], got {threshold!r}")
    return manifest


def training_seed(manifest: dict[str, Any]) -> int:
    """The seed the model was trained with: its operating point's enrolment draws were seeded with it, so
    every re-derivation of those trials (review band, recalibration, benches) must use it too."""
    return int(((manifest.get("training") or {}).get("config") or {}).get("seed", 0))


def make_embed_fn(tower: Any, *, flip_average: bool) -> Any:
    """A traced ``(N, 100, 100, 3) uint8 -> (N, D)`` function over ``tower`` (inference mode).

    With ``flip_average`` the embedding is the normalised sum of the face's and its mirror's,
    computed in one batched tower call; training validation and serving share this function.
    """
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, FACE_SIZE, FACE_SIZE, 3), tf.uint8)])
    def embed(faces):
        if not flip_average:
            return tower(faces, training=False)
        both = tower(tf.concat([faces, tf.reverse(faces, axis=[2])], axis=0), training=False)
        n = tf.shape(faces)[0]
        return tf.math.l2_normalize(both[:n] + both[n:], axis=1)

    return embed


def make_lite_embed_fn(tower: Any, *, flip_average: bool) -> Any:
    """:func:`make_embed_fn` over a LiteRT tower (:class:`ml.lite.LiteNetwork`): NumPy in, NumPy out."""

    def embed(faces: np.ndarray) -> np.ndarray:
        if not flip_average:
            return tower(faces)[0]
        both = tower(np.concatenate([faces, faces[:, :, ::-1]]))[0]
        summed = both[: len(faces)] + both[len(faces) :]
        return summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)

    return embed


def embed_in_batches(embed_fn: Any, faces: FaceBatch, batch_size: int = 256) -> Embeddings:
    """Run ``embed_fn`` (faces -> NumPy embeddings) over many faces without one huge batch."""
    chunks = [np.asarray(embed_fn(faces[i : i + batch_size])) for i in range(0, len(faces), batch_size)]
    return np.concatenate(chunks).astype(np.float32, copy=False)


def head_scores(first: np.ndarray, second: np.ndarray, kernel: np.ndarray, bias: float) -> np.ndarray:
    """The Siamese head in NumPy: ``sigmoid(|a - b| . w + b)`` row by row (broadcasting allowed)."""
    return sigmoid(head_logits(first, second, kernel, bias))


class FaceModel:
    """A loaded Siamese model: ``embed`` faces once, ``score`` a probe against references cheaply."""

    def __init__(self, model_dir: str | os.PathLike[str]):
        self.path = Path(model_dir)
        self.manifest: dict[str, Any] = read_manifest(self.path)
        self.version: str = str(self.manifest["version"])
        self.threshold: float = float(self.manifest["threshold"])
        self.flip_average = bool(self.manifest.get("inference", {}).get("flip_average", True))
        if (self.path / TOWER_LITE_FILE).is_file() and (self.path / HEAD_FILE).is_file():
            self.runtime = "litert"
            head_w, head_b, self._embed_fn = self._load_lite()
        elif (self.path / MODEL_FILE).is_file():
            self.runtime = "tensorflow"
            head_w, head_b, self._embed_fn = self._load_keras()
        else:
            raise ModelError(f"no {TOWER_LITE_FILE} and {HEAD_FILE} (nor {MODEL_FILE}) in {self.path}")
        self._head_w, self._head_b = head_w.astype(np.float32), np.float32(head_b)
        self.embedding_dim = int(self._head_w.shape[0])
        self.scorer = self.scorer_for(cohort_norm=bool(self.manifest.get("scoring", {}).get("cohort_norm", False)))
        # How k references make one decision score (ml.operating_point); manifests before it: the mean.
        from ml.operating_point import MEAN_RULE, check_rule

        try:
            self.rule: str = check_rule(str(self.manifest.get("operating_point", {}).get("rule", MEAN_RULE)))
        except ValueError as exc:
            raise ModelError(f"{self.path}: {exc}") from None

    def _load_lite(self) -> tuple[np.ndarray, float, Any]:
        from ml.lite import LiteNetwork

        with np.load(self.path / HEAD_FILE, allow_pickle=False) as head:
            kernel, bias = head["kernel"], float(head["bias"])
        tower = LiteNetwork(self.path / TOWER_LITE_FILE, pad_batch=True)
        return kernel, bias, make_lite_embed_fn(tower, flip_average=self.flip_average)

    def _load_keras(self) -> tuple[np.ndarray, float, Any]:
        import keras

        from ml import layers as _registered_layers  # noqa: F401  (registers the custom layers)
        from ml.model import HEAD_NAME, TOWER_NAME

        siamese = keras.models.load_model(self.path / MODEL_FILE, compile=False)
        kernel, bias = siamese.get_layer(HEAD_NAME).get_weights()
        embed = make_embed_fn(siamese.get_layer(TOWER_NAME), flip_average=self.flip_average)
        return kernel[:, 0], float(bias[0]), lambda faces: embed(faces).numpy()

    def scorer_for(self, *, cohort_norm: bool) -> PairScorer:
        """The head's pair scorer, AS-normalised against the directory's cohort or raw (``scorer`` is the
        manifest's choice; ``ml operating-point --scoring`` chooses thresholds under the other)."""
        return PairScorer(self._head_w, float(self._head_b), self._load_cohort() if cohort_norm else None,
                          top_k=int(self.manifest.get("scoring", {}).get("cohort_top_k", 100)))

    def _load_cohort(self) -> np.ndarray:
        """The AS-norm cohort (see ml.scoring)."""
        path = self.path / COHORT_FILE
        if not path.is_file():
            raise ModelError(f"{self.path}: cohort normalisation needs {COHORT_FILE}, which is missing")
        cohort = np.load(path, allow_pickle=False).astype(np.float32)
        if cohort.ndim != 2 or cohort.shape[1] != self.embedding_dim:
            raise ModelError(f"{path}: expected (N, {self.embedding_dim}) embeddings, got {cohort.shape}")
        return cohort

    def thresholds(self) -> dict[int, float]:
        """Threshold per number of references (under ``rule``), from the manifest's operating point;
        models without one use the single ``threshold`` for every count."""
        per_k = self.manifest.get("operating_point", {}).get("thresholds", {})
        return {int(k): float(v) for k, v in per_k.items()}

    def threshold_for(self, references: int) -> float:
        """The threshold for a person with ``references`` enrolled photos: the calibrated one for that
        count, the largest calibrated count's beyond it (more references only lower the FAR)."""
        from ml.operating_point import threshold_for_count

        return threshold_for_count(self.thresholds(), self.threshold, references)

    def embed(self, faces: FaceBatch) -> Embeddings:
        """(N, 100, 100, 3) uint8 aligned crops -> (N, D) float32, rows L2-normalised."""
        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (FACE_SIZE, FACE_SIZE, 3):
            raise ValueError(f"expected uint8 faces of shape (N, {FACE_SIZE}, {FACE_SIZE}, 3), got {faces.dtype} {faces.shape}")
        if len(faces) == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return embed_in_batches(self._embed_fn, faces)

    def score(self, probe: np.ndarray, references: np.ndarray) -> np.ndarray:
        """P(same person) of ``probe`` (D,) against each row of ``references`` (M, D) -> (M,) float32."""
        probe = np.asarray(probe, dtype=np.float32)
        references = np.asarray(references, dtype=np.float32)
        if references.ndim == 1:
            references = references[None, :]
        if probe.shape != (self.embedding_dim,) or references.ndim != 2 or references.shape[1] != self.embedding_dim:
            raise ValueError(
                f"expected probe ({self.embedding_dim},) and references (M, {self.embedding_dim}), "
                f"got {probe.shape} and {references.shape}"
            )
        return self.scorer.scores(references, probe[None, :])

    def decision_score(self, probe: np.ndarray, references: np.ndarray, scores: np.ndarray | None = None) -> float:
        """The one score the threshold is compared with, under the model's ``rule``: the mean of the
        per-reference ``scores`` (computed when not given), or the probe's score against the template."""
        from ml.operating_point import TEMPLATE_RULE, template_of

        references = np.asarray(references, dtype=np.float32)
        if references.ndim == 1:
            references = references[None, :]
        if self.rule == TEMPLATE_RULE:
            return float(self.score(probe, template_of(references)[None, :])[0])
        return float(np.mean(scores if scores is not None else self.score(probe, references)))

    def score_pairs(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Row-wise P(same person) of two (M, D) embedding arrays (evaluation over protocol pairs)."""
        first, second = np.asarray(first, np.float32), np.asarray(second, np.float32)
        if first.shape != second.shape or first.ndim != 2 or first.shape[1] != self.embedding_dim:
            raise ValueError(f"expected two (M, {self.embedding_dim}) arrays, got {first.shape} and {second.shape}")
        return self.scorer.scores(first, second)

    def decide(self, score: float) -> bool:
        """The deployed decision rule: same person when the score reaches the calibrated threshold."""
        return bool(score >= self.threshold)

    def warm_up(self) -> None:
        """Run the tower once at batch 1 so the first real request does not pay for planning it."""
        faces = np.zeros((1, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
        self.score(self.embed(faces)[0], self.embed(faces))


def load_model(path: str | os.PathLike[str] | None = None) -> FaceModel:
    """The model at ``path`` (a model directory; None = the shipped one), loaded once per process."""
    model_dir = Path(path if path is not None else SHIPPED_MODEL_DIR).expanduser().resolve()
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} does not exist")
    with _cache_lock:
        model = _cache.get(model_dir)
        if model is None:
            model = _cache[model_dir] = FaceModel(model_dir)
        return model
