"""Site calibration (issue 10, item 2): figures on the site's own references, the >2x warning,
``calibrate --apply`` changing the decision threshold (audited), and decisions recording the source.

Synthetic embeddings (people = noisy copies of a random direction) and a fake pair scorer stand in for
the model; figures are checked against a NumPy reference computed here, pair by pair.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import call_command

from tests.conftest import upload
from verification import inference, services
from verification.audit import audit_verify
from verification.models import AuditEntry, CheckIn, ReferenceImage, SiteCalibration
from verification.services import calibration, thresholds

pytestmark = pytest.mark.django_db

DIM = 8
PEOPLE = 10
PER_PERSON = 3


def fake_pair_scorer(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise scores in (0, 1): a sigmoid of the cosine similarity (impostors land near 0.5-0.7)."""
    return (1.0 / (1.0 + np.exp(-6.0 * (np.sum(first * second, axis=1) - 0.1)))).astype(np.float32)


def synthetic_embeddings(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((PEOPLE, DIM))
    rows, people = [], []
    for p in range(PEOPLE):
        for _ in range(PER_PERSON):
            v = centres[p] + 0.6 * rng.standard_normal(DIM)
            rows.append(v / np.linalg.norm(v))
            people.append(p)
    return np.asarray(rows, np.float32), np.asarray(people)


@pytest.fixture
def site(fake_model, monkeypatch):
    """PEOPLE people with PER_PERSON ready references each (synthetic embeddings of the fake model's version)."""
    monkeypatch.setattr(inference, "score_pairs", fake_pair_scorer)
    embeddings, people = synthetic_embeddings()
    persons = [services.person_create(name=f"Person {p}", external_id=f"S-{p}") for p in range(PEOPLE)]
    for row, p in zip(embeddings, people):
        ReferenceImage.objects.create(
            person=persons[p], image=f"references/{p}.png", width=100, height=100, status=ReferenceImage.Status.READY,
            embedding=row.astype("<f4").tobytes(), embedding_dim=DIM, model_version=fake_model.version,
        )
    # Another model's embeddings of a stranger must not count.
    stranger = services.person_create(name="Old model", external_id="S-old")
    ReferenceImage.objects.create(
        person=stranger, image="references/old.png", width=100, height=100, status=ReferenceImage.Status.READY,
        embedding=np.ones(DIM, "<f4").tobytes(), embedding_dim=DIM, model_version="older-0",
    )
    return persons, embeddings, people


def promise(fake_model, monkeypatch, *, promised: dict[int, float], target_far: float) -> None:
    """The fake model's manifest with an operating point (target FAR, promised FAR per reference count)."""
    def model_info() -> inference.ModelInfo:
        return inference.ModelInfo(
            version=fake_model.version, threshold=fake_model.threshold, thresholds=fake_model.thresholds,
            target_far=target_far, promised_far=tuple(sorted(promised.items())),
        )

    monkeypatch.setattr(inference, "model_info", model_info)


def numpy_pairs(embeddings: np.ndarray, people: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    genuine, impostor = [], []
    for i in range(len(people)):
        for j in range(i + 1, len(people)):
            score = float(fake_pair_scorer(embeddings[i:i + 1], embeddings[j:j + 1])[0])
            (genuine if people[i] == people[j] else impostor).append(score)
    return np.asarray(genuine), np.asarray(impostor)


def test_one_reference_figures_match_a_numpy_reference_over_every_pair(site, fake_model):
    _, embeddings, people = site
    genuine, impostor = numpy_pairs(embeddings, people)

    report = calibration.calibration_measure(target_far=0.05, resamples=50)

    assert (report.people, report.references) == (PEOPLE, PEOPLE * PER_PERSON)  # the other version's row is out
    row = report.per_references[1]
    current, proposed = row["current"], row["proposed"]
    assert current["genuine_trials"] == len(genuine) == PEOPLE * 3  # 3 same-person pairs each
    assert current["impostor_trials"] == len(impostor) == (PEOPLE * PER_PERSON) * (PEOPLE * PER_PERSON - PER_PERSON) // 2
    assert current["threshold"] == fake_model.threshold
    assert current["far"] == pytest.approx(np.mean(impostor >= 0.5))
    assert current["frr"] == pytest.approx(np.mean(genuine < 0.5))
    for rates in (current, proposed):
        for name in ("far", "frr"):
            low, high = rates[f"{name}_ci95"]
            assert low <= rates[name] <= high
    # The proposed threshold lets exactly floor(target * I) impostors through, the lowest such threshold.
    t = proposed["threshold"]
    allowed = int(np.floor(0.05 * len(impostor)))
    assert np.sum(impostor >= t) == allowed
    assert np.sum(impostor >= np.sort(impostor)[::-1][allowed] - 1e-9) > allowed
    assert proposed["far"] == pytest.approx(allowed / len(impostor))
    assert proposed["frr"] == pytest.approx(np.mean(genuine < t))


def test_k_references_are_measured_as_the_models_operating_point_was_chosen(site, fake_model):
    from ml.operating_point import choose_operating_point

    _, embeddings, people = site
    fake_model.thresholds = ((1, 0.5), (2, 0.45), (3, 0.4))

    report = calibration.calibration_measure(target_far=0.05, draws=3, resamples=50)

    reference = choose_operating_point(embeddings, people, fake_pair_scorer, target_far=0.05, references=(2,),
                                       draws=3, seed=0, resamples=50)["per_references"]["2"]
    proposed = report.per_references[2]["proposed"]
    assert proposed["threshold"] == pytest.approx(reference["threshold"])
    assert (proposed["far"], proposed["frr"]) == pytest.approx((reference["far"], reference["frr"]))
    assert report.per_references[2]["current"]["threshold"] == 0.45
    assert "skipped" in report.per_references[3]  # nobody has 4 references to enrol 3 and probe 1


def test_a_template_rule_model_is_calibrated_on_template_trials(site, fake_model):
    from ml.operating_point import choose_operating_point

    _, embeddings, people = site
    fake_model.thresholds, fake_model.rule = ((1, 0.5), (2, 0.45)), "template"

    report = calibration.calibration_measure(target_far=0.05, draws=3, resamples=50)

    point = {rule: choose_operating_point(embeddings, people, fake_pair_scorer, target_far=0.05, references=(2,),
                                          draws=3, seed=0, resamples=50, rule=rule)["per_references"]["2"]
             for rule in ("template", "mean")}
    proposed = report.per_references[2]["proposed"]
    assert proposed["threshold"] == pytest.approx(point["template"]["threshold"])
    assert (proposed["far"], proposed["frr"]) == pytest.approx((point["template"]["far"], point["template"]["frr"]))
    assert point["template"]["threshold"] != pytest.approx(point["mean"]["threshold"])  # the rule matters here


def test_a_site_far_over_twice_the_models_promise_is_a_warning(site, fake_model, monkeypatch):
    _, embeddings, people = site
    _, impostor = numpy_pairs(embeddings, people)
    site_far = float(np.mean(impostor >= fake_model.threshold))
    assert site_far > 0

    promise(fake_model, monkeypatch, promised={1: site_far / 2.5}, target_far=0.05)
    warned = calibration.calibration_measure(resamples=20)
    promise(fake_model, monkeypatch, promised={1: site_far / 1.5}, target_far=0.05)
    kept = calibration.calibration_measure(resamples=20)

    assert warned.target_far == 0.05  # the model's target is the default
    assert [w for w in warned.warnings if w.startswith("WARNING k=1")]
    assert not [w for w in kept.warnings if w.startswith("WARNING")]
    assert kept.per_references[1]["promised_far"] == pytest.approx(site_far / 1.5)


def test_the_command_prints_the_warning_and_a_manifest_without_promise_is_said(site, fake_model, monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    call_command("calibrate", "--target-far", "0.05", "--resamples", "20", stdout=out, stderr=err)
    assert "k=1:" in out.getvalue() and "at target" in out.getvalue()
    assert "states no expected FAR" in err.getvalue()
    assert SiteCalibration.objects.count() == 0  # measuring alone changes nothing

    promise(fake_model, monkeypatch, promised={1: 1e-6}, target_far=0.05)
    err = io.StringIO()
    call_command("calibrate", "--resamples", "20", stdout=io.StringIO(), stderr=err)
    assert "WARNING k=1" in err.getvalue()


def _checkin(device, external_id: str) -> CheckIn:
    checkin = services.checkin_submit(device=device, person_external_id=external_id, snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    return checkin


def test_apply_changes_the_decision_threshold_and_is_audited(site, fake_model, device):
    persons, _, _ = site
    report = calibration.calibration_measure(target_far=0.01, resamples=20)
    site_threshold = report.proposed_thresholds()[1]
    assert site_threshold > fake_model.threshold  # this site's strangers score higher than the model assumed
    fake_model.scores = [(fake_model.threshold + site_threshold) / 2]

    before = _checkin(device, persons[0].external_id)
    out = io.StringIO()
    call_command("calibrate", "--target-far", "0.01", "--resamples", "20", "--apply", "--operator", "officer",
                 stdout=out, stderr=io.StringIO())
    after = _checkin(device, persons[0].external_id)

    applied = SiteCalibration.objects.get()
    assert applied.model_version == fake_model.version
    assert applied.thresholds == {"1": pytest.approx(site_threshold)}
    assert (applied.created_by, applied.target_far, applied.people) == ("officer", 0.01, PEOPLE)
    assert applied.figures["1"]["proposed"]["impostor_trials"] > 0
    assert f"site calibration #{applied.pk}" in out.getvalue()
    entry = AuditEntry.objects.get(kind=AuditEntry.Kind.CALIBRATION)
    assert entry.detail["operator"] == "officer"
    assert entry.detail["threshold_source"] == f"site:{applied.pk}"
    assert entry.detail["previous_source"] == "model"
    assert entry.threshold == pytest.approx(site_threshold)

    assert (before.decision, before.threshold) == (1, fake_model.threshold)
    assert (after.decision, after.reason) == (0, "no_match")
    assert after.threshold == pytest.approx(site_threshold)
    assert audit_verify() == (AuditEntry.objects.count(), None)


def test_decisions_record_where_their_threshold_came_from(site, fake_model, device):
    persons, _, _ = site
    model_decided = _checkin(device, persons[1].external_id)
    unknown_before = _checkin(device, "nobody")
    report = calibration.calibration_measure(target_far=0.05, resamples=20)
    applied = calibration.calibration_apply(report=report, operator="officer")
    site_decided = _checkin(device, persons[1].external_id)
    unknown_after = _checkin(device, "nobody")

    def source(checkin: CheckIn) -> str:
        return AuditEntry.objects.get(checkin=checkin, kind=AuditEntry.Kind.DECISION).detail["threshold_source"]

    assert source(model_decided) == source(unknown_before) == "model"
    assert source(site_decided) == source(unknown_after) == f"site:{applied.pk}"


def test_site_thresholds_apply_only_to_their_model_version_and_revert_goes_back(site, fake_model, device):
    report = calibration.calibration_measure(target_far=0.05, resamples=20)
    applied = calibration.calibration_apply(report=report, operator="officer")
    info = inference.ModelInfo(version=fake_model.version, threshold=0.5, thresholds=((1, 0.5), (3, 0.4)))

    in_force = thresholds.thresholds_effective(info=info)
    other = thresholds.thresholds_effective(info=inference.ModelInfo(version="next-2", threshold=0.3))

    assert (in_force.threshold_source, in_force.threshold_for(3)) == (f"site:{applied.pk}", applied.thresholds["1"])
    assert (other.threshold_source, other.threshold) == ("model", 0.3)

    call_command("calibrate", "--revert", "--operator", "officer", stdout=io.StringIO())
    reverted = thresholds.thresholds_effective(info=info)
    assert (reverted.threshold_source, reverted.threshold_for(3)) == ("model", 0.4)
    assert AuditEntry.objects.filter(kind=AuditEntry.Kind.CALIBRATION).count() == 2


def test_apply_with_too_few_people_changes_nothing(fake_model, person, monkeypatch):
    monkeypatch.setattr(inference, "score_pairs", fake_pair_scorer)
    report = calibration.calibration_measure(resamples=20)
    assert report.per_references == {} and "fewer than two people" in report.warnings[0]
    with pytest.raises(Exception, match="nothing applied"):
        calibration.calibration_apply(report=report, operator="officer")
    assert SiteCalibration.objects.count() == 0
    assert not AuditEntry.objects.filter(kind=AuditEntry.Kind.CALIBRATION).exists()


def test_model_info_carries_the_manifests_operating_point_and_tolerates_none(monkeypatch):
    from types import SimpleNamespace

    manifest = {"operating_point": {"target_far": 1e-3, "thresholds": {"1": 0.7, "3": 0.6},
                                    "expected": {"1": {"far": 9e-4, "frr": 0.2}, "3": {"far": 8e-4, "frr": 0.1}}}}
    model = SimpleNamespace(version="v2", threshold=0.7, manifest=manifest, thresholds=lambda: {1: 0.7, 3: 0.6})
    monkeypatch.setattr(inference, "_model", model)
    info = inference.model_info()
    assert (info.target_far, info.promised_far, info.threshold_source) == (1e-3, ((1, 9e-4), (3, 8e-4)), "model")

    monkeypatch.setattr(inference, "_model", SimpleNamespace(version="v1", threshold=0.23, manifest={}, thresholds=dict))
    old = inference.model_info()
    assert (old.target_far, old.promised_far, old.thresholds) == (None, (), ())


def test_the_site_measures_and_applies_its_review_band_and_check_ins_use_it(site, fake_model, device):
    """Issue 10, item 1: the review band's lower edge from the site's own impostor scores, at --review-far."""
    persons, embeddings, people = site
    _, impostor = numpy_pairs(embeddings, people)
    out = io.StringIO()
    call_command("calibrate", "--target-far", "0.01", "--review-far", "0.2", "--resamples", "20", "--apply",
                 "--operator", "officer", stdout=out, stderr=io.StringIO())

    applied = SiteCalibration.objects.get()
    admit, lower = applied.thresholds["1"], applied.review_thresholds["1"]
    # The lowest threshold letting at most 20 % of the site's impostor pairs reach a guard.
    assert np.sum(impostor >= lower) == int(np.floor(0.2 * len(impostor))) and lower < admit
    assert applied.review_target_far == 0.2
    row = applied.figures["1"]["review_proposed"]
    assert row["far"] == pytest.approx(np.mean(impostor >= lower)) and row["threshold"] == lower
    assert "review at target" in out.getvalue()
    entry = AuditEntry.objects.get(kind=AuditEntry.Kind.CALIBRATION)
    assert entry.detail["review_thresholds"] == {"1": lower} and entry.detail["review_far"] == 0.2

    fake_model.scores = [(admit + lower) / 2]
    checkin = _checkin(device, persons[0].external_id)
    assert (checkin.status, checkin.threshold, checkin.review_threshold) == ("review", admit, lower)
    opened = AuditEntry.objects.get(checkin=checkin, kind=AuditEntry.Kind.REVIEW)
    assert opened.detail["threshold_source"] == f"site:{applied.pk}"


def test_a_site_calibration_without_a_band_keeps_the_models_under_its_thresholds(site, fake_model):
    fake_model.review_thresholds = ((1, 0.3),)
    report = calibration.calibration_measure(target_far=0.05, resamples=20)
    applied = calibration.calibration_apply(report=report, operator="officer")
    SiteCalibration.objects.filter(pk=applied.pk).update(review_thresholds={}, review_target_far=None)  # pre-band row

    info = thresholds.thresholds_effective(info=inference.model_info())
    assert info.threshold_source == f"site:{applied.pk}"
    assert info.review_threshold_for(1) == min(0.3, applied.thresholds["1"])
