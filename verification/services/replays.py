"""Replay checks (issue 9, item 7), called from ``checkin_process`` at two points.

1. Before any face work: a snapshot whose bytes (SHA-256, stored on the row at submit, indexed) an
   earlier check-in already sent, from any device at any time, is refused ``replayed``.
2. After the face is embedded, before scoring: a probe whose embedding has a cosine similarity above
   ``REPLAY_SIMILARITY_MAX`` with the probe of an earlier check-in of the same claimed person within
   ``REPLAY_WINDOW_SECONDS`` (and of the same model version) is refused ``replayed``: cameras never
   produce the same frame twice, so a near-identical embedding is a re-encoded or re-photographed copy.

How the bound was chosen (``bench/replay_similarity.py``, the shipped model siamese-lfw-1.0.0, the
committed fixture faces): transformed copies of one photo (JPEG quality 95/75/50, scaled 0.9/0.75,
shifted 4 px, +-3 pixel noise) scored 0.924-1.000, 42 of 55 above 0.995 (every copy at quality 75 and
7 of 8 at 95); *different* photos of the same person scored at most 0.828, different people at most
0.128. 0.995 refuses plain re-encodes and most light edits and leaves a wide margin below it for a
live face seen twice (consecutive video frames were not measured: no fixtures). It is a setting.
Re-measured with siamese-lfw-2.0.0: copies 0.973-1.000 (39 of 56 at or above 0.995), different photos
of the same person at most 0.879, different people at most 0.259; with siamese-lfw-2.1.0: copies
0.976-1.000 (39 of 56 at or above 0.995), different photos at most 0.897, different people at most
0.239; with siamese-lfw-2.2.0: copies 0.940-1.000 (45 of 56 at or above 0.995), different photos at
most 0.911, different people at most 0.207; with siamese-lfw-2.3.0: copies 0.938-1.000 (43 of 56), different
photos at most 0.915, different people at most 0.239; with siamese-lfw-3.0.0: copies 0.947-1.000 (40 of 56),
different photos at most 0.937, different people at most 0.193 (3.0.1 and 3.0.2 use 3.0.0's network, so its
embeddings: the same figures). The bound keeps its margin.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import IO

import numpy as np
from django.conf import settings

from verification.models import CheckIn

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Replay:
    """Why a check-in is a replay: the earlier check-in it repeats, and how similar (1.0: same bytes)."""

    of_checkin_id: int
    similarity: float

    def detail(self) -> dict[str, float | int]:
        return {"replay_of": self.of_checkin_id, "similarity": round(self.similarity, 6)}


def snapshot_sha256(file: IO[bytes]) -> str:
    """Hex SHA-256 of an uploaded file's bytes; leaves the file at its start."""
    digest = hashlib.sha256()
    file.seek(0)
    for chunk in iter(lambda: file.read(CHUNK_BYTES), b""):
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()


def replay_of_bytes(*, checkin: CheckIn) -> Replay | None:
    """An earlier check-in that sent exactly these bytes, or None."""
    if not checkin.snapshot_sha256:
        return None
    earlier = (
        CheckIn.objects.filter(snapshot_sha256=checkin.snapshot_sha256, pk__lt=checkin.pk)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    return Replay(of_checkin_id=earlier, similarity=1.0) if earlier is not None else None


def replay_of_probe(*, checkin: CheckIn, embedding: np.ndarray, model_version: str) -> Replay | None:
    """The most similar recent probe of the same claimed person above the bound, or None."""
    bound = settings.REPLAY_SIMILARITY_MAX
    if bound >= 1.0:
        return None
    since = checkin.created_at - timedelta(seconds=settings.REPLAY_WINDOW_SECONDS)
    recent = (
        CheckIn.objects.filter(
            claimed_external_id=checkin.claimed_external_id,
            created_at__gte=since,
            model_version=model_version,
            probe_embedding__isnull=False,
        )
        .exclude(pk=checkin.pk)
        .values_list("pk", "probe_embedding")
    )
    probe = _unit(embedding)
    best: Replay | None = None
    for pk, stored in recent:
        other = np.frombuffer(bytes(stored), dtype="<f4")
        if other.shape != probe.shape:
            continue
        similarity = float(probe @ _unit(other))
        if similarity > bound and (best is None or similarity > best.similarity):
            best = Replay(of_checkin_id=pk, similarity=similarity)
    return best


def embedding_bytes(embedding: np.ndarray) -> bytes:
    return np.asarray(embedding, dtype="<f4").tobytes()


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
