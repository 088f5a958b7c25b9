"""``python -m ml train | evaluate | score-pairs | robustness | review-band | info | convert``: thin commands over the package API."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from ml.export import SCORINGS
from ml.operating_point import RULES, TEMPLATE_RULE

log = logging.getLogger("ml")

_LFW_ENV = "ML_LFW_DIR"


def _model_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="PATH", help="model directory (default: the shipped model)")


def _lfw_args(parser: argparse.ArgumentParser, *, cache: bool = True) -> None:
    parser.add_argument("--lfw", default=os.environ.get(_LFW_ENV), metavar="DIR", help=f"LFW root (default: ${_LFW_ENV})")
    if cache:
        parser.add_argument("--cache", metavar="FILE", help="crop cache from training (skips re-detection)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml", description="Siamese face verification: train, evaluate, score.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a new model directory on LFW", description=(
        "Train on the LFW protocol split (people outside View 2 folds 8-10), calibrate the threshold on fold 8, "
        "and write a model directory. Re-running with the same --work-dir resumes from the last checkpoint."))
    train.add_argument("--data", required=True, metavar="DIR", help="LFW root (with images/ and pairs.txt)")
    train.add_argument("--output", required=True, metavar="DIR", help="model directory to write")
    train.add_argument("--work-dir", default="ml-work", metavar="DIR", help="crop cache and checkpoints (default: ml-work)")
    train.add_argument("--steps", type=int, help="training steps (default from TrainConfig)")
    train.add_argument("--seed", type=int, help="random seed (default from TrainConfig)")
    train.add_argument("--threads", type=int, help="TensorFlow intra-op threads")
    train.add_argument("--version", default="siamese-lfw-dev", help="version string written to the manifest")
    train.add_argument("--config", metavar="MANIFEST", help=(
        "take the training config from a model's manifest.json (reproduces that model; "
        "--steps/--seed/--threads still override)"))
    train.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help=(
        "override one TrainConfig field, e.g. --set learning_rate=6e-4 --set init_from=ml/models/siamese-lfw-2 "
        "(repeatable; recorded in the manifest like every other field)"))

    evaluate = commands.add_parser("evaluate", help="report on the calibrate and test pairs", description=(
        "Score LFW View 2 fold 8 (calibrate) and folds 9+10 (test) at the model's threshold; print the report and "
        "write report.json and roc.png next to the model."))
    _lfw_args(evaluate)
    _model_arg(evaluate)

    score = commands.add_parser("score-pairs", help="score image pairs listed in a file", description=(
        "Read lines 'path_a<TAB>path_b' and print 'path_a<TAB>path_b<TAB>score<TAB>decision<TAB>reason'. "
        "score is P(same person) in [0, 1] (empty when an image cannot be used), decision is 1/0 at the "
        "model's threshold, reason is empty or says why (no_face, face_too_small, multiple_faces, unreadable_image, image_too_large)."))
    score.add_argument("file", metavar="FILE", help="pairs file ('-' for standard input)")
    _model_arg(score)

    robust = commands.add_parser("robustness", help="the decision on transformed probes (other cameras)", description=(
        "Transform the test people's photos as other cameras would (greyscale, low light, small faces, JPEG, "
        "off-centre, a second face, blur), send them through the whole door pipeline against clean references, "
        "and report unusable rate, accuracy, FAR and FRR per condition at the model's threshold. Writes "
        "robustness.json next to the model; --size-sweep also measures accuracy against face width "
        "(size_curve.json) below the policy's minimum."))
    _lfw_args(robust, cache=False)
    robust.add_argument("--per-person", type=int, default=6, help="images per person at most (default 6)")
    robust.add_argument("--size-sweep", action="store_true", help="also measure accuracy against face width")
    _model_arg(robust)

    band = commands.add_parser("review-band", help="the review band's lower thresholds, from the calibration fold",
                               description=(
        "Choose the review band's lower edge per reference count on the trials the operating point was chosen on "
        "(LFW View 2 fold 8, the model's decision rule): the lowest threshold letting at most --review-far of impostor check-ins "
        "reach a guard. Prints the block with FAR/FRR and 95 % intervals; --write stores it as the manifest's "
        "review_band. Refuses when the admit thresholds re-derived on the same trials are not the manifest's."))
    _lfw_args(band)
    band.add_argument("--review-far", type=float, default=None, help="impostor share allowed to reach a guard (default 0.01)")
    band.add_argument("--test", action="store_true",
                      help="also report the band on the test folds' people (9+10; chooses nothing)")
    band.add_argument("--write", action="store_true", help="store the block in the model's manifest.json")
    _model_arg(band)

    point = commands.add_parser("operating-point", help="choose the per-reference thresholds again under a rule",
                                description=(
        "Choose the model's per-reference-count thresholds again on LFW View 2 fold 8 (every image a probe against "
        "every other person enrolled with k photos) for the manifest's target FAR, under --rule: 'template' (the "
        "probe against the mean of the k reference embeddings) or 'mean' (the mean of the k scores). Prints the "
        "block; --write stores it in the manifest and drops the review band calibrated under the old thresholds "
        "(run review-band --write after it)."))
    _lfw_args(point)
    point.add_argument("--rule", choices=RULES, default=TEMPLATE_RULE, help=f"decision rule (default {TEMPLATE_RULE})")
    point.add_argument("--scoring", choices=SCORINGS, default=None, help=(
        "score normalisation: raw head scores or cohort_norm (AS-norm against the model's cohort.npy); "
        "default: the manifest's"))
    point.add_argument("--write", action="store_true", help="store it in the model's manifest.json")
    _model_arg(point)

    info = commands.add_parser("info", help="print the model's manifest as JSON")
    _model_arg(info)

    convert = commands.add_parser("convert", help="write the TensorFlow Lite files the worker runs", description=(
        "Convert a model directory's Keras network (model.keras) into tower.tflite and head.npz, which the worker "
        "serves with LiteRT (new models get them from training). --detector instead converts the installed "
        "mtcnn package's three networks into ml/detector_models. Needs TensorFlow (the train or dev extra)."))
    _model_arg(convert)
    convert.add_argument("--detector", action="store_true", help="convert MTCNN's networks instead of a model")
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ml.train import TrainConfig, train

    config = TrainConfig.from_manifest(args.config) if args.config else TrainConfig()
    overrides = {k: v for k, v in (("steps", args.steps), ("seed", args.seed), ("threads", args.threads)) if v is not None}
    config = replace(config, **overrides, **_config_overrides(config, args.set))
    out = train(config, lfw_dir=args.data, output_dir=args.output, work_dir=args.work_dir, version=args.version)
    print(out)
    return 0


def _config_overrides(config: object, assignments: Sequence[str]) -> dict[str, object]:
    """``FIELD=VALUE`` strings as typed TrainConfig overrides (the type of the field's current value)."""
    overrides: dict[str, object] = {}
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        if not sep or not hasattr(config, name) or name == "extra":
            raise SystemExit(f"train: --set {assignment!r}: expected FIELD=VALUE with a TrainConfig field")
        current = getattr(config, name)
        if isinstance(current, bool):
            value: object = raw.lower() in ("1", "true", "yes")
        elif isinstance(current, tuple):
            value = tuple(int(part) for part in raw.split(","))
        else:
            try:
                value = type(current)(raw)
            except ValueError as error:
                raise SystemExit(f"train: --set {assignment!r}: {error}") from None
        overrides[name] = value
    return overrides


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ml.evaluate import evaluate

    if not args.lfw:
        raise SystemExit(f"evaluate: give --lfw DIR or set ${_LFW_ENV}")
    report = evaluate(args.lfw, args.model, cache_path=args.cache)
    print(json.dumps(report, indent=2))
    return 0


def _read_pairs(file: str) -> list[tuple[str, str]]:
    text = sys.stdin.read() if file == "-" else Path(file).read_text()
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 2 or not all(fields):
            raise SystemExit(f"score-pairs: {file}:{number}: expected 'path_a<TAB>path_b', got {line!r}")
        pairs.append((fields[0], fields[1]))
    return pairs


def _cmd_score_pairs(args: argparse.Namespace) -> int:
    from ml.align import extract_face
    from ml.errors import FaceError, ImageError
    from ml.image import read_image
    from ml.inference import load_model

    try:
        pairs = _read_pairs(args.file)
    except OSError as exc:
        raise SystemExit(f"score-pairs: cannot read {args.file}: {exc.strerror or exc}") from exc
    model = load_model(args.model)
    embeddings: dict[str, object] = {}

    def embedding(path: str):
        if path not in embeddings:
            try:
                embeddings[path] = model.embed(extract_face(read_image(path))[None])[0]
            except (ImageError, FaceError) as exc:
                embeddings[path] = exc.reason
        return embeddings[path]

    for path_a, path_b in pairs:
        first, second = embedding(path_a), embedding(path_b)
        reasons = [r for r in (first, second) if isinstance(r, str)]
        if reasons:
            print(f"{path_a}\t{path_b}\t\t0\t{reasons[0]}")
            continue
        score = float(model.score(first, second[None])[0])
        print(f"{path_a}\t{path_b}\t{score:.6f}\t{int(model.decide(score))}\t")
    return 0


def _cmd_robustness(args: argparse.Namespace) -> int:
    from ml.inference import load_model
    from ml.robustness import CONDITIONS, SIZE_SWEEP, run_suite, smallest_reliable_width

    if not args.lfw:
        raise SystemExit(f"robustness: give --lfw DIR or set ${_LFW_ENV}")
    model = load_model(args.model)
    report = run_suite(args.lfw, model, per_person=args.per_person, conditions=CONDITIONS)
    (model.path / "robustness.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({name: {k: row[k] for k in ("unusable_rate", "listed_accuracy", "far", "frr", "far_vs_clean")}
                      for name, row in report["conditions"].items()}, indent=2))
    if args.size_sweep:
        sweep = run_suite(args.lfw, model, per_person=args.per_person, conditions=SIZE_SWEEP, min_face_px=0)
        sweep["smallest_reliable_width"] = smallest_reliable_width(sweep, report["conditions"]["clean"])
        (model.path / "size_curve.json").write_text(json.dumps(sweep, indent=2) + "\n")
        print(json.dumps({name: {k: row[k] for k in ("unusable_rate", "far", "frr")} for name, row in sweep["conditions"].items()}
                         | {"smallest_reliable_width": sweep["smallest_reliable_width"]}, indent=2))
    return 0


