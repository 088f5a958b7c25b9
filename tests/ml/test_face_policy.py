"""The door's face policy: the largest face is verified, a person beside it refuses, a far one does not.

The rules are checked on hand-made detections (``choose_principal_face`` is pure), then once each
through the real detector on frames composed from the committed fixture faces (a 250x250 fixture
photo holds a face about 84 px wide).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import ml
from ml.align import (
    COARSE_SEARCH_FACE_PX,
    MIN_CONFIDENCE,
    MIN_DETECT_FACE_PX,
    MIN_FACE_PX,
    SECOND_FACE_RATIO,
    DetectedFace,
    choose_principal_face,
    find_principal_face,
)

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


def face(size: float, confidence: float = 0.99, x: float = 0.0) -> DetectedFace:
    landmarks = np.zeros((5, 2), dtype=np.float64)
    return DetectedFace((x, 10.0, size, size * 1.25), confidence, landmarks)


# --- the rules, on synthetic detections ---------------------------------------------------------


def test_the_largest_face_is_the_principal_whatever_the_order():
    big = face(150, x=300)
    assert choose_principal_face([face(40, x=10), big, face(60, x=500)]) is big


def test_a_small_background_face_is_ignored():
    principal = face(120)
    background = face(SECOND_FACE_RATIO * 120 - 1, x=400)
    assert choose_principal_face([principal, background]) is principal


def test_a_second_face_of_at_least_the_ratio_is_refused_as_multiple_faces():
    with pytest.raises(ml.MultipleFacesFound) as caught:
        choose_principal_face([face(120), face(SECOND_FACE_RATIO * 120, x=400)])
    assert caught.value.reason == "multiple_faces"


def test_a_near_equal_second_face_is_refused_even_when_it_is_below_the_verification_minimum():
    # The person behind need not be verifiable to be a second person at the door.
    with pytest.raises(ml.MultipleFacesFound):
        choose_principal_face([face(MIN_FACE_PX + 5), face(MIN_FACE_PX - 5, x=300)])


def test_a_confident_face_below_the_verification_minimum_is_face_too_small_not_no_face():
    with pytest.raises(ml.FaceTooSmall) as caught:
        choose_principal_face([face(MIN_FACE_PX - 1)])
    assert caught.value.reason == "face_too_small"
    assert isinstance(caught.value, ml.FaceError) and not isinstance(caught.value, ml.NoFaceFound)


def test_two_faces_too_small_to_verify_are_face_too_small():
    # Nothing in the frame can be verified: "step closer" is the useful answer.
    with pytest.raises(ml.FaceTooSmall):
        choose_principal_face([face(MIN_FACE_PX - 2), face(MIN_FACE_PX - 3, x=300)])


def test_no_detection_is_no_face():
    with pytest.raises(ml.NoFaceFound) as caught:
        choose_principal_face([])
    assert caught.value.reason == "no_face"


def test_low_confidence_detections_are_ignored():
    principal = face(100)
    unsure = MIN_CONFIDENCE - 0.05
    # Not a rival, even at the same size ...
    assert choose_principal_face([principal, face(100, confidence=unsure, x=300)]) is principal
    # ... not the principal, even when larger ...
    assert choose_principal_face([face(200, confidence=unsure, x=300), principal]) is principal
    # ... and not a face at all.
    with pytest.raises(ml.NoFaceFound):
        choose_principal_face([face(100, confidence=unsure)])


def _scripted_searches(monkeypatch, coarse, fine):
    """Replace detection with fixed answers: ``coarse`` for the first search, ``fine`` for the second."""
    import ml.align

    searched = []

    def detect(image, *, min_face_px, detail_face_px=None):
        searched.append(min_face_px)
        assert (detail_face_px or min_face_px) == MIN_DETECT_FACE_PX  # both searches measure at one resolution
        return {COARSE_SEARCH_FACE_PX: coarse, MIN_DETECT_FACE_PX: fine}[min_face_px]

    monkeypatch.setattr(ml.align, "detect_faces", detect)
    return searched


def test_a_face_large_enough_that_every_rival_was_searched_for_is_decided_by_the_coarse_search(monkeypatch):
    large = COARSE_SEARCH_FACE_PX / SECOND_FACE_RATIO
    coarse = [face(large), face(COARSE_SEARCH_FACE_PX - 1, x=300)]
    searched = _scripted_searches(monkeypatch, coarse, fine=[face(large), face(large, x=300)])
    assert find_principal_face(np.zeros((480, 640, 3), dtype=np.uint8)) is coarse[0]
    assert searched == [COARSE_SEARCH_FACE_PX]  # the door's usual case: one, cheap search


def test_a_face_whose_rivals_could_be_smaller_than_the_coarse_search_sends_the_frame_to_the_fine_search(monkeypatch):
    # A rival of this principal may be a little smaller than the coarse search's minimum, so it cannot decide.
    principal = COARSE_SEARCH_FACE_PX / SECOND_FACE_RATIO - 5
    rival = COARSE_SEARCH_FACE_PX - 1
    assert rival >= SECOND_FACE_RATIO * principal
    searched = _scripted_searches(monkeypatch, coarse=[face(principal)], fine=[face(principal), face(rival, x=300)])
    with pytest.raises(ml.MultipleFacesFound):
        find_principal_face(np.zeros((480, 640, 3), dtype=np.uint8))
    assert searched == [COARSE_SEARCH_FACE_PX, MIN_DETECT_FACE_PX]


def test_a_frame_without_a_confident_face_in_the_coarse_search_is_searched_down_to_the_detection_minimum(monkeypatch):
    coarse = [face(100, confidence=MIN_CONFIDENCE - 0.1)]
    searched = _scripted_searches(monkeypatch, coarse, fine=[face(30)])
    with pytest.raises(ml.FaceTooSmall):  # found by the fine search: "step closer", not "no_face"
        find_principal_face(np.zeros((480, 640, 3), dtype=np.uint8))
    assert searched == [COARSE_SEARCH_FACE_PX, MIN_DETECT_FACE_PX]


def test_the_fine_search_finds_every_face_that_can_refuse_a_usable_one():
    # A rival of the smallest usable face is at least SECOND_FACE_RATIO x MIN_FACE_PX; the fine search
    # goes that low, and below the verification minimum so that too-small faces are named.
    assert MIN_DETECT_FACE_PX <= SECOND_FACE_RATIO * MIN_FACE_PX
    assert MIN_DETECT_FACE_PX < MIN_FACE_PX < COARSE_SEARCH_FACE_PX / SECOND_FACE_RATIO


# --- through the real detector, on the fixture faces ---------------------------------------------


def _read(name: str) -> np.ndarray:
    return ml.decode_image((FACES / name).read_bytes())


def _shrunk(name: str, scale: float) -> np.ndarray:
    return cv2.resize(_read(name), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _frame(*placed: tuple[np.ndarray, int, int]) -> np.ndarray:
    frame = np.full((480, 640, 3), 110, dtype=np.uint8)
    for photo, top, left in placed:
        frame[top : top + photo.shape[0], left : left + photo.shape[1]] = photo
    return frame


def test_a_person_at_the_door_with_a_passer_by_far_behind_is_verified():
    frame = _frame((_read("person_a_1.jpg"), 100, 40), (_shrunk("person_b_1.jpg", 1 / 3), 150, 450))
    assert len([f for f in ml.detect_faces(frame) if f.confidence >= MIN_CONFIDENCE]) == 2  # both are seen
    principal = find_principal_face(frame)
    x, y, w, h = principal.box
    assert 40 <= x + w / 2 <= 290 and 100 <= y + h / 2 <= 350  # the full-size face, not the small one
    assert ml.extract_face(frame).shape == (100, 100, 3)


def test_two_people_of_about_the_same_size_are_refused_as_multiple_faces():
    frame = _frame((_read("person_a_1.jpg"), 100, 40), (_shrunk("person_c_1.jpg", 0.8), 120, 380))
    with pytest.raises(ml.MultipleFacesFound):
        ml.extract_face(frame)


@pytest.mark.parametrize("scale", [0.36, 0.31], ids=["face-32px", "face-28px"])
def test_a_face_found_but_too_small_to_verify_is_face_too_small(scale):
    # Before the split into a detection and a verification minimum both were "no_face".
    frame = _frame((_shrunk("person_b_1.jpg", scale), 200, 260))
    with pytest.raises(ml.FaceTooSmall) as caught:
        ml.extract_face(frame)
    assert caught.value.reason == "face_too_small"
