"""Evaluate a model directory on the LFW protocol: the calibrate fold and the quoted test folds.

The threshold is the one in the model's manifest (chosen on fold 8 when the model was trained);
evaluation never changes it. Writes ``report.json`` and ``roc.png`` into the model directory and
records the test report in its manifest.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ml.augment import center_crop
from ml.data import pairs_from_protocol
from ml.lfw import read_protocol
from ml.metrics import report_at, roc_curve

log = logging.getLogger(__name__)


def _pair_crops(lfw_dir: str | os.PathLike[str], paths: list[str], cache_path: str | os.PathLike[str] | None):
    """Aligned 100x100 crops for ``paths``: from the crop cache when it has them, else detected now."""
    from ml.preprocess import align_lfw_images, load_cache

    if cache_path is not None and Path(cache_path).exists():
        cache = load_cache(cache_path)
        row_of = {p: i for i, p in enumerate(cache["paths"].tolist())}
        if all(p in row_of for p in paths):
            margin = (cache["crops"].shape[1] - 100) // 2
            return center_crop(cache["crops"][[row_of[p] for p in paths]], margin), str(cache["fingerprint"])
        log.warning("cache %s lacks some pair images; detecting them afresh", cache_path)
    crops, _, fingerprint = align_lfw_images(lfw_dir, paths, margin=0)
    return crops, fingerprint


def evaluate(
    lfw_dir: str | os.PathLike[str],
    model_path: str | os.PathLike[str] | None = None,
    *,
    cache_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Score the calibrate and test pairs, write ``report.json``/``roc.png``, return the report."""
    from ml.inference import MANIFEST_FILE, load_model

    model = load_model(model_path)
    protocol = read_protocol(lfw_dir)
    calibrate, test = protocol.calibrate_pairs, protocol.test_pairs
    paths = sorted({p for pair in calibrate + test for p in (pair.path_a, pair.path_b)})
    crops, fingerprint = _pair_crops(lfw_dir, paths, cache_path)
    embeddings = model.embed(crops)
    index = np.asarray(paths)

    def scores_of(pairs):
        rows, same = pairs_from_protocol(pairs, index)
        return same, model.score_pairs(embeddings[rows[:, 0]], embeddings[rows[:, 1]])

    cal_same, cal_scores = scores_of(calibrate)
    test_same, test_scores = scores_of(test)
    test_report = report_at(test_same, test_scores, model.threshold)
    large = large_sample_report(lfw_dir, model, protocol, cache_path=cache_path)
    report = {
        "model_version": model.version,
        "threshold": model.threshold,
        "protocol": "LFW View 2: calibrate = fold 8 (threshold chosen there at training time), test = folds 9+10",
        "data_fingerprint_sha256": fingerprint,
        "calibrate": report_at(cal_same, cal_scores, model.threshold).as_dict(),
        "test": test_report.as_dict(),
        "test_large_sample": large,
    }
    out_dir = model.path
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_roc(test_same, test_scores, model.threshold, out_dir / "roc.png", title=f"{model.version}: LFW folds 9+10")
    manifest_path = out_dir / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["test_report"] = {**report["test"], "large_sample": large}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    model.manifest["test_report"] = manifest["test_report"]
    return report


LARGE_SAMPLE_PER_PERSON = 20
"""Images per test person at most in the all-pairs estimate (one prolific person would otherwise
own most genuine pairs: George W Bush alone has 530 photos in the test folds)."""


def large_sample_report(lfw_dir: str | os.PathLike[str], model: Any, protocol: Any, *,
                        cache_path: str | os.PathLike[str] | None = None, resamples: int = 200) -> dict[str, Any]:
    """Every same-person and cross-person pair among the test people's images (capped per person):
    TAR at FAR 1e-3 and 1e-4 with 95 % intervals, FAR / FRR at the shipped threshold, the mean
    rule's FAR / FRR at the shipped per-reference thresholds, and where the false accepts pile up."""
    from ml.largescale import Trials, all_pairs, false_accept_spread, rates_with_ci, tar_at_far_with_ci
    from ml.lfw import person_of
    from ml.operating_point import expected_rates
    from ml.robustness import sample_images

    test_people = {name for pair in protocol.test_pairs for name in pair.people}
    root = Path(lfw_dir) / "images"
    by_person = {person: sorted(f"{person}/{p.name}" for p in (root / person).glob("*.jpg")) for person in sorted(test_people)}
    paths = sample_images(by_person, per_person=LARGE_SAMPLE_PER_PERSON, seed=0)
    people = np.asarray([person_of(p) for p in paths])
    crops, _ = _pair_crops(lfw_dir, paths, cache_path)
    embeddings = model.embed(crops)
    pairs = all_pairs(embeddings, people, model.scorer)
    trials = Trials.from_pairs(pairs, people)
    log.info("large sample: %d images of %d people, %d genuine and %d impostor pairs", len(paths), len(by_person),
             len(pairs.genuine), len(pairs.impostor))
    return {
        "images": len(paths), "people": len(by_person), "per_person_cap": LARGE_SAMPLE_PER_PERSON,
        "genuine_pairs": int(len(pairs.genuine)), "impostor_pairs": int(len(pairs.impostor)),
        "tar_at_far": {f"{far:g}": tar_at_far_with_ci(trials, far, resamples=resamples).as_dict() for far in (1e-3, 1e-4)},
        "at_shipped_threshold": rates_with_ci(trials, model.threshold, resamples=resamples),
        "decision_rule": model.rule,
        "decision_rule_at_shipped_thresholds": expected_rates(embeddings, people, model.scorer,
                                                              {str(k): v for k, v in model.thresholds().items()},
                                                              resamples=resamples, rule=model.rule),
        "false_accepts_at_shipped_threshold": false_accept_spread(pairs, people, model.threshold),
        "confidence_intervals": "95 %, bootstrap over people (pairs sharing a person are not independent)",
    }


def plot_roc(same: np.ndarray, scores: np.ndarray, threshold: float, path: Path, *, title: str) -> None:
    """ROC curve (log-scaled FAR axis, where access control operates) with the operating point."""
    from ml._extras import train_extra

    matplotlib = train_extra("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roc = roc_curve(same, scores)
    accept = scores >= threshold
    far = float((accept & ~same).sum() / (~same).sum())
    tar = float((accept & same).sum() / same.sum())
    figure, axes = plt.subplots(figsize=(5, 4), dpi=100)
    axes.plot(np.maximum(roc.fpr, 1e-4), roc.tpr, label="ROC")
    axes.plot([max(far, 1e-4)], [tar], "o", label=f"threshold {threshold:.3f}: FAR {far:.3f}, TAR {tar:.3f}")
    axes.set_xscale("log")
    axes.set_xlim(1e-3, 1.0)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("false accept rate")
    axes.set_ylabel("true accept rate")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
