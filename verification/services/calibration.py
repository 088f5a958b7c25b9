"""Site calibration: the false-accept and false-reject rates on the site's own enrolments.

The model's thresholds were chosen on someone else's photos (LFW); another camera or another
population can put more strangers above them. Here the site's ready references (one model version)
are scored against each other: every cross-person pair is an impostor trial and every same-person
pair a genuine one (one reference); for k references the model's decision rule (the mean of the k
scores, or the score against the template of the k embeddings) is simulated as the model's own
operating point was chosen (``verification.inference.checkin_trials``). The report gives, per
reference count, FAR and FRR at the thresholds in force with people-bootstrap 95 % intervals, the
threshold meeting a target FAR, the review band's lower edge at a looser ``review_far`` (between the two a
guard decides, ``services/reviews.py``), and a warning when the site's FAR is more than twice what the model
promised. ``calibration_apply`` stores the new thresholds (``SiteCalibration``), audited; check-ins
use them from then on (``services/thresholds.py``).

Runs where the model is (the management command loads it through ``verification.inference``):
stored embeddings only need the Siamese head, no images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from django.db import transaction

from verification import selectors
from verification.audit import audit_append
from verification.errors import DomainError
from verification.models import AuditEntry, ReferenceImage, SiteCalibration
from verification.services import thresholds

# The target when the model's manifest names none (manifests without an ``operating_point``).
DEFAULT_TARGET_FAR = 1e-3
# The review band's lower edge: the FAR target of "reaches a guard or beyond" when the model's manifest
# names none (its ``review_band.review_far``; ``ml.review_band.REVIEW_FAR`` chose the shipped one).
DEFAULT_REVIEW_FAR = 1e-2
# A site FAR above this multiple of the model's promise is worth a warning.
WARN_FAR_RATIO = 2.0

PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class CalibrationReport:
    model_version: str
    target_far: float
    threshold_source: str  # of the thresholds in force when measured
    people: int
    references: int
    # Per reference count k: {"current": rates at the threshold in force, "proposed": rates at the
    # threshold meeting the target, "promised_far": the model's, "enrolled_people", and the review band's
    # lower edge: "review_current" (rates at the edge in force, when there is one) and "review_proposed"
    # (at ``review_far``; its FAR: strangers reaching a guard or beyond, its FRR: genuine refused
    # outright)}; or {"skipped": why}.
    per_references: dict[int, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    review_far: float | None = None

    def proposed_thresholds(self) -> dict[int, float]:
        return {k: row["proposed"]["threshold"] for k, row in self.per_references.items() if "proposed" in row}

    def proposed_review_thresholds(self) -> dict[int, float]:
        return {k: row["review_proposed"]["threshold"] for k, row in self.per_references.items()
                if "review_proposed" in row}

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version, "target_far": self.target_far, "review_far": self.review_far,
            "threshold_source": self.threshold_source, "people": self.people, "references": self.references,
            "per_references": {str(k): row for k, row in self.per_references.items()}, "warnings": list(self.warnings),
        }


def calibration_measure(
    *,
    target_far: float | None = None,
    review_far: float | None = None,
    scorer: PairScorer | None = None,
    draws: int = 3,
    resamples: int = 200,
    seed: int = 0,
) -> CalibrationReport:
    """Measure the site's FAR/FRR on its ready references of the deciding model's version.

    ``scorer`` defaults to the loaded model's pair scorer (``inference.score_pairs``); ``target_far``
    to the model's target (``DEFAULT_TARGET_FAR`` for a manifest that names none); ``review_far``, the
    target of the review band's lower edge, to the band in force's (``DEFAULT_REVIEW_FAR`` without one).
    """
    from verification import inference

    info = thresholds.thresholds_effective(info=inference.model_info())
    target = float(target_far if target_far is not None else (info.target_far or DEFAULT_TARGET_FAR))
    if not 0.0 < target < 1.0:
        raise ValueError(f"target FAR must be in (0, 1), not {target}")
    # By default the band in force's target, never below the admit target (then the band is empty).
    review_target = float(review_far if review_far is not None else max(info.review_far or DEFAULT_REVIEW_FAR, target))
    if not target <= review_target < 1.0:
        raise ValueError(f"review FAR must be in [target FAR {target}, 1), not {review_target}")
    scorer = scorer or inference.score_pairs
    references = list(
        ReferenceImage.objects.filter(status=ReferenceImage.Status.READY, model_version=info.version)
        .exclude(embedding__isnull=True)
        .order_by("person_id", "pk")
    )
    people = np.asarray([r.person_id for r in references], dtype=np.int64)
    report = CalibrationReport(
        model_version=info.version, target_far=target, threshold_source=info.threshold_source,
        people=int(len(np.unique(people))), references=len(references), review_far=review_target,
    )
    if len(np.unique(people)) < 2:
        report.warnings.append("fewer than two people with ready references: nothing to measure")
        return report
    embeddings = selectors.embeddings_matrix(references)
    promised = dict(info.promised_far)
    counts = sorted({1, *dict(info.thresholds)})
    for k in counts:
        trials = inference.checkin_trials(embeddings, people, references=k, scorer=scorer, draws=draws, seed=seed,
                                          rule=info.rule)
        if len(trials.genuine) == 0 or len(trials.impostor) == 0:
            report.per_references[k] = {"skipped": f"no person has {k + 1 if k > 1 else 2} ready references"}
            continue
        current = inference.rates_with_ci(trials, info.threshold_for(k), resamples=resamples, seed=seed)
        proposed_threshold = inference.threshold_at_far(trials.impostor, target)
        proposed = inference.rates_with_ci(trials, proposed_threshold, resamples=resamples, seed=seed)
        # The review band's lower edge: never above the admit threshold it sits under.
        review_threshold = min(inference.threshold_at_far(trials.impostor, review_target), proposed_threshold)
        row: dict[str, Any] = {
            "current": current, "proposed": proposed, "promised_far": promised.get(k),
            "enrolled_people": int(len(np.unique(trials.genuine_people))),
            "review_proposed": inference.rates_with_ci(trials, review_threshold, resamples=resamples, seed=seed),
        }
        current_review = info.review_threshold_for(k)
        if current_review is not None:
            row["review_current"] = inference.rates_with_ci(trials, current_review, resamples=resamples, seed=seed)
        report.per_references[k] = row
        if promised.get(k) is not None and current["far"] > WARN_FAR_RATIO * promised[k]:
            report.warnings.append(
                f"WARNING k={k}: the site's FAR at the threshold in force is {current['far']:.2e} "
                f"(95 % CI {current['far_ci95'][0]:.2e}-{current['far_ci95'][1]:.2e}), more than "
                f"{WARN_FAR_RATIO:g}x the model's promise {promised[k]:.2e}: another camera or another "
                f"population; consider applying the site's thresholds"
            )
        if len(trials.impostor) * target < 3:
            report.warnings.append(
                f"k={k}: only {len(trials.impostor)} impostor trials; a FAR of {target:g} rests on fewer than "
                f"3 of them, so the proposed threshold is only as good as the few highest impostor scores"
            )
    if not promised:
        report.warnings.append(
            f"the model {info.version} states no expected FAR (no operating point in its manifest): "
            "there is no promise to compare the site's FAR with"
        )
    return report


@transaction.atomic
def calibration_apply(*, report: CalibrationReport, operator: str) -> SiteCalibration:
    """Store the report's proposed thresholds as the site's for its model version; audited."""
    if not operator:
        raise ValueError("applying site thresholds needs the operator's name for the audit log")
    proposed = report.proposed_thresholds()
    if 1 not in proposed:
        raise DomainError(
            "No threshold could be measured for one reference (fewer than two people, or no person with two "
            "ready references); nothing applied.",
            code="calibration_insufficient",
        )
    previous = thresholds.site_calibration_current(model_version=report.model_version)
    calibration = SiteCalibration(
        model_version=report.model_version,
        target_far=report.target_far,
        thresholds={str(k): float(v) for k, v in sorted(proposed.items())},
        review_target_far=report.review_far,
        review_thresholds={str(k): float(v) for k, v in sorted(report.proposed_review_thresholds().items())},
        figures=report.as_dict()["per_references"],
        people=report.people,
        references=report.references,
        created_by=operator,
    )
    calibration.full_clean()
    calibration.save()
    audit_append(
        kind=AuditEntry.Kind.CALIBRATION,
        model_version=report.model_version,
        threshold=calibration.thresholds["1"],
        detail={
            "operator": operator,
            "site_calibration_id": calibration.pk,
            "threshold_source": f"site:{calibration.pk}",
            "previous_source": report.threshold_source,
            "previous_calibration_id": previous.pk if previous else None,
            "target_far": report.target_far,
            "thresholds": calibration.thresholds,
            "review_far": report.review_far,
            "review_thresholds": calibration.review_thresholds,
            "people": report.people,
            "references": report.references,
            "far": {str(k): row["proposed"]["far"] for k, row in report.per_references.items() if "proposed" in row},
            "frr": {str(k): row["proposed"]["frr"] for k, row in report.per_references.items() if "proposed" in row},
            "review_far_measured": {str(k): row["review_proposed"]["far"] for k, row in report.per_references.items()
                                    if "review_proposed" in row},
            "review_frr_measured": {str(k): row["review_proposed"]["frr"] for k, row in report.per_references.items()
                                    if "review_proposed" in row},
        },
    )
    return calibration


@transaction.atomic
def calibration_revert(*, model_version: str, operator: str) -> SiteCalibration:
    """Send ``model_version`` back to the model's own thresholds (a row with none); audited."""
    if not operator:
        raise ValueError("reverting site thresholds needs the operator's name for the audit log")
    previous = thresholds.site_calibration_current(model_version=model_version)
    calibration = SiteCalibration(model_version=model_version, target_far=previous.target_far if previous else 0.0,
                                  thresholds={}, created_by=operator)
    calibration.full_clean()
    calibration.save()
    audit_append(
        kind=AuditEntry.Kind.CALIBRATION,
        model_version=model_version,
        detail={"operator": operator, "site_calibration_id": calibration.pk, "threshold_source": thresholds.MODEL_SOURCE,
                "previous_calibration_id": previous.pk if previous else None},
    )
    return calibration
