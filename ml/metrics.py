"""Verification metrics over pair scores, in NumPy (the same code serves validation, calibration, test).

Convention: ``labels`` are 1 for same-person pairs, ``scores`` are higher for "more likely same",
and a pair is accepted when ``score >= threshold``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Roc:
    """ROC points for thresholds from high to low: ``fpr[i]``/``tpr[i]`` when accepting ``score >= thresholds[i]``."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError("labels and scores differ in length")
    if not labels.any() or labels.all():
        raise ValueError("need both same-person and different-person pairs")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    return labels, scores


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> Roc:
    """Every distinct score as a threshold, plus +inf (accept nothing) first."""
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # Last index of each run of equal scores: accepting ">= that score" takes the whole run.
    distinct = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    tp = np.cumsum(sorted_labels)[distinct]
    fp = (distinct + 1) - tp
    tpr = np.r_[0.0, tp / labels.sum()]
    fpr = np.r_[0.0, fp / (~labels).sum()]
    thresholds = np.r_[np.inf, sorted_scores[distinct]]
    return Roc(fpr=fpr, tpr=tpr, thresholds=thresholds)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    roc = roc_curve(labels, scores)
    return float(np.trapezoid(roc.tpr, roc.fpr))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """Where the false accept rate meets the false reject rate (linear interpolation on the ROC)."""
    roc = roc_curve(labels, scores)
    fnr = 1.0 - roc.tpr
    diff = roc.fpr - fnr  # rises from -1 to +1 along the curve
    i = int(np.argmax(diff >= 0))
    if i == 0:
        return float(roc.fpr[0])
    d0, d1 = diff[i - 1], diff[i]
    t = d0 / (d0 - d1) if d1 != d0 else 0.0
    return float(roc.fpr[i - 1] + t * (roc.fpr[i] - roc.fpr[i - 1]))


def tar_at_far(labels: np.ndarray, scores: np.ndarray, far: float) -> float:
    """Highest true accept rate whose false accept rate is at most ``far``."""
    roc = roc_curve(labels, scores)
    return float(roc.tpr[roc.fpr <= far + 1e-12].max())


def best_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The ROC point maximising TPR - FPR (Youden's J; max balanced accuracy).

    Returned as the midpoint between that score and the next lower one, so a tiny score shift
    does not flip decisions right at the chosen point.
    """
    roc = roc_curve(labels, scores)
    j = roc.tpr - roc.fpr
    i = int(np.argmax(j[1:])) + 1  # skip the +inf "accept nothing" point
    upper = roc.thresholds[i]
    lower = roc.thresholds[i + 1] if i + 1 < len(roc.thresholds) else upper
    return float((upper + lower) / 2.0)


@dataclass(frozen=True)
class Report:
    pairs: int
    threshold: float
    accuracy: float
    precision: float
    recall: float
    roc_auc: float
    eer: float
    tar_at_far_1e_2: float
    tar_at_far_1e_3: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def report_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> Report:
    """All the quoted figures for pairs scored ``scores`` with the decision ``score >= threshold``."""
    labels, scores = _check(labels, scores)
    accept = scores >= threshold
    tp = int((accept & labels).sum())
    fp = int((accept & ~labels).sum())
    return Report(
        pairs=int(len(labels)),
        threshold=float(threshold),
        accuracy=float((accept == labels).mean()),
        precision=float(tp / (tp + fp)) if tp + fp else 0.0,
        recall=float(tp / labels.sum()),
        roc_auc=roc_auc(labels, scores),
        eer=equal_error_rate(labels, scores),
        tar_at_far_1e_2=tar_at_far(labels, scores, 0.01),
        tar_at_far_1e_3=tar_at_far(labels, scores, 0.001),
    )
