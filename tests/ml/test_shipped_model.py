"""The model shipped in the package, on the committed fixture faces (no data set, no network)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ml

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
PEOPLE = {
    "person_a": ["person_a_1.jpg", "person_a_2.jpg", "person_a_3.jpg"],
    "person_b": ["person_b_1.jpg", "person_b_2.jpg", "person_b_3.jpg"],
    "person_c": ["person_c_1.jpg", "person_c_2.jpg"],
}


@pytest.fixture(scope="module")
def model() -> "ml.FaceModel":
    return ml.load_model()


@pytest.fixture(scope="module")
def embeddings(model) -> dict[str, np.ndarray]:
    names = [name for photos in PEOPLE.values() for name in photos]
    faces = np.stack([ml.extract_face(ml.decode_image((FACES / name).read_bytes())) for name in names])
    return dict(zip(names, model.embed(faces)))


def test_manifest_records_version_threshold_and_test_report(model):
    manifest = model.manifest
    assert model.version and 0.0 < model.threshold < 1.0
    assert manifest["threshold"] == model.threshold
    for key in ("architecture", "training", "data", "calibration", "test_report"):
        assert key in manifest, key
    assert manifest["test_report"]["pairs"] == 1200
    assert manifest["data"]["fingerprint_sha256"]


def test_shipped_model_directory_is_small():
    total = sum(f.stat().st_size for f in Path(ml.SHIPPED_MODEL_DIR).rglob("*") if f.is_file())
    assert total < 25 * 1024 * 1024


def test_embeddings_are_unit_length(embeddings):
    vectors = np.stack(list(embeddings.values()))
    assert vectors.dtype == np.float32 and vectors.shape[1] == 128
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("person", sorted(PEOPLE))
def test_same_person_scores_reach_the_threshold(model, embeddings, person):
    for first, second in itertools.combinations(PEOPLE[person], 2):
        score = float(model.score(embeddings[first], embeddings[second][None])[0])
        assert score >= model.threshold, f"{first} vs {second}: {score:.3f} < {model.threshold:.3f}"


def test_different_people_score_below_the_threshold(model, embeddings):
    for one, other in itertools.combinations(sorted(PEOPLE), 2):
        for first, second in itertools.product(PEOPLE[one], PEOPLE[other]):
            score = float(model.score(embeddings[first], embeddings[second][None])[0])
            assert score < model.threshold, f"{first} vs {second}: {score:.3f} >= {model.threshold:.3f}"


def test_score_pairs_cli_prints_scores_decisions_and_reasons(tmp_path, model):
    pairs = tmp_path / "pairs.txt"
    lines = [
        (FACES / "person_a_1.jpg", FACES / "person_a_2.jpg"),
        (FACES / "person_a_1.jpg", FACES / "person_b_1.jpg"),
        (FACES / "person_a_1.jpg", FACES / "no_face.jpg"),
        (FACES / "two_faces.jpg", FACES / "person_b_2.jpg"),
        (FACES / "person_a_1.jpg", FACES / "README.md"),
    ]
    pairs.write_text("".join(f"{a}\t{b}\n" for a, b in lines))
    result = subprocess.run([sys.executable, "-m", "ml", "score-pairs", str(pairs)],
                            capture_output=True, text=True, timeout=600, check=True)
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[3:] for row in rows] == [["1", ""], ["0", ""], ["0", "no_face"], ["0", "multiple_faces"], ["0", "unreadable_image"]]
    assert 0.0 <= float(rows[0][2]) <= 1.0 and float(rows[0][2]) >= model.threshold
    assert rows[2][2] == ""


def test_info_cli_prints_the_manifest(model):
    out = subprocess.run([sys.executable, "-m", "ml", "info"], capture_output=True, text=True, timeout=120, check=True).stdout
    assert json.loads(out)["version"] == model.version


def test_the_decision_score_follows_the_manifests_rule(model, embeddings, tmp_path):
    # The template rule scores the probe once against the references' normalised mean embedding; a manifest
    # without a rule (models before it) keeps the mean of the per-reference scores.
    import shutil

    from ml.inference import FaceModel
    from ml.operating_point import template_of

    names = sorted(embeddings)
    probe, references = embeddings[names[0]], np.stack([embeddings[n] for n in names[1:4]])
    scores = model.score(probe, references)
    expected = {"template": float(model.score(probe, template_of(references)[None])[0]), "mean": float(scores.mean())}
    assert model.decision_score(probe, references, scores) == pytest.approx(expected[model.rule], rel=1e-6)
    for rule in ("mean", "template", None):
        copy = tmp_path / f"rule-{rule}"
        shutil.copytree(model.path, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["operating_point"].pop("rule", None)
        if rule:
            manifest["operating_point"]["rule"] = rule
        (copy / "manifest.json").write_text(json.dumps(manifest))
        other = ml.load_model(copy)
        assert other.rule == (rule or "mean")
        assert other.decision_score(probe, references) == pytest.approx(expected[rule or "mean"], rel=1e-5)
    manifest["operating_point"]["rule"] = "best"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ml.ModelError, match="decision rule"):
        FaceModel(copy)


def _shipped_copy_with_fixture_calibration_fold(tmp_path, monkeypatch):
    """A copy of the shipped model, its calibration fold (LFW fold 8) stood in for by the fixture faces:
    their crops as fold 8's images, and a pairs.txt whose every fold lists one same and one different pair."""
    import shutil

    from ml import review_band
    from ml.inference import SHIPPED_MODEL_DIR

    copy = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL_DIR, copy)
    names = [name for photos in PEOPLE.values() for name in photos]
    crops = np.stack([ml.extract_face(ml.decode_image((FACES / name).read_bytes())) for name in names])
    people = np.asarray([name.rsplit("_", 1)[0] for name in names])
    paths = [f"{person}/{person}_{int(name.rsplit('_', 1)[1][:-4]):04d}.jpg" for person, name in zip(people, names)]
    (tmp_path / "pairs.txt").write_text("10\t1\n" + "person_a\t1\t2\nperson_a\t1\tperson_b\t1\n" * 10)
    monkeypatch.setattr(review_band, "calibration_fold", lambda lfw, cache_path=None: (paths, people, crops))
    return copy, people, crops


