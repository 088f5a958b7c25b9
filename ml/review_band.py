"""The review band: the scores between "refuse outright" and "admit", which a guard decides.

The admit thresholds (``operating_point`` in the manifest) are chosen on the calibration fold for the
target FAR (1e-3); at them about half of the genuine check-ins are refused (siamese-lfw-2.0.0). The
band's lower edge is chosen the same way, on the same trials, for a looser ``review_far``: the lowest
threshold at which at most ``review_far`` of the impostor trials reach the guard or beyond. Below it the
door refuses outright; between it and the admit threshold a guard sees the snapshot and decides.

Per reference count k the block records the lower edge, the FAR there (strangers not refused outright:
the guard's workload from impostors, and the FAR were the guard to admit everything) and the FRR there
(genuine check-ins refused outright, which no guard can rescue), both with people-bootstrap 95 %
intervals, and the share of genuine and impostor trials the band sends to a guard.

:func:`choose_review_band` is pure NumPy; :func:`review_band_for_model` embeds the calibration fold
(LFW View 2 fold 8, the fold the operating point was chosen on: never a training fold) and checks that
the admit thresholds it re-derives on the same trials are the manifest's before it trusts them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ml.largescale import rates_with_ci, threshold_at_far
from ml.operating_point import MEAN_RULE, RULE_WORDS, ProbeScorer, draw_enrolments, reference_trials

log = logging.getLogger(__name__)

REVIEW_FAR = 1e-2
"""Default share of impostor check-ins allowed to reach the guard (or beyond)."""

ENROLMENT_DRAWS = 5
"""As the operating point (``ml.export``): the same draws make the same trials."""

REPRODUCE_TOLERANCE = 2e-3
"""Largest difference between a re-derived admit threshold and the manifest's before the band is refused."""


def choose_review_band(
    embeddings: np.ndarray, people: np.ndarray, scorer: ProbeScorer, *, admit_thresholds: dict[str, float],
    review_far: float = REVIEW_FAR, target_far: float | None = None, draws: int = ENROLMENT_DRAWS, seed: int = 0,
    resamples: int = 200, rule: str = MEAN_RULE,
) -> dict[str, Any]:
    """Per reference count k in ``admit_thresholds`` (``{"1": t1, ...}``): the band's lower edge at
    ``review_far`` on ``rule``'s trials (``ml.operating_point``'s), with FAR/FRR there and the band's
    shares. With ``target_far``, each k also records the admit threshold re-derived on the same trials
    (``admit_threshold_rederived``), to check the trials are the ones the operating point was chosen on.
    """
    if not 0.0 < review_far < 1.0:
        raise ValueError(f"review FAR must be in (0, 1), not {review_far}")
    per_k: dict[str, Any] = {}
    for key, admit in sorted(admit_thresholds.items(), key=lambda item: int(item[0])):
        k = int(key)
        enrolments = draw_enrolments(people, k, draws=draws, seed=seed)
        if not enrolments or not enrolments[0].references:
            continue
        trials = reference_trials(embeddings, people, scorer, enrolments, rule=rule)
        if len(trials.genuine) == 0 or len(trials.impostor) == 0:
            continue
        # Never above the admit threshold: a looser target on the same trials cannot give a higher edge,
        # but an admit threshold from elsewhere (a site's) could sit below it; then the band is empty.
        lower = min(threshold_at_far(trials.impostor, review_far), float(admit))
        row: dict[str, Any] = {
            **rates_with_ci(trials, lower, resamples=resamples, seed=seed),
            "admit_threshold": float(admit),
            "genuine_to_review": _share_between(trials.genuine, lower, float(admit)),
            "impostor_to_review": _share_between(trials.impostor, lower, float(admit)),
            "enrolled_people": len(enrolments[0].references),
            "enrolment_draws": draws,
        }
        if target_far is not None:
            row["admit_threshold_rederived"] = threshold_at_far(trials.impostor, target_far)
        per_k[key] = row
    return {
        "review_far": review_far,
        "rule": rule,
        "rule_words": f"{RULE_WORDS[rule]}: admit; >= review threshold a guard decides; below it refuse",
        "per_references": per_k,
    }


