"""Verification metrics against hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from ml.metrics import best_threshold, equal_error_rate, report_at, roc_auc, roc_curve, tar_at_far


def test_perfect_separation_has_auc_one_and_zero_eer():
    labels = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    assert roc_auc(labels, scores) == pytest.approx(1.0)
    assert equal_error_rate(labels, scores) == pytest.approx(0.0)
    threshold = best_threshold(labels, scores)
    assert 0.3 < threshold < 0.7
    assert report_at(labels, scores, threshold).accuracy == 1.0


def test_auc_equals_the_pairwise_ranking_probability():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(size=300) + labels
    pos, neg = scores[labels == 1], scores[labels == 0]
    ranking = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(labels, scores) == pytest.approx(ranking)


def test_ties_are_one_roc_step():
    roc = roc_curve(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.5, 0.5]))
    assert roc.fpr.tolist() == [0.0, 1.0] and roc.tpr.tolist() == [0.0, 1.0]


def test_tar_at_far_reads_the_curve_below_the_false_accept_limit():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.95, 0.9, 0.6, 0.4, 0.92, 0.5, 0.3, 0.1])
    assert tar_at_far(labels, scores, 0.0) == pytest.approx(0.25)  # only 0.95 beats the top impostor
    assert tar_at_far(labels, scores, 0.25) == pytest.approx(0.75)


def test_report_counts_precision_and_recall_at_the_threshold():
    labels = np.array([1, 1, 0, 0])
    scores = np.array([0.9, 0.2, 0.8, 0.1])
    report = report_at(labels, scores, 0.5)
    assert report.precision == pytest.approx(0.5) and report.recall == pytest.approx(0.5)
    assert report.accuracy == pytest.approx(0.5) and report.pairs == 4


def test_single_class_input_is_refused():
    with pytest.raises(ValueError):
        roc_auc(np.ones(4), np.arange(4.0))
