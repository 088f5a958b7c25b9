"""Large-sample verification figures: every same-person and every cross-person pair among a set of
images, TAR at strict FARs (1e-3, 1e-4) with confidence intervals, and where false accepts pile up.

The 600 listed impostor pairs of a protocol fold cannot resolve a FAR of 1e-3 (it is 0.6 of a pair);
all cross-identity pairs among the fold's images (hundreds of thousands) can. Pairs share images and
people, so their errors are not independent: confidence intervals come from a bootstrap over
*people* (each resample draws people with replacement and weights every pair by the product of its
two people's multiplicities), not from a binomial over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(M, D) x (M, D) embeddings -> (M,) pair scores, higher = more likely the same person."""


@dataclass(frozen=True)
class AllPairs:
    """Scores of all ``i < j`` image pairs, split by whether the two images show one person."""

    genuine: np.ndarray  # (G,) float32
    genuine_index: np.ndarray  # (G, 2) image indices
    impostor: np.ndarray  # (I,) float32
    impostor_index: np.ndarray  # (I, 2) image indices


def rows_scorer(embeddings: np.ndarray, scorer: PairScorer) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``scorer`` as a function of row indices into ``embeddings``; a scorer with an ``over`` method
    (:class:`ml.scoring.PairScorer`) prepares per-row work once instead of once per pair."""
    if hasattr(scorer, "over"):
        return scorer.over(embeddings)
    return lambda first, second: scorer(embeddings[first], embeddings[second])


def all_pairs(embeddings: np.ndarray, labels: np.ndarray, scorer: PairScorer, *, chunk: int = 64) -> AllPairs:
    """Score every unordered pair of distinct images (``labels``: one identity id per image)."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels)
    n = len(embeddings)
    if len(labels) != n:
        raise ValueError("one label per embedding")
    score_rows = rows_scorer(embeddings, scorer)
    gen, gen_idx, imp, imp_idx = [], [], [], []
    for start in range(0, n - 1, chunk):
        rows = np.arange(start, min(start + chunk, n - 1))
        first = np.repeat(rows, n - rows - 1)
        second = np.concatenate([np.arange(r + 1, n) for r in rows])
        scores = score_rows(first, second).astype(np.float32)
        same = labels[first] == labels[second]
        index = np.stack([first, second], axis=1)
        gen.append(scores[same])
        gen_idx.append(index[same])
        imp.append(scores[~same])
        imp_idx.append(index[~same])
    empty_i = np.zeros((0, 2), dtype=np.int64)
    return AllPairs(
        genuine=np.concatenate(gen) if gen else np.zeros(0, np.float32),
        genuine_index=np.concatenate(gen_idx) if gen_idx else empty_i,
        impostor=np.concatenate(imp) if imp else np.zeros(0, np.float32),
        impostor_index=np.concatenate(imp_idx) if imp_idx else empty_i,
    )


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The lowest threshold (accept ``score >= t``) at which at most ``far`` of ``impostor`` pass.

    Placed midway between the last impostor score allowed through and the first one kept out, so
    a tiny score shift does not flip the decision at the boundary.
    """
    scores = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    if len(scores) == 0:
        raise ValueError("no impostor scores")
    allowed = int(np.floor(far * len(scores) + 1e-9))
    # Ties: every score equal to the first one kept out is kept out too.
    while allowed > 0 and scores[allowed - 1] == scores[min(allowed, len(scores) - 1)] and allowed < len(scores):
        allowed -= 1
    if allowed >= len(scores):
        return float(scores[-1])
    blocked = scores[allowed]
    passed = scores[allowed - 1] if allowed > 0 else blocked + max(1e-6, abs(blocked) * 1e-6)
    return float((passed + blocked) / 2.0)


def rate_at(scores: np.ndarray, threshold: float) -> float:
    """Fraction of ``scores`` accepted at ``threshold`` (``score >= threshold``)."""
    scores = np.asarray(scores)
    return float((scores >= threshold).mean()) if len(scores) else float("nan")


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion (sound near 0 and 1, unlike the normal one)."""
    if trials <= 0:
        return (float("nan"), float("nan"))
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def _weighted_rate(scores_sorted_desc: np.ndarray, weights_sorted: np.ndarray, threshold: float) -> float:
    total = weights_sorted.sum()
    if total <= 0:
        return float("nan")
    count = int(np.searchsorted(-scores_sorted_desc, -threshold, side="right"))
    return float(weights_sorted[:count].sum() / total)


def _weighted_threshold(scores_sorted_desc: np.ndarray, weights_sorted: np.ndarray, far: float) -> float:
    cumulative = np.cumsum(weights_sorted)
    total = cumulative[-1]
    if total <= 0:
        return float("nan")
    allowed = int(np.searchsorted(cumulative, far * total, side="right"))
    if allowed >= len(scores_sorted_desc):
        return float(scores_sorted_desc[-1])
    return float(np.nextafter(scores_sorted_desc[allowed], np.inf))


@dataclass(frozen=True)
class Trials:
    """Verification trials with the people behind them, for a people-level bootstrap.

    A genuine trial belongs to one person; an impostor trial to two (the probe's and the claimed
    person's). Scores are higher for "more likely the same person".
    """

    genuine: np.ndarray
    genuine_people: np.ndarray  # (G,) person id
    impostor: np.ndarray
    impostor_people: np.ndarray  # (I, 2) person ids

    @classmethod
    def from_pairs(cls, pairs: AllPairs, people: np.ndarray) -> "Trials":
        people = np.asarray(people)
        return cls(pairs.genuine, people[pairs.genuine_index[:, 0]], pairs.impostor, people[pairs.impostor_index])


Statistic = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float]
"""(genuine sorted high->low, their weights, impostor sorted high->low, their weights) -> value."""


