"""Robustness suite: the shipped decision on faces that do not look like LFW's funnelled crops.

Each condition transforms the *probe* photo the way another camera or another door would (the
reference stays the clean enrolment photo) and sends it through the whole door pipeline: detection
with the face policy, alignment, embedding, the Siamese score at the shipped threshold. Built only
from the calibration and test people's images (never trained on); the model is not changed by it.

Per condition it reports the unusable rate by reason (no_face, face_too_small, multiple_faces),
accuracy / FAR / FRR on the protocol's listed pairs, and FAR over every cross-person probe /
reference pair among the sampled images (hundreds of thousands), compared with the clean FAR.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from ml.augment import jpeg_round_trip

log = logging.getLogger(__name__)

FRAME = (480, 640)  # height, width of the door frames built around the photo
LFW_FACE_PX = 100.0  # fallback face side of a 250x250 deep-funnelled LFW photo; the suite measures each photo's


@dataclass(frozen=True)
class Condition:
    name: str
    description: str
    apply: Callable[[np.ndarray, np.ndarray, np.random.Generator, float], np.ndarray]
    """(photo, another person's photo, rng, the photo's face side in px) -> frame (RGB uint8)."""


def _noise_canvas(rng: np.random.Generator, shape: tuple[int, int] = FRAME) -> np.ndarray:
    base = rng.integers(60, 190, size=3)
    canvas = np.clip(base + rng.normal(0, 12, size=(*shape, 3)), 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(canvas, (0, 0), 3)


def _paste(canvas: np.ndarray, photo: np.ndarray, top: int, left: int) -> np.ndarray:
    h, w = photo.shape[:2]
    canvas[top : top + h, left : left + w] = photo
    return canvas


def _greyscale(photo, other, rng, face_px=LFW_FACE_PX):
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _low_light(photo, other, rng, face_px=LFW_FACE_PX):
    x = photo.astype(np.float32) / 255.0
    x = np.power(x, 1.6) * 0.35  # dark, crushed shadows
    x = x + rng.normal(0, 0.015, size=x.shape)  # sensor noise at high gain
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)


def _low_contrast(photo, other, rng, face_px=LFW_FACE_PX):
    x = photo.astype(np.float32)
    return np.clip((x - x.mean()) * 0.35 + x.mean() + 25, 0, 255).astype(np.uint8)


def _face_width(px: int):
    def apply(photo, other, rng, face_px=LFW_FACE_PX):
        scale = px / face_px
        small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas = _noise_canvas(rng)
        top = (FRAME[0] - small.shape[0]) // 2
        left = (FRAME[1] - small.shape[1]) // 2
        return _paste(canvas, small, top, left)

    return apply


def _jpeg(quality: int):
    def apply(photo, other, rng, face_px=LFW_FACE_PX):
        return jpeg_round_trip(photo, quality)

    return apply


def _off_centre(photo, other, rng, face_px=LFW_FACE_PX):
    canvas = _noise_canvas(rng)
    h, w = photo.shape[:2]
    corner = rng.integers(0, 4)
    top = 0 if corner < 2 else FRAME[0] - h
    left = 0 if corner % 2 == 0 else FRAME[1] - w
    return _paste(canvas, photo, top, left)


def _second_face(photo, other, rng, face_px=LFW_FACE_PX):
    canvas = _noise_canvas(rng)
    h, w = photo.shape[:2]
    top, left = (FRAME[0] - h) // 2, 40
    _paste(canvas, photo, top, left)
    background = cv2.resize(other, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
    return _paste(canvas, background, 30, FRAME[1] - background.shape[1] - 40)


def _blur(photo, other, rng, face_px=LFW_FACE_PX):
    return cv2.GaussianBlur(photo, (0, 0), 1.5)


CONDITIONS: tuple[Condition, ...] = (
    Condition("clean", "the LFW photo as it is", lambda p, o, r, f=LFW_FACE_PX: p),
    Condition("greyscale", "greyscale sensor (IR / cheap camera)", _greyscale),
    Condition("low_light", "dark exposure (gamma 1.6, x0.35) with sensor noise", _low_light),
    Condition("low_contrast", "contrast x0.35 (fog, glare, washed out)", _low_contrast),
    Condition("face_40px", "face about 40 px wide in a 640x480 frame", _face_width(40)),
    Condition("face_60px", "face about 60 px wide in a 640x480 frame", _face_width(60)),
    Condition("face_80px", "face about 80 px wide in a 640x480 frame", _face_width(80)),
    Condition("jpeg_q30", "JPEG quality 30", _jpeg(30)),
    Condition("off_centre", "the photo in a corner of a 640x480 frame", _off_centre),
    Condition("second_face", "another person's face at 0.4x size in the same frame", _second_face),
    Condition("blur", "mild Gaussian blur (sigma 1.5)", _blur),
)


SIZE_SWEEP: tuple[Condition, ...] = tuple(
    Condition(f"face_{px}px", f"face about {px} px wide in a 640x480 frame", _face_width(px)) for px in (30, 40, 50, 60, 70, 80, 100)
)
"""Face widths for the accuracy-versus-size curve that sets ``ml.align.MIN_FACE_PX``."""


def door_embeddings(model, frames: list[np.ndarray], *, min_face_px: float | None = None,
                    batch_size: int = 32) -> tuple[np.ndarray, list[str]]:
    """Each frame through detection + face policy + alignment + embedding: (N, D) (zero rows for
    unusable frames), the reason per frame ('' when usable) and the principal face's side in px
    (NaN when none). ``min_face_px`` overrides the
    policy's verification minimum (the size sweep measures below it).

    Same-sized frames get the coarse search of :func:`ml.align.find_principal_face` in batches (one
    MTCNN call each); :func:`ml.align.principal_after_coarse_search` does the rest per frame.
    """
    from ml import align
    from ml.errors import FaceError

    policy_min = align.MIN_FACE_PX if min_face_px is None else min_face_px
    crops: list[np.ndarray | None] = [None] * len(frames)
    reasons = [""] * len(frames)
    sizes = np.full(len(frames), np.nan)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, frame in enumerate(frames):
        by_shape.setdefault(frame.shape, []).append(i)
    for indices in by_shape.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            found = align.coarse_search_batch([frames[i] for i in chunk])
            for i, faces in zip(chunk, found):
                try:
                    face = align.principal_after_coarse_search(frames[i], faces, min_face_px=policy_min)
                    crops[i] = align.align_face(frames[i], face.landmarks)
                    sizes[i] = face.size
                except FaceError as exc:
                    reasons[i] = exc.reason
    blank = np.zeros((100, 100, 3), np.uint8)
    stacked = np.stack([c if c is not None else blank for c in crops]) if frames else np.zeros((0, 100, 100, 3), np.uint8)
    embeddings = model.embed(stacked) if len(stacked) else np.zeros((0, model.embedding_dim), np.float32)
    usable = np.array([r == "" for r in reasons], dtype=bool)
    embeddings[~usable] = 0.0
    return embeddings, reasons, sizes


def sample_images(people_of_images: dict[str, list[str]], *, per_person: int, seed: int) -> list[str]:
    """At most ``per_person`` images of each person (seeded), so a few prolific people do not
    dominate the pair counts."""
    rng = np.random.default_rng([seed, 17])
    chosen = []
    for person in sorted(people_of_images):
        paths = sorted(people_of_images[person])
        if len(paths) > per_person:
            paths = sorted(rng.choice(paths, size=per_person, replace=False).tolist())
        chosen.extend(paths)
    return chosen


def run_suite(
    lfw_dir: str | os.PathLike[str], model, *, per_person: int = 6, seed: int = 0,
    conditions: tuple[Condition, ...] = CONDITIONS, threshold: float | None = None, min_face_px: float | None = None,
) -> dict[str, object]:
    """Run every condition over the test folds' people; returns the per-condition report."""
    from pathlib import Path

    from ml.image import decode_image
    from ml.lfw import person_of, read_protocol

    protocol = read_protocol(lfw_dir)
    threshold = model.threshold_for(1) if threshold is None else threshold
    test_people = {name for pair in protocol.test_pairs for name in pair.people}
    root = Path(lfw_dir) / "images"
    by_person: dict[str, list[str]] = {}
    for person in sorted(test_people):
        by_person[person] = sorted(f"{person}/{p.name}" for p in (root / person).glob("*.jpg"))
    listed = sorted({p for pair in protocol.test_pairs for p in (pair.path_a, pair.path_b)})
    paths = sorted(set(sample_images(by_person, per_person=per_person, seed=seed)) | set(listed))
    people = np.array([person_of(p) for p in paths])
    photos = [decode_image((root / p).read_bytes()) for p in paths]
    reference_emb, reference_reasons, face_sides = door_embeddings(model, photos)
    face_sides = np.where(np.isfinite(face_sides), face_sides, np.nanmedian(face_sides) if np.isfinite(face_sides).any() else LFW_FACE_PX)
    ref_ok = np.array([r == "" for r in reference_reasons])
    row_of = {p: i for i, p in enumerate(paths)}
    listed_rows = np.array([(row_of[pair.path_a], row_of[pair.path_b]) for pair in protocol.test_pairs])
    listed_same = np.array([pair.same for pair in protocol.test_pairs])
    # Probes: the first photo of every listed test pair, transformed; references: every photo, clean.
    probe_rows = np.unique(listed_rows[:, 0])
    rng_others = np.random.default_rng([seed, 23])
    report: dict[str, object] = {
        "threshold": threshold, "images": len(paths), "probes": int(len(probe_rows)),
        "people": int(len(set(people.tolist()))), "per_person_cap": per_person,
        "reference_unusable": int((~ref_ok).sum()), "conditions": {},
    }
    for condition in conditions:
        rng = np.random.default_rng([seed, 29, len(condition.name)])
        frames = []
        for i in probe_rows:
            other = int(i)
            while people[other] == people[i]:
                other = int(rng_others.integers(0, len(photos)))
            frames.append(condition.apply(photos[i], photos[other], rng, float(face_sides[i])))
        embedded, probe_reasons, _ = door_embeddings(model, frames, min_face_px=min_face_px)
        probe_emb = np.zeros_like(reference_emb)
        probe_emb[probe_rows] = embedded
        probe_ok = np.zeros(len(paths), dtype=bool)
        probe_ok[probe_rows] = [r == "" for r in probe_reasons]
        report["conditions"][condition.name] = {
            "description": condition.description,
            **_condition_report(model, probe_emb, probe_ok, probe_rows, probe_reasons, reference_emb, ref_ok, people,
                                listed_rows, listed_same, threshold),
        }
        log.info("robustness %s: %s", condition.name, {k: v for k, v in report["conditions"][condition.name].items()
                                                       if k in ("unusable_rate", "listed_accuracy", "far", "frr")})
    clean_far = report["conditions"].get("clean", {}).get("far")
    for name, row in report["conditions"].items():
        row["far_vs_clean"] = (row["far"] / clean_far) if clean_far else None
    return report


