"""Which rule turns k reference photos into one decision score: the mean of the k scores, or the score
against the person's template (the mean of the k reference embeddings, L2-normalised)?

For each rule and k = 1, 3, 5, the threshold admitting at most FAR 1e-3 (and 1e-4) of the strangers on
that rule's own trials, and the genuine probes refused there (FRR): the rule that refuses fewer genuine
people at the same FAR is the better one. Trials as ``ml.operating_point`` draws them (every image a probe
against every other person enrolled with k random photos, 5 draws), on LFW fold 8 (calibration: where the
rule is chosen) and on the test folds 9+10 (reported only). Nothing here trains or calibrates the model.

    .venv/bin/python bench/decision_rule.py --lfw ../shared/datasets/lfw --cache ml-work/lfw_cache_m8.npz [--model DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ml  # noqa: E402
from ml.inference import training_seed  # noqa: E402
from ml.largescale import threshold_at_far  # noqa: E402
from ml.operating_point import RULES, draw_enrolments, reference_trials  # noqa: E402
from ml.review_band import calibration_fold, test_folds  # noqa: E402

FARS = (1e-3, 1e-4)
REFERENCES = (1, 3, 5)


def frr_at_far(embeddings: np.ndarray, people: np.ndarray, scorer, *, k: int, rule: str, seed: int) -> dict[str, float]:
    trials = reference_trials(embeddings, people, scorer, draw_enrolments(people, k, draws=5, seed=seed), rule=rule)
    return {f"{far:g}": float(np.mean(trials.genuine < threshold_at_far(trials.impostor, far))) for far in FARS} | {
        "genuine": len(trials.genuine), "impostor": len(trials.impostor)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", required=True, help="LFW directory (with pairs.txt and images/)")
    parser.add_argument("--cache", help="the training crop cache (ml-work/lfw_cache_m8.npz); detects afresh without")
    parser.add_argument("--model", help="model directory (default: the shipped one)")
    args = parser.parse_args()

    model = ml.load_model(args.model)
    seed = training_seed(model.manifest)
    results: dict[str, dict] = {"model": model.version}
    for fold, load in (("calibration (fold 8)", calibration_fold), ("test (folds 9+10)", test_folds)):
        paths, people, crops = load(args.lfw, cache_path=args.cache)
        embeddings = model.embed(crops)
        print(f"{fold}: {len(paths)} images of {len(np.unique(people))} people, model {model.version}")
        print(f"  {'k':>2} {'rule':>9} " + " ".join(f"{'FRR@FAR ' + format(far, 'g'):>15}" for far in FARS))
        for k in REFERENCES:
            for rule in RULES:
                row = frr_at_far(embeddings, people, model.scorer, k=k, rule=rule, seed=seed)
                results.setdefault(fold, {}).setdefault(str(k), {})[rule] = row
                print(f"  {k:>2} {rule:>9} " + " ".join(f"{row[f'{far:g}'] * 100:14.1f}%" for far in FARS))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
