"""Pair scoring: the head in NumPy, and AS-norm against a cohort (hubs pay for resembling everyone)."""

from __future__ import annotations

import numpy as np
import pytest

from ml.scoring import PairScorer, cohort_rows, head_logits, sigmoid


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def head():
    rng = np.random.default_rng(0)
    return -np.abs(rng.normal(1.0, 0.2, size=16)).astype(np.float32), 4.0


def test_raw_scores_are_the_sigmoid_of_the_l1_head(head):
    kernel, bias = head
    rng = np.random.default_rng(1)
    a, b = _unit(rng.normal(size=(5, 16))), _unit(rng.normal(size=(5, 16)))
    expected = 1.0 / (1.0 + np.exp(-(np.abs(a - b) @ kernel + bias)))
    np.testing.assert_allclose(PairScorer(kernel, bias).scores(a, b), expected, rtol=1e-5)
    assert sigmoid(np.array([-1000.0, 1000.0])).tolist() == [0.0, 1.0]  # no overflow warnings


def test_rows_scorer_with_precomputed_stats_equals_direct_scoring(head):
    kernel, bias = head
    rng = np.random.default_rng(2)
    embeddings, cohort = _unit(rng.normal(size=(12, 16))), _unit(rng.normal(size=(40, 16)))
    scorer = PairScorer(kernel, bias, cohort, top_k=10)
    first, second = np.array([0, 3, 5, 11]), np.array([1, 4, 9, 2])
    np.testing.assert_allclose(scorer.over(embeddings)(first, second), scorer.scores(embeddings[first], embeddings[second]), rtol=1e-5)


def test_cohort_norm_demotes_a_hub_that_resembles_everyone(head):
    kernel, bias = head
    rng = np.random.default_rng(3)
    cohort = _unit(rng.normal(size=(200, 16)))
    hub = _unit(cohort[:50].mean(axis=0, keepdims=True))  # close to a quarter of the cohort
    loner = _unit(rng.normal(size=(1, 16)))
    claimed = _unit(rng.normal(size=(1, 16)))
    # Give both probes the same raw logit against the claimed person, then compare normalised scores.
    raw_hub = head_logits(hub, claimed, kernel, bias)[0]
    raw_loner = head_logits(loner, claimed, kernel, bias)[0]
    scorer = PairScorer(kernel, bias, cohort, top_k=20)
    hub_stats, loner_stats = scorer.stats(hub), scorer.stats(loner)
    assert hub_stats.mean[0] > loner_stats.mean[0]
    claimed_stats = scorer.stats(claimed)
    normalised_hub = 0.5 * ((raw_hub - hub_stats.mean[0]) / hub_stats.std[0] + (raw_hub - claimed_stats.mean[0]) / claimed_stats.std[0])
    assert scorer.scores(hub, claimed)[0] == pytest.approx(float(sigmoid(np.array([normalised_hub]))[0]), rel=1e-5)
    # Same raw logit, higher cohort mean -> lower normalised score.
    same_logit_hub = (raw_loner - hub_stats.mean[0]) / hub_stats.std[0]
    same_logit_loner = (raw_loner - loner_stats.mean[0]) / loner_stats.std[0]
    assert same_logit_hub < same_logit_loner


def test_cohort_rows_take_one_photo_of_distinct_people():
    people = np.array(["a", "a", "b", "c", "c", "c", "d"])
    rows = cohort_rows(people, size=3, seed=0)
    assert len(rows) == 3 and len(set(people[rows])) == 3
    assert rows.tolist() == cohort_rows(people, size=3, seed=0).tolist()
