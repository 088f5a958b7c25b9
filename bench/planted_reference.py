"""An insider's attack on the decision rule: one of the victim's k reference photos is the attacker's.

The enrolment consistency check refuses such a photo (``inconsistent_reference``: it does not match the
person's other photos) unless an operator accepts it anyway (audited). If one gets through, how often is
the attacker's *other* photo admitted at the door? Compared for the mean rule (3.0.0's thresholds, given
with --mean-thresholds) and the model's own rule at its own thresholds, on the LFW test folds' people
(folds 9+10, at most 20 photos each): victims with at least 4 photos, attackers with at least 2.

    .venv/bin/python bench/planted_reference.py --lfw ../shared/datasets/lfw --cache ml-work/lfw_cache_m8.npz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ml  # noqa: E402
from ml.review_band import test_folds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", required=True)
    parser.add_argument("--cache")
    parser.add_argument("--model")
    parser.add_argument("--trials", type=int, default=3000)
    parser.add_argument("--mean-thresholds", default="2:0.449,3:0.439",
                        help="k:threshold of the mean rule to compare with (default: siamese-lfw-3.0.0's)")
    args = parser.parse_args()

    model = ml.load_model(args.model)
    _, people, crops = test_folds(args.lfw, cache_path=args.cache)
    embeddings = model.embed(crops)
    rows: dict[str, list[int]] = {}
    for row, person in enumerate(people):
        rows.setdefault(person, []).append(row)
    victims = [p for p, r in rows.items() if len(r) >= 4]
    attackers = [p for p, r in rows.items() if len(r) >= 2]
    rng = np.random.default_rng(0)
    for pair in args.mean_thresholds.split(","):
        k, mean_threshold = int(pair.split(":")[0]), float(pair.split(":")[1])
        admitted_mean = admitted_rule = trials = 0
        while trials < args.trials:
            victim, attacker = victims[rng.integers(len(victims))], attackers[rng.integers(len(attackers))]
            if victim == attacker:
                continue
            planted, probe = rng.choice(rows[attacker], size=2, replace=False)
            references = embeddings[np.r_[rng.choice(rows[victim], size=k - 1, replace=False), planted]]
            scores = model.score(embeddings[probe], references)
            admitted_mean += scores.mean() >= mean_threshold
            admitted_rule += model.decision_score(embeddings[probe], references, scores) >= model.threshold_for(k)
            trials += 1
        print(f"k={k}, 1 of {k} references planted: the attacker's other photo admitted by the mean rule "
              f"{admitted_mean / trials:.1%}, by {model.version}'s {model.rule} rule {admitted_rule / trials:.1%} "
              f"({trials} trials)")


if __name__ == "__main__":
    main()
