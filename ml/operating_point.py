"""The operating point under the service's own decision rule, chosen for a target false-accept rate.

The door does not compare two photos: it compares one snapshot with the *k* enrolled references of
the claimed person. Two rules combine the k references (best-of-k let in three times as many
strangers as either, so it is not one of them); the model's manifest names its rule:

- ``mean``: the mean of the k pair scores reaches the threshold (models before siamese-lfw-3.0.1);
- ``template``: the probe's score against the person's *template* (the mean of the k reference
  embeddings, L2-normalised again) reaches the threshold. Averaging the embeddings averages out
  each photo's lighting, pose and camera before scoring; with siamese-lfw-3.0.0 on LFW fold 8
  (calibration) at 3 references it refused 21.7 % of genuine probes where the mean rule refused
  26.3 %, at the same FAR 1e-3 (at 1e-4: 49.3 % vs 59.9 %; ``bench/decision_rule.py``).

So the threshold is chosen on trials that look like check-ins: every image of the calibration fold
is a probe against every other calibration person enrolled with k of their photos (several seeded
enrolment draws), and genuine trials are each person's remaining photos against their own k references.

The threshold for each k is the lowest whose impostor acceptance stays at or below the target on
these trials; FAR and FRR carry people-bootstrap 95 % intervals (:mod:`ml.largescale`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ml.largescale import Trials, rates_with_ci, rows_scorer, threshold_at_far

ProbeScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(N, D) x (N, D) embeddings -> (N,) pair scores (or a :class:`ml.scoring.PairScorer`)."""

MEAN_RULE, TEMPLATE_RULE = "mean", "template"
RULES = (MEAN_RULE, TEMPLATE_RULE)
RULE_WORDS = {
    MEAN_RULE: "mean of the k reference scores >= threshold",
    TEMPLATE_RULE: "score against the template (mean of the k reference embeddings, L2-normalised) >= threshold",
}


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"unknown decision rule {rule!r}: expected one of {RULES}")
    return rule


def template_of(references: np.ndarray) -> np.ndarray:
    """(k, D) reference embeddings -> (D,) their mean, L2-normalised (the embeddings' own scale)."""
    references = np.asarray(references, dtype=np.float32)
    if references.ndim != 2 or len(references) == 0:
        raise ValueError(f"expected (k, D) reference embeddings with k >= 1, got {references.shape}")
    mean = references.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    # Two opposite references average to ~0: no direction to normalise, so zeros rather than noise scaled up.
    return mean / norm if norm > 1e-6 else np.zeros_like(mean)


def threshold_for_count(per_k: dict[int, float], default: float, references: int) -> float:
    """The threshold for a person with ``references`` enrolled photos: the one calibrated for that
    count, the largest calibrated count's beyond it (more references only lower the FAR), the
    smallest's below it; ``default`` when nothing was calibrated per count."""
    if not per_k or references < 1:
        return default
    if references in per_k:
        return per_k[references]
    return per_k[max(per_k)] if references > max(per_k) else per_k[min(per_k)]


@dataclass(frozen=True)
class Enrolment:
    """For each enrolled person (id), the image indices used as references."""

    references: dict[object, np.ndarray]


def draw_enrolments(people: np.ndarray, k: int, *, draws: int, seed: int) -> list[Enrolment]:
    """``draws`` seeded enrolments: every person with at least ``k + 1`` images (so a genuine probe
    remains) enrolled with ``k`` of them chosen at random."""
    people = np.asarray(people)
    rng = np.random.default_rng([seed, k])
    by_person: dict[object, np.ndarray] = {}
    for person in np.unique(people):
        rows = np.flatnonzero(people == person)
        if len(rows) >= k + 1:
            by_person[person] = rows
    return [
        Enrolment({person: np.sort(rng.choice(rows, size=k, replace=False)) for person, rows in by_person.items()})
        for _ in range(draws)
    ]