def test_operating_point_cli_rechooses_thresholds_under_a_rule_and_drops_the_stale_band(tmp_path, monkeypatch):
    # `python -m ml operating-point --write`: the thresholds become the chosen rule's, the version, weights and
    # scoring stay, the fold-8 pair report follows the new threshold, and the review band (chosen under the old
    # thresholds) is dropped rather than left to sit under the wrong ones.
    from ml import cli
    from ml.inference import FaceModel
    from ml.operating_point import choose_operating_point

    copy, people, crops = _shipped_copy_with_fixture_calibration_fold(tmp_path, monkeypatch)
    before = json.loads((copy / "manifest.json").read_text())

    assert cli.main(["operating-point", "--model", str(copy), "--lfw", str(tmp_path), "--rule", "mean", "--write"]) == 0

    after = json.loads((copy / "manifest.json").read_text())
    model = FaceModel(copy)
    expected = choose_operating_point(model.embed(crops), people, model.scorer, target_far=1e-3, references=(1, 2),
                                      seed=before["training"]["config"]["seed"], rule="mean")
    assert after["operating_point"]["rule"] == "mean" and model.rule == "mean"
    assert after["operating_point"]["thresholds"] == {k: row["threshold"] for k, row in expected["per_references"].items()}
    assert after["threshold"] == after["operating_point"]["thresholds"]["1"]
    assert (after["calibration"]["pairs"], after["calibration"]["threshold"]) == (2, after["threshold"])
    assert "review_band" not in after and "review_band" in before
    changed = {"operating_point", "threshold", "review_band", "calibration"}
    assert {k: v for k, v in after.items() if k not in changed} == {k: v for k, v in before.items() if k not in changed}


@pytest.mark.parametrize("scoring", ["raw", "cohort_norm"])
def test_operating_point_cli_switches_the_score_normalisation(tmp_path, monkeypatch, scoring):
    # --scoring chooses the thresholds under raw head scores or AS-norm and records the choice, so the
    # served model scores as its thresholds were chosen.
    from ml import cli
    from ml.inference import FaceModel
    from ml.operating_point import choose_operating_point

    copy, people, crops = _shipped_copy_with_fixture_calibration_fold(tmp_path, monkeypatch)
    seed = json.loads((copy / "manifest.json").read_text())["training"]["config"]["seed"]

    assert cli.main(["operating-point", "--model", str(copy), "--lfw", str(tmp_path), "--scoring", scoring, "--write"]) == 0

    after = json.loads((copy / "manifest.json").read_text())
    model = FaceModel(copy)
    assert after["scoring"]["cohort_norm"] is (scoring == "cohort_norm") and model.scorer.normalised is (scoring == "cohort_norm")
    expected = choose_operating_point(model.embed(crops), people, model.scorer, target_far=1e-3, references=(1, 2),
                                      seed=seed, rule=model.rule)
    assert after["operating_point"]["thresholds"] == {k: row["threshold"] for k, row in expected["per_references"].items()}
