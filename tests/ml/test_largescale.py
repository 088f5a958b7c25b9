"""Large-sample metrics and the operating-point choice, checked against plain NumPy/Python references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ml.largescale import (
    Trials,
    all_pairs,
    bootstrap_people,
    false_accept_spread,
    rate_at,
    rates_with_ci,
    tar_at_far_with_ci,
    threshold_at_far,
    wilson_interval,
)
from ml.operating_point import choose_operating_point, draw_enrolments, reference_trials


def _dot(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.sum(first * second, axis=1)


def _clustered(people: int, per_person: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 16))
    labels = np.repeat(np.arange(people), per_person)
    points = centres[labels] + spread * rng.normal(size=(len(labels), 16))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32), labels


def test_all_pairs_matches_a_brute_force_loop():
    embeddings, labels = _clustered(7, 5, 0.8)
    pairs = all_pairs(embeddings, labels, _dot, chunk=4)
    genuine, impostor = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        score = float(embeddings[i] @ embeddings[j])
        (genuine if labels[i] == labels[j] else impostor).append(((i, j), score))
    assert [tuple(x) for x in pairs.genuine_index.tolist()] == [p for p, _ in genuine]
    assert [tuple(x) for x in pairs.impostor_index.tolist()] == [p for p, _ in impostor]
    np.testing.assert_allclose(pairs.genuine, [s for _, s in genuine], atol=1e-6)
    np.testing.assert_allclose(pairs.impostor, [s for _, s in impostor], atol=1e-6)
    assert len(pairs.genuine) == 7 * 10 and len(pairs.impostor) == 35 * 34 // 2 - 70


@pytest.mark.parametrize("far", [0.0, 0.001, 0.01, 0.1, 0.5])
def test_threshold_at_far_lets_through_exactly_the_allowed_count(far):
    impostor = np.random.default_rng(1).normal(size=5000)
    threshold = threshold_at_far(impostor, far)
    assert int((impostor >= threshold).sum()) == int(np.floor(far * 5000))


def test_threshold_at_far_never_splits_a_tie_above_the_target():
    impostor = np.array([0.9, 0.9, 0.9, 0.1, 0.0])
    threshold = threshold_at_far(impostor, 0.4)  # 2 allowed, but the top 3 are tied
    assert rate_at(impostor, threshold) == 0.0


def test_wilson_interval_matches_the_textbook_value():
    low, high = wilson_interval(5, 100)
    assert low == pytest.approx(0.02154, abs=1e-4) and high == pytest.approx(0.11175, abs=1e-4)
    assert wilson_interval(0, 1000)[0] == 0.0


def test_bootstrap_weights_each_trial_by_its_people_multiplicities():
    trials = Trials(
        genuine=np.array([0.9, 0.8]), genuine_people=np.array(["a", "b"]),
        impostor=np.array([0.5, 0.4, 0.3]), impostor_people=np.array([["a", "b"], ["a", "c"], ["b", "c"]]),
    )
    seen = []

    def record(g, gw, i, iw):
        seen.append((g.copy(), gw.copy(), i.copy(), iw.copy()))
        return 0.0

    bootstrap_people(trials, record, resamples=3, seed=7)
    rng = np.random.default_rng(7)
    for g, gw, i, iw in seen:
        counts = dict(zip(["a", "b", "c"], np.bincount(rng.integers(0, 3, size=3), minlength=3).astype(float)))
        np.testing.assert_array_equal(g, [0.9, 0.8])
        np.testing.assert_array_equal(gw, [counts["a"], counts["b"]])
        np.testing.assert_array_equal(i, [0.5, 0.4, 0.3])
        np.testing.assert_array_equal(iw, [counts["a"] * counts["b"], counts["a"] * counts["c"], counts["b"] * counts["c"]])


def test_tar_at_far_interval_brackets_the_estimate():
    embeddings, labels = _clustered(40, 6, 0.9, seed=3)
    trials = Trials.from_pairs(all_pairs(embeddings, labels, _dot), labels)
    point = tar_at_far_with_ci(trials, 0.01, resamples=100)
    assert point.far <= 0.01
    assert point.tar_ci95[0] <= point.tar <= point.tar_ci95[1]
    assert point.far_ci95[0] <= point.far <= point.far_ci95[1]
    separable = Trials(np.array([2.0, 3.0]), np.array([0, 1]), np.array([0.0, 1.0]), np.array([[0, 1], [1, 0]]))
    assert tar_at_far_with_ci(separable, 0.0, resamples=20).tar == 1.0


def test_rates_with_ci_at_a_fixed_threshold():
    trials = Trials(np.array([0.9, 0.2, 0.8, 0.7]), np.array([0, 0, 1, 1]),
                    np.array([0.6, 0.1, 0.1, 0.1]), np.array([[0, 1], [0, 1], [1, 0], [1, 0]]))
    rates = rates_with_ci(trials, 0.5, resamples=50)
    assert rates["far"] == 0.25 and rates["frr"] == 0.25
    assert rates["genuine_trials"] == 4 and rates["impostor_trials"] == 4


def test_false_accept_spread_counts_images_and_people():
    embeddings, labels = _clustered(5, 4, 0.5)
    pairs = all_pairs(embeddings, labels, _dot)
    threshold = float(np.sort(pairs.impostor)[-3])
    spread = false_accept_spread(pairs, np.array([f"p{x}" for x in labels]), threshold)
    accepted = pairs.impostor_index[pairs.impostor >= threshold]
    assert spread["false_accepts"] == 3
    assert spread["distinct_images"] == len(np.unique(accepted))
    assert sum(p["false_accepts"] for p in spread["highest_own_far"]) == 6  # each pair involves two people
    for row in spread["highest_own_far"]:
        person = int(row["person"][1:])
        mine = (labels[pairs.impostor_index] == person).any(axis=1)
        assert row["impostor_pairs"] == int(mine.sum())
        assert row["far"] == pytest.approx(int((mine & (pairs.impostor >= threshold)).sum()) / int(mine.sum()))


def test_reference_trials_use_the_mean_over_k_references():
    embeddings, labels = _clustered(6, 4, 0.7, seed=5)
    enrolments = draw_enrolments(labels, 3, draws=2, seed=1)
    trials = reference_trials(embeddings, labels, _dot, enrolments)
    assert len(trials.genuine) == 2 * 6 * 1  # 4 photos, 3 enrolled: one genuine probe per person
    assert len(trials.impostor) == 2 * 6 * 20
    expected = []
    for enrolment in enrolments:
        for person, refs in enrolment.references.items():
            for probe in np.flatnonzero(labels == person):
                if probe not in refs:
                    expected.append(np.mean([embeddings[probe] @ embeddings[r] for r in refs]))
    np.testing.assert_allclose(trials.genuine, expected, rtol=1e-5)


def test_template_trials_score_each_probe_once_against_the_normalised_mean_embedding():
    embeddings, labels = _clustered(6, 4, 0.7, seed=5)
    enrolments = draw_enrolments(labels, 3, draws=2, seed=1)
    trials = reference_trials(embeddings, labels, _dot, enrolments, rule="template")
    mean_trials = reference_trials(embeddings, labels, _dot, enrolments)
    assert (len(trials.genuine), len(trials.impostor)) == (len(mean_trials.genuine), len(mean_trials.impostor))
    genuine, impostor = [], []
    for enrolment in enrolments:
        for person, refs in enrolment.references.items():
            template = embeddings[refs].mean(axis=0)
            template /= np.linalg.norm(template)
            for probe in range(len(labels)):
                if labels[probe] != person:
                    impostor.append(embeddings[probe] @ template)
                elif probe not in refs:
                    genuine.append(embeddings[probe] @ template)
    np.testing.assert_allclose(trials.genuine, genuine, rtol=1e-5)
    np.testing.assert_allclose(trials.impostor, impostor, rtol=1e-5)
    assert not np.allclose(trials.genuine, mean_trials.genuine)  # a different rule, not the mean renamed


def test_a_template_is_unit_length_and_one_reference_is_its_own_template():
    from ml.operating_point import template_of

    embeddings, _ = _clustered(2, 3, 0.7, seed=2)
    assert np.linalg.norm(template_of(embeddings[:3])) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(template_of(embeddings[:1]), embeddings[0], rtol=1e-6)
    opposite = np.stack([embeddings[0], -embeddings[0]])
    assert not np.any(template_of(opposite))  # no direction: zeros rather than dividing by ~0
    with pytest.raises(ValueError, match="reference embeddings"):
        template_of(embeddings[:0])


def test_an_unknown_rule_is_refused():
    embeddings, labels = _clustered(4, 3, 0.7, seed=5)
    with pytest.raises(ValueError, match="decision rule"):
        reference_trials(embeddings, labels, _dot, draw_enrolments(labels, 2, draws=1, seed=1), rule="best")


def test_choose_operating_point_meets_the_target_on_its_own_trials():
    embeddings, labels = _clustered(30, 5, 1.0, seed=9)
    point = choose_operating_point(embeddings, labels, _dot, target_far=0.01,
                                   references=(1, 3), draws=2, resamples=30)
    assert set(point["per_references"]) == {"1", "3"}
    for rates in point["per_references"].values():
        assert rates["far"] <= 0.01
        assert rates["far_ci95"][0] <= rates["far"] <= rates["far_ci95"][1]
    # Averaging three references separates better than one: fewer genuine refusals at the same FAR.
    assert point["per_references"]["3"]["frr"] <= point["per_references"]["1"]["frr"]
