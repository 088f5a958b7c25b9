"""Distillation targets: dlib's ResNet face descriptor for every *training* image, computed once.

Training-only (the ``train`` extra installs ``dlib-bin`` and ``face_recognition_models``); the
runtime never imports this module. dlib's descriptor was trained on about 3 million faces of 7,485
people with no LFW identities; its author reports 0.9938 on LFW. It is a teacher, never deployed.

Targets are computed from dlib's own pipeline on the original photo (HOG detection, its 5-point
landmarks, its 150x150 chip), so the student learns "this photo's identity" and not dlib's
alignment. Images of people in folds 8-10 are refused outright: nothing for training is ever
computed from them (PROTOCOL.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from ml.lfw import person_of

if TYPE_CHECKING:
    from ml.morphs import Morphs

log = logging.getLogger(__name__)

TEACHER_NAME = "dlib_face_recognition_resnet_model_v1"
TEACHER_DIM = 128
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # dlib's own face chip (what compute_face_descriptor crops)
# The face in dlib's chip is this wide in the student's units (a ``FACE_SIZE`` crop = 100): eye
# centres measured 52-57 px apart in the chip against 31.5 px in the student's crop.
CHIP_FACE_WIDTH = 171.0


class HeldOutImage(ValueError):
    """A teacher target was asked for an image of a held-out (calibrate/test) person."""


def _load_dlib():
    try:
        import dlib
        import face_recognition_models
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ImportError("teacher targets need the train extra: pip install -e '.[train]'") from exc
    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    descriptor = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    return dlib, detector, landmarks, descriptor


def teacher_descriptors(
    lfw_dir: str | os.PathLike[str], paths: Iterable[str], held_out_people: frozenset[str], *, workers: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 128) float32 dlib descriptors of ``images/``-relative ``paths`` and (N,) detected flags.

    When HOG finds no face the centred box of a deep-funnelled LFW photo is used (flag False).
    ``workers`` > 1 splits the images over that many processes (dlib runs on one core each).
    """
    paths = list(paths)
    refused = sorted({person_of(p) for p in paths} & held_out_people)
    if refused:
        raise HeldOutImage(f"teacher targets asked for held-out people: {refused[:5]}")
    return _in_processes(_describe, str(lfw_dir), [paths], (), workers)


def _in_processes(describe, source: str, columns: list[list], fixed: tuple, workers: int) -> tuple[np.ndarray, ...]:
    """``describe(source, *columns, *fixed)``'s arrays over every image (``source``: the LFW directory, or
    the chips file the morphs are blended from): with ``workers`` > 1 the columns
    (one entry per image) are split into strided chunks, each described in its own process (dlib runs on
    one core each), and the arrays put back in the images' order."""
    count = len(columns[0])
    if workers <= 1 or count < 2 * workers:
        return describe(source, *columns, *fixed)
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(describe, source, *[column[i::workers] for column in columns], *fixed) for i in range(workers)]
        parts = [future.result() for future in futures]
    merged = []
    for chunks in zip(*parts):
        whole = np.zeros((count,) + chunks[0].shape[1:], dtype=chunks[0].dtype)
        for i, chunk in enumerate(chunks):
            whole[i::workers] = chunk
        merged.append(whole)
    return tuple(merged)


def _landmarks(dlib, detector, landmarks, image: np.ndarray):
    """dlib's 5 landmarks of the photo's central face, and whether HOG found it (else the centred box
    of a deep-funnelled LFW photo is used)."""
    height, width = image.shape[:2]
    boxes = list(detector(image, 0))
    if boxes:
        cx, cy = width / 2.0, height / 2.0
        box = min(boxes, key=lambda b: (b.center().x - cx) ** 2 + (b.center().y - cy) ** 2)
    else:
        side = min(height, width)
        box = dlib.rectangle(int(side * 0.28), int(side * 0.28), int(side * 0.72), int(side * 0.72))
    return landmarks(image, box), bool(boxes)


