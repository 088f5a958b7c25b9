"""The robustness suite: its camera conditions, the door pipeline it runs them through, the size rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ml
from ml.robustness import CONDITIONS, FRAME, Condition, _face_width, door_embeddings, run_suite, smallest_reliable_width

TINY_FACE = Condition("face_28px", "face about 28 px wide", _face_width(28))  # below MIN_FACE_PX (40)

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [ml.decode_image((FACES / name).read_bytes()) for name in ("person_a_1.jpg", "person_b_1.jpg")]


@pytest.mark.parametrize("condition", CONDITIONS, ids=lambda c: c.name)
def test_every_condition_makes_an_rgb_frame(condition, photos):
    frame = condition.apply(photos[0], photos[1], np.random.default_rng(0))
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    if condition.name.startswith("face_") or condition.name in ("off_centre", "second_face"):
        assert frame.shape[:2] == FRAME


def test_conditions_reach_the_door_policy_as_a_real_camera_would(photos):
    by_name = {c.name: c for c in CONDITIONS}
    rng = np.random.default_rng(0)
    conditions = [by_name["clean"], TINY_FACE, by_name["second_face"], by_name["greyscale"]]
    frames = [condition.apply(photos[0], photos[1], rng) for condition in conditions]
    model = ml.load_model()
    embeddings, reasons, sizes = door_embeddings(model, frames)
    # A 28 px face is found but too small to verify; a 0.4x background face does not refuse the frame.
    assert reasons == ["", "face_too_small", "", ""]
    assert np.allclose(np.linalg.norm(embeddings[[0, 2, 3]], axis=1), 1.0, atol=1e-4)
    assert not embeddings[1].any() and np.isnan(sizes[1]) and sizes[0] > 60
    # Below the policy's minimum on purpose (the size sweep): the small face is then embedded.
    _, swept, swept_sizes = door_embeddings(model, frames[1:2], min_face_px=0)
    assert swept == [""] and 20 <= swept_sizes[0] <= 36


def test_smallest_reliable_width_needs_every_larger_width_to_hold():
    clean = {"far": 0.001, "frr": 0.05}
    sweep = {"conditions": {
        "face_30px": {"far": 0.02, "frr": 0.5}, "face_40px": {"far": 0.0015, "frr": 0.08},
        "face_50px": {"far": 0.003, "frr": 0.06}, "face_60px": {"far": 0.001, "frr": 0.07},
        "face_80px": {"far": 0.001, "frr": 0.05},
    }}
    assert smallest_reliable_width(sweep, clean) == 60  # 50 px lets in 3x the clean FAR
    sweep["conditions"]["face_80px"]["frr"] = 0.2
    assert smallest_reliable_width(sweep, clean) is None


def test_run_suite_reports_each_condition_on_the_test_people(fake_lfw):
    root, paths = fake_lfw
    faces = sorted(FACES.glob("person_*.jpg"))
    for i, path in enumerate(paths):  # real face photos in place of the placeholders
        (root / "images" / path).write_bytes(faces[i % len(faces)].read_bytes())
    by_name = {c.name: c for c in CONDITIONS}
    report = run_suite(root, ml.load_model(), per_person=3, conditions=(by_name["clean"], TINY_FACE))
    clean, small = report["conditions"]["clean"], report["conditions"]["face_28px"]
    assert report["probes"] == 2 and clean["unusable_rate"] == 0.0  # the first photo of each listed pair
    assert small["unusable"] == {"face_too_small": 2} and small["frr"] == 1.0 and small["far"] != small["far"]  # nan
    assert clean["impostor_trials"] > 0 and 0.0 <= clean["far"] <= 1.0
