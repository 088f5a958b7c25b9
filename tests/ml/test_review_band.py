"""The review band's lower edge (ml.review_band): chosen on the operating point's own trials for a looser
FAR, checked against a NumPy reference; the manifest block, and the refusal to write it when the admit
thresholds cannot be re-derived from the same trials."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml import review_band
from ml.largescale import threshold_at_far
from ml.operating_point import choose_operating_point, draw_enrolments, reference_trials


def _dot(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.sum(first * second, axis=1)


def _clustered(people: int, per_person: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 16))
    labels = np.repeat(np.arange(people), per_person)
    points = centres[labels] + spread * rng.normal(size=(len(labels), 16))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32), labels


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    embeddings, labels = _clustered(30, 5, 1.0, seed=9)
    point = choose_operating_point(embeddings, labels, _dot, target_far=0.01, references=(1, 3), draws=2, seed=4,
                                   resamples=20)
    return embeddings, labels, {k: row["threshold"] for k, row in point["per_references"].items()}


def test_the_lower_edge_meets_the_review_far_on_the_operating_points_trials(data):
    embeddings, labels, admit = data
    band = review_band.choose_review_band(embeddings, labels, _dot, admit_thresholds=admit, review_far=0.1,
                                          target_far=0.01, draws=2, seed=4, resamples=20)

    assert band["review_far"] == 0.1 and set(band["per_references"]) == {"1", "3"}
    for key, row in band["per_references"].items():
        # The NumPy reference: the same seeded enrolments, the mean rule, every cross-person probe.
        trials = reference_trials(embeddings, labels, _dot, draw_enrolments(labels, int(key), draws=2, seed=4))
        lower = threshold_at_far(trials.impostor, 0.1)
        assert row["threshold"] == pytest.approx(lower) and row["threshold"] < admit[key]
        assert row["far"] == pytest.approx(np.mean(trials.impostor >= lower)) and row["far"] <= 0.1
        assert row["frr"] == pytest.approx(np.mean(trials.genuine < lower))
        in_band = (trials.genuine >= lower) & (trials.genuine < admit[key])
        assert row["genuine_to_review"] == pytest.approx(in_band.mean())
        assert row["impostor_to_review"] == pytest.approx(
            np.mean((trials.impostor >= lower) & (trials.impostor < admit[key])))
        assert row["admit_threshold"] == admit[key]
        # The same trials as the operating point's: its thresholds come out again.
        assert row["admit_threshold_rederived"] == pytest.approx(admit[key])
        assert row["far_ci95"][0] <= row["far"] <= row["far_ci95"][1]


def test_the_band_refuses_fewer_genuine_people_outright_than_the_admit_threshold(data):
    embeddings, labels, admit = data
    band = review_band.choose_review_band(embeddings, labels, _dot, admit_thresholds=admit, review_far=0.1,
                                          draws=2, seed=4, resamples=20)
    for key, row in band["per_references"].items():
        trials = reference_trials(embeddings, labels, _dot, draw_enrolments(labels, int(key), draws=2, seed=4))
        assert row["frr"] < np.mean(trials.genuine < admit[key])


def test_the_lower_edge_never_rises_above_an_admit_threshold_from_elsewhere(data):
    embeddings, labels, _ = data
    band = review_band.choose_review_band(embeddings, labels, _dot, admit_thresholds={"1": -1.0}, review_far=0.1,
                                          draws=2, seed=4, resamples=20)
    row = band["per_references"]["1"]
    assert row["threshold"] == -1.0 and row["genuine_to_review"] == 0.0 and row["impostor_to_review"] == 0.0


def test_a_review_far_outside_zero_one_is_refused(data):
    embeddings, labels, admit = data
    with pytest.raises(ValueError, match="review FAR"):
        review_band.choose_review_band(embeddings, labels, _dot, admit_thresholds=admit, review_far=1.5)


class _Model:
    """What review_band_for_model needs of ml.inference.FaceModel: manifest, version, rule, embed, scorer."""

    version = "tiny-1"

    def __init__(self, admit: dict[str, float], rule: str = "mean"):
        self.manifest = {"operating_point": {"target_far": 0.01, "thresholds": admit, "rule": rule},
                         "training": {"config": {"seed": 4}}}
        self.rule = rule
        self.scorer = _dot

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return np.asarray(crops, np.float32)  # the "crops" are the embeddings here


def test_the_manifest_block_is_written_and_refused_when_the_trials_are_not_the_operating_points(
    data, monkeypatch, tmp_path: Path
):
    embeddings, labels, admit = data
    monkeypatch.setattr(review_band, "ENROLMENT_DRAWS", 2)
    monkeypatch.setattr(review_band, "calibration_fold",
                        lambda lfw, cache_path=None: ([f"p{i}" for i in range(len(labels))], labels, embeddings))

    block = review_band.review_band_for_model(_Model(admit), "unused", review_far=0.1, resamples=20)
    assert block["thresholds"] == {k: row["threshold"] for k, row in block["per_references"].items()}
    assert block["review_far"] == 0.1 and block["data_images"] == len(labels)
    assert "review-band" in block["command"] and "seed 4" in block["chosen_on"]
    (tmp_path / "manifest.json").write_text(json.dumps({"version": "tiny-1", "threshold": 0.5}))
    review_band.write_review_band(tmp_path, block)
    written = json.loads((tmp_path / "manifest.json").read_text())
    assert written["version"] == "tiny-1" and written["review_band"]["thresholds"] == block["thresholds"]

    shifted = {k: v + 0.05 for k, v in admit.items()}  # not what these trials give
    with pytest.raises(ValueError, match="re-derived"):
        review_band.review_band_for_model(_Model(shifted), "unused", review_far=0.1, resamples=20)


def test_the_shipped_manifest_carries_a_band_under_its_operating_point():
    from ml.inference import SHIPPED_MODEL_DIR, read_manifest

    manifest = read_manifest(SHIPPED_MODEL_DIR)
    band, operating = manifest["review_band"], manifest["operating_point"]
    assert band["review_far"] == 0.01 and set(band["thresholds"]) == set(operating["thresholds"])
    for key, lower in band["thresholds"].items():
        row = band["per_references"][key]
        assert lower < operating["thresholds"][key] and row["admit_threshold"] == operating["thresholds"][key]
        assert abs(row["admit_threshold_rederived"] - row["admit_threshold"]) <= review_band.REPRODUCE_TOLERANCE
        assert row["far"] <= 0.01 and row["frr"] < operating["expected"][key]["frr"]


def test_the_test_folds_report_measures_the_chosen_edges_on_other_people(data, monkeypatch):
    embeddings, labels, admit = data
    others, other_labels = _clustered(20, 5, 1.0, seed=21)
    monkeypatch.setattr(review_band, "ENROLMENT_DRAWS", 2)
    monkeypatch.setattr(review_band, "calibration_fold",
                        lambda lfw, cache_path=None: ([f"p{i}" for i in range(len(labels))], labels, embeddings))
    monkeypatch.setattr(review_band, "test_folds",
                        lambda lfw, cache_path=None: ([f"t{i}" for i in range(len(other_labels))], other_labels, others))

    block = review_band.review_band_for_model(_Model(admit), "unused", review_far=0.1, resamples=20, test=True)

    report = block["test_folds"]["per_references"]
    assert set(report) == {"1", "3"} and "--test" in block["command"]
    for key, row in report.items():
        trials = reference_trials(others, other_labels, _dot, draw_enrolments(other_labels, int(key), draws=2, seed=4 + 101))
        lower = block["thresholds"][key]  # chosen on the calibration people, only measured here
        assert row["threshold"] == lower
        assert row["far"] == pytest.approx(np.mean(trials.impostor >= lower))
        assert row["frr"] == pytest.approx(np.mean(trials.genuine < lower))


def test_a_template_rule_model_gets_its_band_on_template_trials(data, monkeypatch):
    # The band sits under thresholds chosen on template-rule trials; on mean-rule trials those would not be
    # re-derived, so a band built on the wrong rule's trials is refused, not written.
    embeddings, labels, _ = data
    point = choose_operating_point(embeddings, labels, _dot, target_far=0.01, references=(3,), draws=2, seed=4,
                                   resamples=20, rule="template")
    admit = {k: row["threshold"] for k, row in point["per_references"].items()}
    monkeypatch.setattr(review_band, "ENROLMENT_DRAWS", 2)
    monkeypatch.setattr(review_band, "calibration_fold",
                        lambda lfw, cache_path=None: ([f"p{i}" for i in range(len(labels))], labels, embeddings))

    block = review_band.review_band_for_model(_Model(admit, rule="template"), "unused", review_far=0.1, resamples=20)
    trials = reference_trials(embeddings, labels, _dot, draw_enrolments(labels, 3, draws=2, seed=4), rule="template")
    assert block["rule"] == "template" and "template" in block["chosen_on"]
    assert block["thresholds"]["3"] == pytest.approx(threshold_at_far(trials.impostor, 0.1))
    with pytest.raises(ValueError, match="re-derived"):
        review_band.review_band_for_model(_Model(admit, rule="mean"), "unused", review_far=0.1, resamples=20)
