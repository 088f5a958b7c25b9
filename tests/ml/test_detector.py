"""The MTCNN driver: what mtcnn's own ``detect_faces`` finds, faster, and searchable from larger faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ml
from ml.detector import PNET_INPUT_PX, pyramid_scales, run_detector

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


def _read(name: str) -> np.ndarray:
    return ml.decode_image((FACES / name).read_bytes())


@pytest.fixture(scope="module")
def plain_mtcnn():
    """mtcnn's own detector, as the package runs it (eager Keras calls, its own pyramid)."""
    from mtcnn import MTCNN

    return MTCNN()


def _in_door_frame(photo: np.ndarray) -> np.ndarray:
    frame = np.full((480, 640, 3), 110, dtype=np.uint8)
    left = (640 - photo.shape[1]) // 2
    frame[70 : 70 + photo.shape[0], left : left + photo.shape[1]] = photo
    return frame


@pytest.mark.parametrize("name", ["two_faces.jpg", "person_a_1.jpg"])
def test_the_driver_finds_exactly_what_plain_mtcnn_finds(name, plain_mtcnn):
    image = _read(name)
    for frame in (image, _in_door_frame(image)):
        plain = sorted(plain_mtcnn.detect_faces(frame), key=lambda f: f["box"])
        ours = sorted(run_detector([frame])[0], key=lambda f: f["box"])
        assert len(plain) == len(ours) >= 1
        for a, b in zip(plain, ours):
            assert a["box"] == b["box"]
            assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-5)
            for key, point in a["keypoints"].items():
                assert np.allclose(point, b["keypoints"][key], atol=1e-3)


def test_a_batch_of_frames_gets_one_list_of_faces_each():
    one, two = _in_door_frame(_read("person_a_1.jpg")), _in_door_frame(_read("two_faces.jpg")[:250, :250])
    blank = np.full_like(one, 110)
    found = run_detector([one, blank, two])
    assert [len(faces) >= 1 for faces in found] == [True, False, True]
    assert run_detector([one])[0] == found[0]


@pytest.mark.parametrize("height,width", [(400, 533), (480, 640), (250, 250), (160, 213), (30, 40), (11, 50)])
def test_the_pyramid_for_twenty_pixel_faces_is_mtcnns(height, width):
    from mtcnn.utils.images import build_scale_pyramid

    expected = build_scale_pyramid(width, height, min_face_size=20, scale_factor=0.709)
    assert np.allclose(pyramid_scales(height, width, 20), expected)


def test_a_search_from_larger_faces_skips_the_finest_levels_and_keeps_every_level_readable():
    fine, coarse = pyramid_scales(400, 533, 20), pyramid_scales(400, 533, 40)
    assert coarse[0] == pytest.approx(PNET_INPUT_PX / 40) and coarse[0] < fine[0]
    assert np.all(400 * coarse >= PNET_INPUT_PX) and 400 * coarse[-1] * 0.709 < PNET_INPUT_PX
    assert len(pyramid_scales(400, 533, 500)) == 0  # no face that large fits: nothing to search


def test_a_search_from_larger_faces_still_finds_them_where_plain_mtcnn_finds_nothing(plain_mtcnn):
    # mtcnn 1.0 sizes its pyramid for 20-px faces whatever min_face_size says; its smallest levels fall
    # under PNet's input and the call finds nothing (or fails). The driver's pyramid stops at readable levels.
    image = _read("two_faces.jpg")
    try:
        plain = plain_mtcnn.detect_faces(image, min_face_size=60)
    except ValueError:  # Keras refuses the level that convolves to nothing
        plain = []
    assert plain == []
    assert len(run_detector([image], min_face_px=60)[0]) == 2
    assert run_detector([image], min_face_px=400)[0] == []  # larger than any face there


def test_blank_and_tiny_frames_have_no_faces():
    assert run_detector([np.zeros((480, 640, 3), np.uint8)]) == [[]]
    assert run_detector([np.zeros((10, 10, 3), np.uint8)]) == [[]]
    assert run_detector([]) == []