def band_rates(
    embeddings: np.ndarray, people: np.ndarray, scorer: ProbeScorer, *, admit_thresholds: dict[str, float],
    review_thresholds: dict[str, float], draws: int = ENROLMENT_DRAWS, seed: int = 0, resamples: int = 200,
    rule: str = MEAN_RULE,
) -> dict[str, Any]:
    """Fixed band edges measured on other people (the test folds): per k, FAR / FRR at the review edge with
    95 % intervals and the band's shares, on ``rule``'s trials drawn as ``ml.operating_point.expected_rates``."""
    out: dict[str, Any] = {}
    for key in sorted(review_thresholds, key=int):
        enrolments = draw_enrolments(people, int(key), draws=draws, seed=seed + 101)
        if not enrolments or not enrolments[0].references:
            continue
        trials = reference_trials(embeddings, people, scorer, enrolments, rule=rule)
        lower, admit = float(review_thresholds[key]), float(admit_thresholds[key])
        out[key] = {
            **rates_with_ci(trials, lower, resamples=resamples, seed=seed),
            "admit_threshold": admit,
            "genuine_to_review": _share_between(trials.genuine, lower, admit),
            "impostor_to_review": _share_between(trials.impostor, lower, admit),
            "enrolled_people": len(enrolments[0].references),
        }
    return out


def test_folds(lfw_dir: str | os.PathLike[str], *, cache_path: str | os.PathLike[str] | None = None,
               per_person: int = 20) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The test people's images (LFW View 2 folds 9+10), at most ``per_person`` each, as ``ml.evaluate``'s
    large-sample report picks them: paths, person names, aligned crops."""
    from ml.evaluate import _pair_crops
    from ml.lfw import person_of, read_protocol
    from ml.robustness import sample_images

    protocol = read_protocol(lfw_dir)
    test_people = {name for pair in protocol.test_pairs for name in pair.people}
    root = Path(lfw_dir) / "images"
    by_person = {person: sorted(f"{person}/{p.name}" for p in (root / person).glob("*.jpg"))
                 for person in sorted(test_people)}
    paths = sample_images(by_person, per_person=per_person, seed=0)
    crops, _ = _pair_crops(lfw_dir, paths, cache_path)
    return paths, np.asarray([person_of(p) for p in paths]), crops


def _share_between(scores: np.ndarray, lower: float, upper: float) -> float:
    scores = np.asarray(scores)
    return float(((scores >= lower) & (scores < upper)).mean()) if len(scores) else float("nan")


def calibration_fold(lfw_dir: str | os.PathLike[str], *, cache_path: str | os.PathLike[str] | None = None,
                     ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every image of the calibration fold's people (LFW View 2 fold 8) as in ``ml.export``: their
    paths, person names and aligned 100x100 crops (from the training crop cache when given)."""
    from ml.augment import center_crop
    from ml.lfw import person_of, read_protocol

    protocol = read_protocol(lfw_dir)
    cal_people = {name for pair in protocol.calibrate_pairs for name in pair.people}
    if cache_path is not None and Path(cache_path).exists():
        from ml.preprocess import load_cache

        cache = load_cache(cache_path)
        all_paths = cache["paths"].tolist()
        rows = np.asarray([r for r, p in enumerate(all_paths) if person_of(p) in cal_people], dtype=np.int64)
        paths = [all_paths[r] for r in rows]
        margin = (cache["crops"].shape[1] - 100) // 2
        crops = center_crop(cache["crops"][rows], margin)
    else:
        from ml.preprocess import align_lfw_images

        root = Path(lfw_dir) / "images"
        paths = sorted(f"{person}/{p.name}" for person in sorted(cal_people) for p in (root / person).glob("*.jpg"))
        crops, _, _ = align_lfw_images(lfw_dir, paths, margin=0)
    return paths, np.asarray([person_of(p) for p in paths]), crops


