"""Pair scores from embeddings: the Siamese head, optionally normalised against a cohort of faces.

Raw score: the head's ``sigmoid(w . |a - b| + b)``. Some faces ("hubs") sit close to many others
and collect most of a model's false accepts; a fixed threshold then fails the same few people over
and over. Adaptive symmetric normalisation (AS-norm) measures how strongly each face matches a
cohort of *training* faces (mean and spread of its top-``k`` cohort logits) and rescales the pair's
logit on both sides:

    s = ((l - mu_a) / sd_a + (l - mu_b) / sd_b) / 2,    score = sigmoid(s)

so a face that resembles everybody has to resemble the claimed person *more than usual*. The
cohort ships with the model (``cohort.npy``: embeddings of one photo each of training people, never
of held-out people); whether a model uses it is decided on held-back training people when the
model is exported, and recorded in its manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def head_logits(first: np.ndarray, second: np.ndarray, kernel: np.ndarray, bias: float) -> np.ndarray:
    """``|a - b| . w + b`` row by row (broadcasting allowed): the head before its sigmoid."""
    return np.abs(np.asarray(first, np.float32) - np.asarray(second, np.float32)) @ np.asarray(kernel, np.float32) + np.float32(bias)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(-np.abs(logits))  # stable: exp of a non-positive number never overflows
    return np.where(logits >= 0, 1.0 / (1.0 + exp), exp / (1.0 + exp)).astype(np.float32)


@dataclass(frozen=True)
class CohortStats:
    mean: np.ndarray  # (N,)
    std: np.ndarray  # (N,)


class PairScorer:
    """Scores pairs of embeddings with the head, AS-normalised when a cohort is given."""

    def __init__(self, kernel: np.ndarray, bias: float, cohort: np.ndarray | None = None, *, top_k: int = 100):
        self.kernel = np.asarray(kernel, np.float32)
        self.bias = float(bias)
        self.cohort = None if cohort is None else np.asarray(cohort, np.float32)
        if self.cohort is not None and len(self.cohort) < 2:
            raise ValueError("a cohort needs at least two faces")
        self.top_k = int(min(top_k, len(self.cohort))) if self.cohort is not None else 0

    @property
    def normalised(self) -> bool:
        return self.cohort is not None

    def stats(self, embeddings: np.ndarray, *, chunk: int = 256) -> CohortStats:
        """Mean and spread of each embedding's ``top_k`` highest cohort logits."""
        if self.cohort is None:
            raise ValueError("no cohort")
        embeddings = np.asarray(embeddings, np.float32).reshape(-1, self.kernel.shape[0])
        means, stds = [], []
        for start in range(0, len(embeddings), chunk):
            logits = head_logits(embeddings[start : start + chunk, None, :], self.cohort[None], self.kernel, self.bias)
            top = np.partition(logits, -self.top_k, axis=1)[:, -self.top_k :]
            means.append(top.mean(axis=1))
            stds.append(np.maximum(top.std(axis=1), 1e-3))
        if not means:
            return CohortStats(np.zeros(0, np.float32), np.zeros(0, np.float32))
        return CohortStats(np.concatenate(means), np.concatenate(stds))

    def scores(self, first: np.ndarray, second: np.ndarray, first_stats: CohortStats | None = None,
               second_stats: CohortStats | None = None) -> np.ndarray:
        """Row-wise scores in (0, 1) of two (M, D) arrays (or one row against M, by broadcasting)."""
        first, second = np.asarray(first, np.float32), np.asarray(second, np.float32)
        logits = head_logits(first, second, self.kernel, self.bias)
        if self.cohort is None:
            return sigmoid(logits)
        a = first_stats if first_stats is not None else self.stats(first)
        b = second_stats if second_stats is not None else self.stats(second)
        normalised = 0.5 * ((logits - a.mean) / a.std + (logits - b.mean) / b.std)
        return sigmoid(normalised)

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return self.scores(first, second)

    def over(self, embeddings: np.ndarray):
        """A scorer of *row indices* into ``embeddings``, with each row's cohort statistics computed
        once (scoring millions of pairs among a few thousand faces)."""
        embeddings = np.asarray(embeddings, np.float32)
        stats = self.stats(embeddings) if self.cohort is not None else None

        def score_rows(first: np.ndarray, second: np.ndarray) -> np.ndarray:
            if stats is None:
                return self.scores(embeddings[first], embeddings[second])
            return self.scores(embeddings[first], embeddings[second],
                               CohortStats(stats.mean[first], stats.std[first]),
                               CohortStats(stats.mean[second], stats.std[second]))

        return score_rows


def cohort_rows(people: np.ndarray, *, size: int, seed: int) -> np.ndarray:
    """Row indices of one random photo each of ``size`` random people (seeded)."""
    people = np.asarray(people)
    rng = np.random.default_rng([seed, 9])
    unique = np.unique(people)
    chosen = rng.choice(unique, size=min(size, len(unique)), replace=False)
    return np.asarray([int(rng.choice(np.flatnonzero(people == person))) for person in chosen], dtype=np.int64)