def reference_trials(embeddings: np.ndarray, people: np.ndarray, scorer: ProbeScorer, enrolments: list[Enrolment],
                     *, rule: str = MEAN_RULE) -> Trials:
    """Check-in trials under ``rule``: each image as a probe against every enrolled person."""
    check_rule(rule)
    people = np.asarray(people)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    every = np.arange(len(people))
    enrolled = [(person, refs) for enrolment in enrolments for person, refs in enrolment.references.items()]
    if rule == TEMPLATE_RULE:
        # Enrolment i's template is row len(embeddings) + i, so a scorer that prepares per-row work does it
        # once for the templates too.
        templates = np.stack([template_of(embeddings[refs]) for _, refs in enrolled]) if enrolled else embeddings[:0]
        score_rows = rows_scorer(np.concatenate([embeddings, templates]), scorer)
    else:
        score_rows = rows_scorer(embeddings, scorer)
    genuine, genuine_people, impostor, impostor_people = [], [], [], []
    for position, (person, refs) in enumerate(enrolled):
        if rule == TEMPLATE_RULE:
            score = score_rows(every, np.full(len(every), len(embeddings) + position))
        else:
            score = np.mean([score_rows(every, np.full(len(every), r)) for r in refs], axis=0)
        is_ref = np.zeros(len(people), dtype=bool)
        is_ref[refs] = True
        own = (people == person) & ~is_ref
        other = people != person
        genuine.append(score[own])
        genuine_people.append(people[own])
        impostor.append(score[other])
        impostor_people.append(np.stack([people[other], np.full(int(other.sum()), person, dtype=people.dtype)], 1))
    return Trials(
        genuine=np.concatenate(genuine).astype(np.float32),
        genuine_people=np.concatenate(genuine_people),
        impostor=np.concatenate(impostor).astype(np.float32),
        impostor_people=np.concatenate(impostor_people),
    )


def choose_operating_point(
    embeddings: np.ndarray, people: np.ndarray, scorer: ProbeScorer, *, target_far: float,
    references: tuple[int, ...] = (1, 2, 3, 4, 5), draws: int = 5, seed: int = 0, resamples: int = 200,
    rule: str = MEAN_RULE,
) -> dict[str, object]:
    """Per reference count k: the threshold meeting ``target_far`` on ``rule``'s trials, with the
    FAR and FRR expected there (95 % people-bootstrap intervals) and the trial counts."""
    per_k: dict[str, object] = {}
    for k in references:
        enrolments = draw_enrolments(people, k, draws=draws, seed=seed)
        if not enrolments or not enrolments[0].references:
            continue
        trials = reference_trials(embeddings, people, scorer, enrolments, rule=rule)
        if len(trials.genuine) == 0 or len(trials.impostor) == 0:
            continue
        threshold = threshold_at_far(trials.impostor, target_far)
        per_k[str(k)] = {
            **rates_with_ci(trials, threshold, resamples=resamples, seed=seed),
            "enrolled_people": len(enrolments[0].references),
            "enrolment_draws": draws,
        }
    return {"target_far": target_far, "rule": rule, "rule_words": RULE_WORDS[rule], "per_references": per_k}


def expected_rates(
    embeddings: np.ndarray, people: np.ndarray, scorer: ProbeScorer, thresholds: dict[str, float], *,
    draws: int = 5, seed: int = 0, resamples: int = 200, rule: str = MEAN_RULE,
) -> dict[str, object]:
    """FAR and FRR (with intervals) of ``rule`` at fixed per-k ``thresholds`` on other data."""
    out: dict[str, object] = {}
    for key, threshold in thresholds.items():
        k = int(key)
        enrolments = draw_enrolments(people, k, draws=draws, seed=seed + 101)
        if not enrolments or not enrolments[0].references:
            continue
        trials = reference_trials(embeddings, people, scorer, enrolments, rule=rule)
        out[key] = {**rates_with_ci(trials, threshold, resamples=resamples, seed=seed),
                    "enrolled_people": len(enrolments[0].references)}
    return out
