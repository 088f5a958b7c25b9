"""Detection and alignment: one usable face is cropped, none or two are reported, never guessed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ml
from ml.align import align_face, detect_faces, face_template, similarity_transform

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


def _read(name: str) -> np.ndarray:
    return ml.decode_image((FACES / name).read_bytes())


def test_similarity_transform_recovers_a_known_rotation_scale_and_shift():
    angle, scale, shift = np.deg2rad(12.0), 1.7, np.array([5.0, -3.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = face_template() + 10.0
    target = source @ rotation.T + shift
    matrix = similarity_transform(source, target)
    assert np.allclose(matrix[:, :2], rotation, atol=1e-9) and np.allclose(matrix[:, 2], shift, atol=1e-9)


def test_margin_crop_centre_is_the_aligned_crop():
    image = _read("person_a_1.jpg")
    landmarks = detect_faces(image)[0].landmarks
    plain = align_face(image, landmarks).astype(int)
    margin = align_face(image, landmarks, margin=8)[8:108, 8:108].astype(int)
    assert plain.shape == (100, 100, 3)
    assert np.abs(plain - margin).max() <= 1  # training crops are exactly what serving sees


def test_one_face_is_extracted_as_an_aligned_crop():
    crop = ml.extract_face(_read("person_a_1.jpg"))
    assert crop.shape == (100, 100, 3) and crop.dtype == np.uint8
    assert crop.std() > 20  # a real picture, not a blank border


def test_face_in_a_large_frame_is_found_and_cropped_from_the_original():
    face = _read("person_b_1.jpg")
    frame = np.full((1080, 1920, 3), 100, dtype=np.uint8)
    frame[400:650, 900:1150] = face
    faces = detect_faces(frame)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 900 <= x + w / 2 <= 1150 and 400 <= y + h / 2 <= 650  # original-frame coordinates
    assert ml.extract_face(frame).shape == (100, 100, 3)


def test_frame_without_a_face_raises_no_face():
    with pytest.raises(ml.NoFaceFound) as info:
        ml.extract_face(_read("no_face.jpg"))
    assert info.value.reason == "no_face"


def test_frame_with_two_usable_faces_raises_multiple_faces():
    with pytest.raises(ml.MultipleFacesFound) as info:
        ml.extract_face(_read("two_faces.jpg"))
    assert info.value.reason == "multiple_faces"


def test_a_face_too_small_to_use_does_not_count_as_a_second_face():
    frame = np.full((480, 640, 3), 100, dtype=np.uint8)
    frame[100:350, 50:300] = _read("person_a_1.jpg")
    tiny = _read("person_b_1.jpg")[::8, ::8]  # ~32 px image, face well under the usable size
    frame[200 : 200 + tiny.shape[0], 450 : 450 + tiny.shape[1]] = tiny
    assert ml.extract_face(frame).shape == (100, 100, 3)


def test_non_rgb_arrays_are_refused():
    with pytest.raises(ValueError):
        ml.extract_face(np.zeros((50, 50), dtype=np.uint8))
    with pytest.raises(ValueError):
        ml.extract_face(np.zeros((50, 50, 3), dtype=np.float32))
