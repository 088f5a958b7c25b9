"""Finish a trained model: score normalisation choice, operating point, model directory.

1. Cohort: one photo each of ``COHORT_SIZE`` training people (never validation or held-out
   people), embedded and saved as ``cohort.npy``.
2. Whether AS-norm against that cohort is on is decided on the *validation* people (held-back
   training people): whichever gives the higher TAR at FAR 1e-3 over all their image pairs.
3. The operating point is chosen on the calibration fold (fold 8) for ``TARGET_FAR`` under the
   service's rule (mean over k references), with every cross-person trial of the fold's images,
   per k = 1..5; the manifest records the target, the thresholds and the expected FAR / FRR with
   people-bootstrap 95 % intervals. ``threshold`` (one pair, k = 1) stays for pair tools.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ml.convert import write_serving_files
from ml.data import TrainingSet, pairs_from_protocol
from ml.lfw import person_of
from ml.metrics import report_at
from ml.operating_point import TEMPLATE_RULE

log = logging.getLogger(__name__)

TARGET_FAR = 1e-3
"""Default false-accept rate per check-in the operating point is chosen for."""

COHORT_SIZE = 500
COHORT_TOP_K = 100
REFERENCE_COUNTS = (1, 2, 3, 4, 5)
DECISION_RULE = TEMPLATE_RULE
RAW, COHORT_NORM = SCORINGS = ("raw", "cohort_norm")  # how a pair's score is read; also the manifest's scoring key
"""How new models combine k references (``ml.operating_point``: fewer false rejects than the mean at the same FAR)."""


def _rows_of_people(paths: np.ndarray, people: frozenset[str] | set[str]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.asarray([r for r, p in enumerate(paths.tolist()) if person_of(p) in people], dtype=np.int64)
    return rows, np.asarray([person_of(p) for p in paths[rows].tolist()])


def choose_scoring(trainer: Any, cache: dict[str, np.ndarray], training: TrainingSet) -> tuple[np.ndarray, dict[str, Any]]:
    """The cohort, and whether normalising against it helps on the validation people."""
    from ml.largescale import all_pairs, rate_at, threshold_at_far
    from ml.scoring import PairScorer, cohort_rows

    config = trainer.config
    train_people = np.asarray([person_of(p) for p in cache["paths"][training.indices].tolist()])
    cohort = trainer.embed_rows(training.indices[cohort_rows(train_people, size=COHORT_SIZE, seed=config.seed)])
    kernel, bias = trainer.head_weights()
    val_rows, val_people = _rows_of_people(cache["paths"], training.val_people)
    val_embeddings = trainer.embed_rows(val_rows)
    results = {}
    for name, scorer in ((RAW, PairScorer(kernel, bias)), (COHORT_NORM, PairScorer(kernel, bias, cohort, top_k=COHORT_TOP_K))):
        pairs = all_pairs(val_embeddings, val_people, scorer)
        results[name] = {far: rate_at(pairs.genuine, threshold_at_far(pairs.impostor, far)) for far in (1e-3, 1e-4)}
    use_norm = results[COHORT_NORM][1e-3] > results[RAW][1e-3]
    log.info("validation TAR@FAR1e-3 raw %.4f, cohort-normalised %.4f -> %s", results[RAW][1e-3],
             results[COHORT_NORM][1e-3], "normalise" if use_norm else "raw")
    return cohort, {
        COHORT_NORM: bool(use_norm), "cohort_size": int(len(cohort)), "cohort_top_k": COHORT_TOP_K,
        "chosen_on": "validation people (held-back training people): TAR at FAR 1e-3 over all their image pairs",
        "validation_tar": {name: {f"far_{far:g}": tar for far, tar in r.items()} for name, r in results.items()},
    }


def export_model(trainer: Any, *, cache: dict[str, np.ndarray], protocol: Any, training: TrainingSet,
                 best: dict[str, Any], elapsed: float, output_dir: str | os.PathLike[str], version: str,
                 target_far: float = TARGET_FAR, rule: str = DECISION_RULE) -> Path:
    """Choose scoring and the operating point, then write the model directory."""
    from ml.inference import COHORT_FILE, MANIFEST_FILE, MODEL_FILE
    from ml.model import count_multiply_adds
    from ml.operating_point import choose_operating_point
    from ml.scoring import PairScorer

    config = trainer.config
    cohort, scoring = choose_scoring(trainer, cache, training)
    kernel, bias = trainer.head_weights()
    scorer = PairScorer(kernel, bias, cohort if scoring[COHORT_NORM] else None, top_k=COHORT_TOP_K)

    cal_people = {name for pair in protocol.calibrate_pairs for name in pair.people}
    cal_rows, cal_names = _rows_of_people(cache["paths"], cal_people)
    cal_embeddings = trainer.embed_rows(cal_rows)
    operating = choose_operating_point(cal_embeddings, cal_names, scorer, target_far=target_far,
                                       references=REFERENCE_COUNTS, seed=config.seed, rule=rule)
    thresholds = {k: row["threshold"] for k, row in operating["per_references"].items()}
    threshold = float(thresholds["1"])
    log_operating_point(operating)

    cal_pairs, cal_same = pairs_from_protocol(protocol.calibrate_pairs, cache["paths"][cal_rows])
    cal_scores = scorer(cal_embeddings[cal_pairs[:, 0]], cal_embeddings[cal_pairs[:, 1]])
    calibration = report_at(cal_same, cal_scores, threshold)

    manifest = {
        "version": version,
        "threshold": threshold,
        "threshold_source": (f"LFW fold 8 (calibrate), every cross-person image pair: the lowest threshold with "
                             f"FAR <= {target_far:g} for one reference"),
        "operating_point": operating_point_entry(operating),
        "scoring": scoring,
        "architecture": {
            "kind": "siamese: shared CNN tower -> L1Distance -> Dense(1, sigmoid)",
            "input": "100x100x3 uint8 RGB, 5-point aligned (MTCNN landmarks, ArcFace template)",
            "embedding_dim": config.embedding_dim,
            "tower_widths": list(config.widths),
            "tower_residual_blocks": config.residual_blocks,  # per 25/13/7 px stage
            "tower_parameters": int(trainer.tower.count_params()),
            "tower_multiply_adds": count_multiply_adds(trainer.tower),
        },
        "inference": {"flip_average": config.flip_average},
        "training": {
            "config": {**asdict(config), "widths": list(config.widths)},
            "loss": ("BCE on anchor/positive + anchor/negative pairs (negatives harden over training) + CosFace"
                     + (" + distillation from dlib's face descriptor (cosine + batch similarity matrix)"
                        if config.distill_weight or config.relational_weight else "")),
            "teacher": "dlib_face_recognition_resnet_model_v1 (training only)" if config.distill_weight else None,
            "optimizer": "Adam, linear warm-up then cosine decay",
            "selection": best.get("selection", "validation ROC AUC"),
            "best_step": best.get("step"),
            "seconds_this_run": round(elapsed, 1),
            "train_images": int(len(training.indices)),
            "train_people": int(training.num_classes),
            "validation_people": int(len(training.val_people)),
        },
        "data": {
            "dataset": "LFW deep-funneled",
            "fingerprint_sha256": str(cache["fingerprint"]),
            "split": "train = people outside View 2 folds 8-10 (minus validation people); calibrate = fold 8; test = folds 9+10",
            "cache_fallback_crops": int((~cache["detected"]).sum()),
        },
        "validation": best.get("validation"),
        "validation_all_pairs": best.get("validation_all_pairs"),
        "calibration": calibration.as_dict(),
    }
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    trainer.siamese.save(out / MODEL_FILE)
    write_serving_files(trainer.siamese, out)  # tower.tflite + head.npz: what the worker runs
    np.save(out / COHORT_FILE, cohort.astype(np.float32))
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("wrote model directory %s (threshold %.4f for one reference, cohort norm %s)", out, threshold,
             scoring[COHORT_NORM])
    return out


def operating_point_entry(operating: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``operating_point`` from :func:`ml.operating_point.choose_operating_point`'s result."""
    per_k = operating["per_references"]
    return {
        "target_far": operating["target_far"],
        "rule": operating["rule"],
        "thresholds": {k: row["threshold"] for k, row in per_k.items()},
        "chosen_on": "LFW View 2 fold 8 (calibrate): every image as a probe against every other person enrolled "
                     f"with k random photos (5 draws), rule: {operating['rule_words']}; 95 % intervals from a "
                     "people bootstrap",
        "expected": per_k,
    }


