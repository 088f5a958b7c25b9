"""What the coarse-first face search costs and changes: the same door frames searched three ways.

Each LFW photo of the calibration fold's pairs (fold 8; the test folds are not touched) is resized to a
random size and placed at a random spot of a 640x480 noise frame (faces of about 65-190 px, the photo's
own background faces kept). Every frame is then searched, interleaved:

- ``stock``: the fine search (down to 24-px faces) through mtcnn 1.0's own ``detect_faces`` on
  TensorFlow (eager Keras calls), i.e. the service before ``ml/detector.py``;
- ``fine``: the same search through ``ml.detector.run_detector`` (the networks on LiteRT);
- ``coarse first``: ``ml.align.find_principal_face``, what the worker runs now.

It prints the CPU time per frame (``time.process_time``, one thread per network: a worker process's
share of the compose defaults), how many frames the coarse search decided alone, whether the face
policy's answer (principal face, or the refusal's reason) is the same, how far the principal face's
landmarks moved, and the shipped model's AUC over the pairs with each search's crops.

    .venv/bin/python bench/face_search.py --lfw ../shared/datasets/lfw [--pairs 300] [--seed 5]
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._scenario import PROBE_PHOTO, door_frame, machine, write_results  # noqa: E402

FRAME_H, FRAME_W = 480, 640


def _frame_of(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import cv2

    side = int(rng.integers(150, 420))
    photo = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
    canvas = cv2.GaussianBlur(rng.integers(60, 160, size=(FRAME_H, FRAME_W, 3), dtype=np.uint8), (0, 0), 3)
    top, left = int(rng.integers(0, FRAME_H - side + 1)) if side < FRAME_H else 0, int(rng.integers(0, FRAME_W - side))
    rows = min(side, FRAME_H - top)
    canvas[top : top + rows, left : left + side] = photo[:rows]
    return canvas


def _stock_fine_search(frame: np.ndarray) -> list:
    """The fine search as the service ran it before ml/detector.py: mtcnn's detect_faces on the copy."""
    import cv2

    from ml import align

    scale = align._detection_scale(FRAME_H, FRAME_W, align.MIN_DETECT_FACE_PX)
    small = cv2.resize(frame, (round(FRAME_W * scale), round(FRAME_H * scale)), interpolation=cv2.INTER_AREA)
    return _stock_mtcnn().detect_faces(small)


@functools.cache
def _stock_mtcnn():
    from mtcnn import MTCNN  # the package's own detector, on TensorFlow (the dev extra)

    return MTCNN()


def _policy(search) -> tuple[str, object]:
    import ml

    try:
        return "ok", search()
    except ml.FaceError as exc:
        return exc.reason, None