def review_band_for_model(model: Any, lfw_dir: str | os.PathLike[str], *,
                          cache_path: str | os.PathLike[str] | None = None, review_far: float = REVIEW_FAR,
                          resamples: int = 200, test: bool = False) -> dict[str, Any]:
    """The manifest's ``review_band`` block for a loaded ``ml.inference.FaceModel``; with ``test``, also the
    band measured on the test folds' people (``test_folds``: reported, never used to choose anything).

    Raises ``ValueError`` when the admit thresholds re-derived on the calibration trials differ from the
    manifest's by more than ``REPRODUCE_TOLERANCE`` (other crops, another fold: the band would not sit
    under the shipped thresholds it is meant for).
    """
    operating = model.manifest.get("operating_point") or {}
    admit = {str(k): float(v) for k, v in (operating.get("thresholds") or {}).items()}
    if not admit:
        raise ValueError(f"{model.version}: the manifest has no operating_point thresholds to put a band under")
    from ml.inference import training_seed

    seed = training_seed(model.manifest)
    paths, people, crops = calibration_fold(lfw_dir, cache_path=cache_path)
    log.info("review band: %d calibration images of %d people (fold 8)", len(paths), len(np.unique(people)))
    embeddings = model.embed(crops)
    band = choose_review_band(embeddings, people, model.scorer, admit_thresholds=admit, review_far=review_far,
                              target_far=operating.get("target_far"), draws=ENROLMENT_DRAWS, seed=seed,
                              resamples=resamples, rule=model.rule)
    for key, row in band["per_references"].items():
        rederived = row.get("admit_threshold_rederived")
        if rederived is not None and abs(rederived - row["admit_threshold"]) > REPRODUCE_TOLERANCE:
            raise ValueError(
                f"k={key}: the admit threshold re-derived on these trials is {rederived:.4f}, the manifest's "
                f"{row['admit_threshold']:.4f}: not the trials the operating point was chosen on")
        log.info("k=%s review threshold %.4f (admit %.4f): FAR %.5f %s, FRR %.4f %s, to review: genuine %.3f, "
                 "impostor %.5f", key, row["threshold"], row["admit_threshold"], row["far"], row["far_ci95"],
                 row["frr"], row["frr_ci95"], row["genuine_to_review"], row["impostor_to_review"])
    chosen = {key: row["threshold"] for key, row in band["per_references"].items()}
    test_block: dict[str, Any] = {}
    if test:
        test_paths, test_people, test_crops = test_folds(lfw_dir, cache_path=cache_path)
        test_block = {"test_folds": {
            "measured_on": f"LFW View 2 folds 9+10 (test): {len(test_paths)} images of {len(np.unique(test_people))} "
                           "people, at most 20 each; enrolments drawn as ml.operating_point.expected_rates",
            "per_references": band_rates(model.embed(test_crops), test_people, model.scorer, admit_thresholds=admit,
                                         review_thresholds=chosen, draws=ENROLMENT_DRAWS, seed=seed,
                                         resamples=resamples, rule=model.rule),
        }}
        for key, row in test_block["test_folds"]["per_references"].items():
            log.info("test folds k=%s review threshold %.4f: FAR %.5f %s, FRR %.4f %s, to review: genuine %.3f",
                     key, row["threshold"], row["far"], row["far_ci95"], row["frr"], row["frr_ci95"],
                     row["genuine_to_review"])
    return {
        **band,
        "thresholds": chosen,
        "chosen_on": ("LFW View 2 fold 8 (calibrate), the operating point's trials: every image as a probe against "
                      f"every other person enrolled with k random photos ({ENROLMENT_DRAWS} draws, seed {seed}), "
                      f"{model.rule} rule; 95 % intervals from a people bootstrap"),
        "data_images": len(paths),
        "command": (f"python -m ml review-band --lfw LFW_DIR --review-far {review_far:g}"
                    f"{' --test' if test else ''} --write"),
        **test_block,
    }


def write_review_band(model_dir: str | os.PathLike[str], block: dict[str, Any]) -> Path:
    """Store ``block`` as the manifest's ``review_band`` (every other key left as it was)."""
    from ml.inference import MANIFEST_FILE

    path = Path(model_dir) / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["review_band"] = block
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