def smallest_reliable_width(sweep: dict[str, object], clean: dict[str, object], *, factor: float = 2.0) -> int | None:
    """The smallest swept face width from which on FAR stays within ``factor`` x the clean FAR and
    FRR within ``factor`` x the clean FRR (every larger width too): the verification minimum."""
    rows = sorted(((int(name.split("_")[1].rstrip("px")), row) for name, row in sweep["conditions"].items()), key=lambda x: x[0])
    ok = [(px, row["far"] <= factor * max(clean["far"], 1e-6) and row["frr"] <= factor * max(clean["frr"], 1e-6)) for px, row in rows]
    chosen = None
    for px, good in reversed(ok):
        if not good:
            break
        chosen = px
    return chosen


def _condition_report(model, probe_emb, probe_ok, probe_rows, probe_reasons, ref_emb, ref_ok, people, listed_rows,
                      listed_same, threshold):
    from collections import Counter

    n = len(probe_rows)
    unusable = Counter(r for r in probe_reasons if r)
    # Listed pairs: the first image is the (transformed) probe, the second the clean reference.
    a, b = listed_rows[:, 0], listed_rows[:, 1]
    usable = probe_ok[a] & ref_ok[b]
    scores = np.zeros(len(a), np.float32)
    if usable.any():
        scores[usable] = model.score_pairs(probe_emb[a[usable]], ref_emb[b[usable]])
    accept = usable & (scores >= threshold)
    # Every probe against every other person's clean reference (and its own person's other photos).
    probes = np.flatnonzero(probe_ok)
    refs = np.flatnonzero(ref_ok)
    false_accepts = impostor_trials = genuine_accepts = genuine_trials = 0
    score_rows = _probe_reference_scorer(model, probe_emb, ref_emb)
    for p in probes:
        row = score_rows(p, refs)
        same = people[refs] == people[p]
        same &= refs != p
        other = people[refs] != people[p]
        false_accepts += int((row[other] >= threshold).sum())
        impostor_trials += int(other.sum())
        genuine_accepts += int((row[same] >= threshold).sum())
        genuine_trials += int(same.sum())
    unusable_rows = probe_rows[~probe_ok[probe_rows]]
    unusable_own = int(len(unusable_rows))
    # A probe with no usable face is refused at the door: count its genuine trials as rejects.
    for p in unusable_rows:
        genuine_trials += int(((people[refs] == people[p]) & (refs != p)).sum())
    from ml.largescale import wilson_interval

    far = false_accepts / impostor_trials if impostor_trials else float("nan")
    frr = 1.0 - genuine_accepts / genuine_trials if genuine_trials else float("nan")
    return {
        "unusable_rate": unusable_own / n,
        "unusable": dict(unusable),
        "listed_pairs_usable": int(usable.sum()),
        "listed_accuracy": float((accept == listed_same).mean()),
        "listed_far": float((accept & ~listed_same).sum() / (~listed_same).sum()),
        "listed_frr": float((~accept & listed_same).sum() / listed_same.sum()),
        "far": far,
        "far_ci95_pairs": list(wilson_interval(false_accepts, impostor_trials)),
        "frr": frr,
        "impostor_trials": impostor_trials,
        "genuine_trials": genuine_trials,
    }


def _probe_reference_scorer(model, probe_emb, ref_emb):
    scorer = model.scorer
    if scorer.normalised:
        probe_stats, ref_stats = scorer.stats(probe_emb), scorer.stats(ref_emb)
        from ml.scoring import CohortStats

        def score(p, refs):
            return scorer.scores(probe_emb[p][None], ref_emb[refs], CohortStats(probe_stats.mean[p:p + 1], probe_stats.std[p:p + 1]),
                                 CohortStats(ref_stats.mean[refs], ref_stats.std[refs]))
        return score
    return lambda p, refs: scorer.scores(probe_emb[p][None], ref_emb[refs])