def _timed(function):
    start = time.process_time()
    result = function()
    return result, 1e3 * (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", required=True, help="the LFW folder (with pairs.txt and images/)")
    parser.add_argument("--pairs", type=int, default=300, help="fold-8 pairs used, spread over the fold (300 = all)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--label", default="", help="suffix of the results file")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import cv2

    from ml.lite import set_threads

    cv2.setNumThreads(1)
    set_threads(1)
    import ml
    from ml import align
    from ml.lfw import read_protocol
    from ml.metrics import roc_auc

    every = read_protocol(args.lfw).calibrate_pairs
    pairs = every[:: max(1, len(every) // args.pairs)][: args.pairs]  # same- and different-person pairs alike
    rng = np.random.default_rng(args.seed)
    model = ml.load_model()
    model.warm_up()
    bench_frame = ml.decode_image(door_frame(PROBE_PHOTO))
    for _ in range(3):  # trace every path before timing
        align.find_principal_face(bench_frame), align.detect_faces(bench_frame), _stock_fine_search(bench_frame)

    ms = {"stock": [], "fine": [], "coarse_first": []}
    decided_by_coarse = agree = 0
    landmark_moves, disagreements = [], []
    crops = {"fine": {}, "coarse_first": {}}
    paths = list(dict.fromkeys(p for pair in pairs for p in (pair.path_a, pair.path_b)))
    for path in paths:
        frame = _frame_of(ml.decode_image((Path(args.lfw) / "images" / path).read_bytes()), rng)
        ms["stock"].append(_timed(lambda: _stock_fine_search(frame))[1])
        fine_faces, cost = _timed(lambda: align.detect_faces(frame))
        ms["fine"].append(cost)
        fine = _policy(lambda: align.choose_principal_face(fine_faces))
        coarse_faces, cost = _timed(lambda: align.coarse_search(frame))
        coarse, rest = _timed(lambda: _policy(lambda: align.principal_after_coarse_search(frame, coarse_faces)))
        ms["coarse_first"].append(cost + rest)
        decided_by_coarse += align.coarse_search_decides(coarse_faces)
        agree += fine[0] == coarse[0]
        if fine[0] != coarse[0]:
            disagreements.append({"photo": path, "fine": fine[0], "coarse_first": coarse[0]})
        for name, (reason, face) in (("fine", fine), ("coarse_first", coarse)):
            crops[name][path] = align.align_face(frame, face.landmarks) if face is not None else None
        if fine[1] is not None and coarse[1] is not None:
            eyes = np.linalg.norm(fine[1].landmarks[1] - fine[1].landmarks[0])
            landmark_moves.append(float(np.abs(fine[1].landmarks - coarse[1].landmarks).max() / eyes))

    bench_ms = {
        "stock": statistics.median(_timed(lambda: _stock_fine_search(bench_frame))[1] for _ in range(30)),
        "fine": statistics.median(_timed(lambda: align.detect_faces(bench_frame))[1] for _ in range(30)),
        "coarse_first": statistics.median(_timed(lambda: align.find_principal_face(bench_frame))[1] for _ in range(30)),
    }
    usable = [p for p in paths if crops["fine"][p] is not None and crops["coarse_first"][p] is not None]
    scored = [pair for pair in pairs if pair.path_a in usable and pair.path_b in usable]
    labels = np.array([pair.same for pair in scored])
    auc = {}
    for name in crops:
        embedded = dict(zip(usable, model.embed(np.stack([crops[name][p] for p in usable]))))
        scores = model.score_pairs(np.stack([embedded[p.path_a] for p in scored]), np.stack([embedded[p.path_b] for p in scored]))
        auc[name] = round(roc_auc(labels, scores), 4)

    results = {
        "machine": machine(),
        "frames": len(paths),
        "cpu_ms_per_frame_median": {k: round(statistics.median(v), 1) for k, v in ms.items()},
        "cpu_ms_per_frame_mean": {k: round(statistics.fmean(v), 1) for k, v in ms.items()},
        "bench_door_frame_cpu_ms_median": {k: round(v, 1) for k, v in bench_ms.items()},
        "decided_by_the_coarse_search": decided_by_coarse,
        "same_policy_answer": agree,
        "disagreements": disagreements,
        "principal_landmarks_moved_max_over_eye_distance": {
            "median": round(float(np.median(landmark_moves)), 4),
            "p95": round(float(np.percentile(landmark_moves, 95)), 4),
        },
        "pairs_scored": len(scored),
        "auc": auc,
    }
    print(f"{len(paths)} frames; CPU ms per frame (median / mean):")
    for name in ms:
        print(f"  {name:<13} {results['cpu_ms_per_frame_median'][name]:6.1f} / {results['cpu_ms_per_frame_mean'][name]:6.1f}"
              f"   benchmark door frame {results['bench_door_frame_cpu_ms_median'][name]:6.1f}")
    print(f"decided by the coarse search alone: {decided_by_coarse}/{len(paths)}; same policy answer: {agree}/{len(paths)}")
    print(f"principal landmarks moved (max / eye distance): median {results['principal_landmarks_moved_max_over_eye_distance']['median']}"
          f", p95 {results['principal_landmarks_moved_max_over_eye_distance']['p95']}")
    print(f"AUC over {len(scored)} pairs: fine {auc['fine']}, coarse first {auc['coarse_first']}")
    print(f"-> {write_results('face_search' + (f'-{args.label}' if args.label else ''), results)}")


if __name__ == "__main__":
    main()
