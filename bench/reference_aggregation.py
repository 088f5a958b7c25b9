"""How should one probe be decided against k reference photos? Best score vs mean score.

The shipped threshold is calibrated on single pairs (LFW fold 8). A check-in compares the probe with
every reference of the claimed person, so the rule that turns k scores into one decision changes the
false accept rate. This measures, on LFW fold-8 people only (the calibration fold; the test folds are
not touched), FRR for genuine probes and FAR for impostor probes at the model's threshold, for k = 1,
3 and 5 references, with the best (max) and the mean score.

    .venv/bin/python bench/reference_aggregation.py --lfw ../shared/datasets/lfw [--cache ml-work/lfw_cache_m8.npz]

The crop cache is the one `python -m ml train` writes; it is built (about 2 minutes) when missing.
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
from ml.augment import center_crop  # noqa: E402
from ml.lfw import CALIBRATE_FOLDS, read_protocol  # noqa: E402
from ml.preprocess import build_cache, load_cache  # noqa: E402

CACHE_MARGIN = 8
IMPOSTORS_PER_PERSON = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", required=True, help="LFW directory (with pairs.txt and images/)")
    parser.add_argument("--cache", default=str(ROOT / "ml-work" / f"lfw_cache_m{CACHE_MARGIN}.npz"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if not Path(args.cache).exists():
        build_cache(args.lfw, args.cache, margin=CACHE_MARGIN)
    cache = load_cache(args.cache)
    fold_people = {name for pair in read_protocol(args.lfw).pairs(CALIBRATE_FOLDS) for name in pair.people}
    photos: dict[str, list[int]] = {}
    for index, path in enumerate(str(p) for p in cache["paths"]):
        name = path.split("/", 1)[0]
        if name in fold_people:
            photos.setdefault(name, []).append(index)

    model = ml.load_model()
    rows = sorted(i for indices in photos.values() for i in indices)
    embeddings = dict(zip(rows, model.embed(center_crop(cache["crops"][rows], CACHE_MARGIN))))
    owner = {i: name for name, indices in photos.items() for i in indices}
    rng = np.random.default_rng(args.seed)

    results = []
    for k in (1, 3, 5):
        accepted = {("max", "genuine"): [], ("max", "impostor"): [], ("mean", "genuine"): [], ("mean", "impostor"): []}
        for name, indices in sorted(photos.items()):
            if len(indices) < k + 1:
                continue
            order = list(rng.permutation(indices))
            references = np.stack([embeddings[i] for i in order[:k]])
            strangers = [i for i in rng.choice(rows, IMPOSTORS_PER_PERSON, replace=False) if owner[i] != name]
            for kind, probes in (("genuine", order[k:]), ("impostor", strangers)):
                for probe in probes:
                    scores = model.score(embeddings[probe], references)
                    accepted[("max", kind)].append(scores.max() >= model.threshold)
                    accepted[("mean", kind)].append(scores.mean() >= model.threshold)
        for rule in ("max", "mean"):
            genuine, impostor = accepted[(rule, "genuine")], accepted[(rule, "impostor")]
            row = {"references": k, "rule": rule, "genuine": len(genuine), "frr": round(1 - float(np.mean(genuine)), 3),
                   "impostors": len(impostor), "far": round(float(np.mean(impostor)), 3)}
            results.append(row)
            print(f"k={k} {rule:4s}  FRR {row['frr']:.3f} ({row['genuine']} genuine)  FAR {row['far']:.3f} ({row['impostors']} impostor)")
    out = ROOT / "bench" / "results" / "reference_aggregation.json"
    out.write_text(json.dumps({"model_version": model.version, "threshold": model.threshold, "results": results}, indent=2))


if __name__ == "__main__":
    main()