def _chip(dlib, detector, landmarks, image: np.ndarray) -> tuple[np.ndarray, bool]:
    """dlib's aligned 150x150 chip of the photo's central face, and whether HOG found it."""
    shape, detected = _landmarks(dlib, detector, landmarks, image)
    return dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING), detected


def _read_rgb(root: Path, rel: str) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(root / rel), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _describe(lfw_dir: str, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from tqdm import tqdm

    dlib, detector, landmarks, descriptor = _load_dlib()
    root = Path(lfw_dir) / "images"
    out = np.zeros((len(paths), TEACHER_DIM), dtype=np.float32)
    detected = np.zeros(len(paths), dtype=bool)
    for i, rel in enumerate(tqdm(paths, desc="teacher", unit="img", mininterval=30)):
        image = _read_rgb(root, rel)
        shape, detected[i] = _landmarks(dlib, detector, landmarks, image)
        out[i] = np.asarray(descriptor.compute_face_descriptor(image, shape), dtype=np.float32)
    return out, detected


def _describe_views(lfw_dir: str, paths: list[str], rows: list[int], count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from tqdm import tqdm

    from ml.views import apply_view, views_of

    dlib, detector, landmarks, descriptor = _load_dlib()
    root = Path(lfw_dir) / "images"
    out = np.zeros((len(paths), count, TEACHER_DIM), dtype=np.float32)
    detected = np.zeros(len(paths), dtype=bool)
    for i, (rel, row) in enumerate(zip(tqdm(paths, desc="teacher views", unit="img", mininterval=30), rows)):
        chip, detected[i] = _chip(dlib, detector, landmarks, _read_rgb(root, rel))
        for v, view in enumerate(views_of(seed, row, count)):
            out[i, v] = np.asarray(descriptor.compute_face_descriptor(apply_view(chip, view, CHIP_FACE_WIDTH)), np.float32)
    return out, detected


def _chips(lfw_dir: str, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """dlib's aligned 150x150 chip of each photo's central face (as :func:`_describe` crops it)."""
    from tqdm import tqdm

    dlib, detector, landmarks, _ = _load_dlib()
    root = Path(lfw_dir) / "images"
    out = np.zeros((len(paths), CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    detected = np.zeros(len(paths), dtype=bool)
    for i, rel in enumerate(tqdm(paths, desc="teacher chips", unit="img", mininterval=30)):
        out[i], detected[i] = _chip(dlib, detector, landmarks, _read_rgb(root, rel))
    return out, detected


def _describe_blends(chips_path: str, first: list[int], second: list[int], alpha: list[float]) -> tuple[np.ndarray]:
    """dlib's descriptor of each blend of two chips (positions into the chips file)."""
    from tqdm import tqdm

    from ml.morphs import blend

    _, _, _, descriptor = _load_dlib()
    chips = np.load(chips_path, mmap_mode="r")
    out = np.zeros((len(first), TEACHER_DIM), dtype=np.float32)
    for i, (a, b, w) in enumerate(zip(tqdm(first, desc="teacher morphs", unit="img", mininterval=30), second, alpha)):
        out[i] = np.asarray(descriptor.compute_face_descriptor(blend(chips[a], chips[b], w)), np.float32)
    return (out,)


def _training_rows(cache_paths: np.ndarray, held_out_people: frozenset[str]) -> np.ndarray:
    """Cache rows of people outside the held-out folds: the only images the teacher ever sees."""
    return np.asarray([r for r, p in enumerate(cache_paths.tolist()) if person_of(p) not in held_out_people], dtype=np.int64)


def _write_npz(out_path: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    """``arrays`` saved to ``out_path`` whole or not at all (an interrupted run leaves no half file)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
    return out


def build_teacher_views(
    lfw_dir: str | os.PathLike[str], cache_paths: np.ndarray, held_out_people: frozenset[str], out_path: str | os.PathLike[str],
    *, count: int, seed: int, workers: int = 1,
) -> Path:
    """Write ``out_path`` (.npz): ``rows`` (cache rows of training people), ``targets`` (rows, count, 128):
    dlib's descriptor of each training face under its views 1..``count`` (:mod:`ml.views`), and ``detected``.

    Like :func:`build_teacher_cache`, nothing is computed from held-out people.
    """
    rows = _training_rows(cache_paths, held_out_people)
    targets, detected = _in_processes(_describe_views, str(lfw_dir), [cache_paths[rows].tolist(), rows.tolist()],
                                      (count, seed), workers)
    out = _write_npz(out_path, rows=rows, targets=targets, detected=detected, seed=np.array(seed), teacher=np.array(TEACHER_NAME))
    log.info("teacher descriptors of %d views of %d training images -> %s", count, len(rows), out)
    return out


def build_teacher_morphs(
    lfw_dir: str | os.PathLike[str], cache_paths: np.ndarray, held_out_people: frozenset[str], morphs: "Morphs",
    out_path: str | os.PathLike[str], *, workers: int = 1,
) -> Path:
    """Write ``out_path`` (.npz): the ``morphs``' ``first``, ``second`` (cache rows), ``alpha`` and ``targets``
    (N, 128): dlib's descriptor of each blend of the two photos' dlib chips (:mod:`ml.morphs`).

    Refuses morphs that involve a held-out person: nothing is computed from them.
    """
    import tempfile

    involved = np.unique(np.concatenate([morphs.first, morphs.second]))
    paths = cache_paths[involved].tolist()
    refused = sorted({person_of(p) for p in paths} & held_out_people)
    if refused:
        raise HeldOutImage(f"teacher morphs asked for held-out people: {refused[:5]}")
    chips, _ = _in_processes(_chips, str(lfw_dir), [paths], (), workers)
    position = np.searchsorted(involved, np.stack([morphs.first, morphs.second]))
    with tempfile.TemporaryDirectory() as scratch:  # workers read the chips mapped, not pickled
        chips_path = str(Path(scratch) / "chips.npy")
        np.save(chips_path, chips)
        del chips
        (targets,) = _in_processes(_describe_blends, chips_path,
                                   [position[0].tolist(), position[1].tolist(), morphs.alpha.tolist()], (), workers)
    out = _write_npz(out_path, first=morphs.first, second=morphs.second, alpha=morphs.alpha, targets=targets,
                     teacher=np.array(TEACHER_NAME))
    log.info("teacher descriptors of %d morphs of %d training images -> %s", len(targets), len(involved), out)
    return out


def build_teacher_cache(
    lfw_dir: str | os.PathLike[str], cache_paths: np.ndarray, held_out_people: frozenset[str], out_path: str | os.PathLike[str],
    *, workers: int = 1,
) -> Path:
    """Write ``out_path`` (.npz): ``rows`` (cache rows of training people), ``targets``, ``detected``.

    Rows of held-out people are skipped here, so the file never holds anything computed from them.
    """
    rows = _training_rows(cache_paths, held_out_people)
    targets, detected = teacher_descriptors(lfw_dir, cache_paths[rows].tolist(), held_out_people, workers=workers)
    digest = hashlib.sha256(targets.tobytes()).hexdigest()
    out = _write_npz(out_path, rows=rows, targets=targets, detected=detected, fingerprint=np.array(digest),
                     teacher=np.array(TEACHER_NAME))
    log.info("teacher targets for %d training images (%d without a HOG detection) -> %s", len(rows), int((~detected).sum()), out)
    return out


def centred_targets(targets: np.ndarray, mean: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean-centred, L2-normalised targets (the last axis is the descriptor) and the mean: the targets'
    own over the first axis, or ``mean`` when given (dlib's descriptors share a large common component;
    without centring the student learns the mean and little else)."""
    mean = targets.mean(axis=0) if mean is None else mean
    centred = targets - mean
    centred /= np.maximum(np.linalg.norm(centred, axis=-1, keepdims=True), 1e-6)
    return centred.astype(np.float32), mean.astype(np.float32)