def _cmd_review_band(args: argparse.Namespace) -> int:
    from ml.inference import load_model
    from ml.review_band import REVIEW_FAR, review_band_for_model, write_review_band

    if not args.lfw:
        raise SystemExit(f"review-band: give --lfw DIR or set ${_LFW_ENV}")
    model = load_model(args.model)
    try:
        block = review_band_for_model(model, args.lfw, cache_path=args.cache,
                                      review_far=REVIEW_FAR if args.review_far is None else args.review_far,
                                      test=args.test)
    except ValueError as exc:
        raise SystemExit(f"review-band: {exc}") from exc
    print(json.dumps(block, indent=2))
    if args.write:
        log.info("wrote review_band into %s", write_review_band(model.path, block))
    return 0


def _cmd_operating_point(args: argparse.Namespace) -> int:
    from ml.export import recalibrate_operating_point
    from ml.inference import SHIPPED_MODEL_DIR

    if not args.lfw:
        raise SystemExit(f"operating-point: give --lfw DIR or set ${_LFW_ENV}")
    entry = recalibrate_operating_point(args.model or SHIPPED_MODEL_DIR, lfw_dir=args.lfw, cache_path=args.cache,
                                        rule=args.rule, write=args.write, scoring=args.scoring)
    print(json.dumps(entry, indent=2))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    import keras

    from ml import convert, layers  # noqa: F401  (layers registers the custom layers)
    from ml.inference import MODEL_FILE, SHIPPED_MODEL_DIR

    if args.detector:
        for path in convert.write_detector_files():
            log.info("wrote %s", path)
        return 0
    model_dir = Path(args.model or SHIPPED_MODEL_DIR)
    convert.write_serving_files(keras.models.load_model(model_dir / MODEL_FILE, compile=False), model_dir)
    log.info("wrote %s and %s into %s", convert.TOWER_LITE_FILE, convert.HEAD_FILE, model_dir)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from ml.inference import SHIPPED_MODEL_DIR, read_manifest

    print(json.dumps(read_manifest(args.model or SHIPPED_MODEL_DIR), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commands = {"train": _cmd_train, "evaluate": _cmd_evaluate, "score-pairs": _cmd_score_pairs, "info": _cmd_info,
                "robustness": _cmd_robustness, "review-band": _cmd_review_band, "convert": _cmd_convert,
                "operating-point": _cmd_operating_point}
    from ml.inference import ModelError

    try:
        return commands[args.command](args)
    except ModelError as exc:
        raise SystemExit(f"{args.command}: {exc}") from exc