def log_operating_point(operating: dict[str, Any]) -> None:
    for k, row in operating["per_references"].items():
        log.info("%s rule, k=%s threshold %.4f: FAR %.5f %s, FRR %.4f %s", operating["rule"], k, row["threshold"],
                 row["far"], row["far_ci95"], row["frr"], row["frr_ci95"])


def recalibrate_operating_point(model_dir: str | os.PathLike[str], *, lfw_dir: str | os.PathLike[str],
                                cache_path: str | os.PathLike[str] | None, rule: str, write: bool,
                                target_far: float | None = None, scoring: str | None = None) -> dict[str, Any]:
    """Choose a model directory's operating point again on LFW fold 8, under ``rule`` (the model's
    embeddings unchanged), as :func:`export_model` does; ``scoring`` ("raw" head scores or
    "cohort_norm", AS-norm against the directory's cohort) replaces the manifest's choice, None keeps
    it. With ``write``, the manifest's ``threshold``, ``operating_point``, ``scoring`` and fold-8
    ``calibration`` report are replaced (its review band, calibrated under the old operating point,
    is dropped: run ``python -m ml review-band --write`` again)."""
    from ml.inference import MANIFEST_FILE, FaceModel, training_seed
    from ml.lfw import read_protocol
    from ml.operating_point import check_rule, choose_operating_point
    from ml.review_band import calibration_fold

    check_rule(rule)
    if scoring is not None and scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}: expected one of {SCORINGS}")
    model = FaceModel(model_dir)
    manifest = dict(model.manifest)
    scorer = model.scorer
    if scoring is not None:
        normalise = scoring == COHORT_NORM
        scorer = model.scorer_for(cohort_norm=normalise)
        manifest["scoring"] = {**manifest.get("scoring", {}), COHORT_NORM: normalise, "chosen_on": (
            "LFW fold 8 (calibrate): the scoring with the lower expected FRR at the target FAR, compared with "
            "`python -m ml operating-point --scoring raw|cohort_norm`")}
    target = float(target_far if target_far is not None else manifest.get("operating_point", {}).get("target_far", TARGET_FAR))
    paths, people, crops = calibration_fold(lfw_dir, cache_path=cache_path)
    embeddings = model.embed(crops)
    operating = choose_operating_point(embeddings, people, scorer, target_far=target,
                                       references=REFERENCE_COUNTS, seed=training_seed(manifest), rule=rule)
    log_operating_point(operating)
    entry = operating_point_entry(operating)
    if write:
        manifest["operating_point"] = entry
        manifest["threshold"] = float(entry["thresholds"]["1"])
        pairs, same = pairs_from_protocol(read_protocol(lfw_dir).calibrate_pairs, np.asarray(paths))
        scores = scorer(embeddings[pairs[:, 0]], embeddings[pairs[:, 1]])
        manifest["calibration"] = report_at(same, scores, manifest["threshold"]).as_dict()
        manifest.pop("review_band", None)
        (Path(model_dir) / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return entry