def bootstrap_people(trials: Trials, statistic: Statistic, *, resamples: int = 200, seed: int = 0) -> np.ndarray:
    """``statistic`` over resamples that draw *people* with replacement; each trial is weighted by
    the multiplicity of its person (genuine) or the product of its two people's (impostor)."""
    ids, inverse = np.unique(np.r_[trials.genuine_people, trials.impostor_people.ravel()], return_inverse=True)
    g_ids = inverse[: len(trials.genuine_people)]
    i_ids = inverse[len(trials.genuine_people):].reshape(-1, 2)
    g_order = np.argsort(-trials.genuine, kind="stable")
    i_order = np.argsort(-trials.impostor, kind="stable")
    g_sorted, i_sorted = trials.genuine[g_order], trials.impostor[i_order]
    g_person, i_first, i_second = g_ids[g_order], i_ids[i_order, 0], i_ids[i_order, 1]
    rng = np.random.default_rng(seed)
    values = np.empty(resamples, dtype=np.float64)
    for r in range(resamples):
        counts = np.bincount(rng.integers(0, len(ids), size=len(ids)), minlength=len(ids)).astype(np.float64)
        values[r] = statistic(g_sorted, counts[g_person], i_sorted, counts[i_first] * counts[i_second])
    return values


@dataclass(frozen=True)
class StrictPoint:
    far_target: float
    threshold: float
    tar: float
    tar_ci95: tuple[float, float]
    far: float
    far_ci95: tuple[float, float]

    def as_dict(self) -> dict[str, object]:
        return {
            "far_target": self.far_target, "threshold": self.threshold, "tar": self.tar,
            "tar_ci95": list(self.tar_ci95), "far": self.far, "far_ci95": list(self.far_ci95),
        }


def tar_at_far_with_ci(trials: Trials, far: float, *, resamples: int = 200, seed: int = 0) -> StrictPoint:
    """TAR at the threshold giving ``far`` on these impostor trials, with a people-bootstrap 95 % CI
    (the threshold is re-chosen in each resample, so the interval covers the threshold's noise too)."""
    threshold = threshold_at_far(trials.impostor, far)

    def tar_stat(g, gw, i, iw):
        return _weighted_rate(g, gw, _weighted_threshold(i, iw, far))

    def far_stat(g, gw, i, iw):
        return _weighted_rate(i, iw, threshold)

    tars = bootstrap_people(trials, tar_stat, resamples=resamples, seed=seed)
    fars = bootstrap_people(trials, far_stat, resamples=resamples, seed=seed + 1)
    return StrictPoint(
        far_target=far, threshold=threshold, tar=rate_at(trials.genuine, threshold),
        tar_ci95=_percentiles(tars), far=rate_at(trials.impostor, threshold), far_ci95=_percentiles(fars),
    )


def rates_with_ci(trials: Trials, threshold: float, *, resamples: int = 200, seed: int = 0) -> dict[str, object]:
    """FAR and FRR at a fixed threshold, each with a people-bootstrap 95 % CI."""
    fars = bootstrap_people(trials, lambda g, gw, i, iw: _weighted_rate(i, iw, threshold), resamples=resamples, seed=seed)
    frrs = bootstrap_people(trials, lambda g, gw, i, iw: 1.0 - _weighted_rate(g, gw, threshold), resamples=resamples, seed=seed + 1)
    return {
        "threshold": threshold,
        "far": rate_at(trials.impostor, threshold), "far_ci95": list(_percentiles(fars)),
        "frr": 1.0 - rate_at(trials.genuine, threshold), "frr_ci95": list(_percentiles(frrs)),
        "genuine_trials": int(len(trials.genuine)), "impostor_trials": int(len(trials.impostor)),
    }


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (float("nan"), float("nan"))
    low, high = np.percentile(values, [2.5, 97.5])
    return (float(low), float(high))


def false_accept_spread(pairs: AllPairs, people: np.ndarray, threshold: float, *, top: int = 10) -> dict[str, object]:
    """Where the impostor pairs at or above ``threshold`` concentrate: distinct images and people,
    the share carried by the 1 % most-involved images, and the people with the highest own FAR
    (false accepts / impostor pairs they take part in). A model whose errors pile onto a few
    people is unfair to them and easy to attack through them."""
    people = np.asarray(people)
    accepted_mask = pairs.impostor >= threshold
    accepted = pairs.impostor_index[accepted_mask]
    n_images = len(people)
    per_image = np.bincount(accepted.ravel(), minlength=n_images) if len(accepted) else np.zeros(n_images, np.int64)
    top_images = max(1, n_images // 100)
    top_share = float(np.sort(per_image)[::-1][:top_images].sum() / max(1, per_image.sum()))
    ids, inverse = np.unique(people, return_inverse=True)
    opportunities = np.bincount(inverse[pairs.impostor_index].ravel(), minlength=len(ids))
    errors = np.bincount(inverse[accepted].ravel(), minlength=len(ids)) if len(accepted) else np.zeros(len(ids), np.int64)
    own_far = np.divide(errors, opportunities, out=np.zeros(len(ids)), where=opportunities > 0)
    worst = np.argsort(-own_far, kind="stable")[:top]
    return {
        "threshold": float(threshold),
        "false_accepts": int(len(accepted)),
        "far": float(accepted_mask.mean()) if len(accepted_mask) else float("nan"),
        "distinct_images": int((per_image > 0).sum()),
        "distinct_people": int((errors > 0).sum()),
        "share_on_top_1pct_images": top_share,
        "highest_own_far": [{"person": str(ids[i]), "far": float(own_far[i]), "false_accepts": int(errors[i]),
                             "impostor_pairs": int(opportunities[i])} for i in worst if errors[i] > 0],
    }
