"""Worker performance wiring (issue 5): thread split between pool processes, warm-up, concurrency."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from celery.signals import celeryd_after_setup

import ml
from accesscontrol import celery as celery_module
from verification import inference

REPO = Path(__file__).resolve().parents[2]
FACES = REPO / "tests" / "fixtures" / "faces"


@pytest.fixture
def four_cpus(monkeypatch):
    monkeypatch.setattr(inference, "available_cpus", lambda: 4)
    monkeypatch.delenv(inference.POOL_PROCESSES_ENV, raising=False)


def test_explicit_tf_threads_setting_wins_over_the_automatic_split(four_cpus, settings, monkeypatch):
    settings.WORKER_TF_THREADS = 3
    monkeypatch.setenv(inference.POOL_PROCESSES_ENV, "4")
    assert inference.worker_tf_threads() == 3


@pytest.mark.parametrize(("processes", "threads"), [(None, 4), ("1", 4), ("2", 2), ("3", 1), ("8", 1), ("junk", 4), ("\u00b2", 4)])
def test_automatic_tf_threads_split_the_cpus_between_pool_processes(four_cpus, settings, monkeypatch, processes, threads):
    settings.WORKER_TF_THREADS = 0
    if processes is not None:
        monkeypatch.setenv(inference.POOL_PROCESSES_ENV, processes)
    assert inference.worker_tf_threads() == threads


def test_worker_main_process_exports_its_pool_size_for_the_forked_processes(monkeypatch):
    monkeypatch.delenv(celery_module.POOL_PROCESSES_ENV, raising=False)
    celeryd_after_setup.send(sender="bench@host", instance=SimpleNamespace(concurrency=3), conf=None)
    assert os.environ[celery_module.POOL_PROCESSES_ENV] == "3"
    # Both sides of the hand-off name the same variable (inference may not import accesscontrol).
    assert celery_module.POOL_PROCESSES_ENV == inference.POOL_PROCESSES_ENV


def test_threads_are_configured_before_the_model_loads_and_the_detector_is_warmed_after(monkeypatch, settings):
    settings.WORKER_TF_THREADS = 2
    calls = []

    class Model:
        version, threshold = "m-1", 0.5

        def warm_up(self) -> None:
            calls.append("model warm-up")

    monkeypatch.setattr(inference, "_model", None)
    monkeypatch.setattr(inference, "_configure_threads", lambda threads: calls.append(f"threads={threads}"))
    monkeypatch.setattr(ml, "load_model", lambda path=None: calls.append("load") or Model())
    monkeypatch.setattr(ml, "extract_face", lambda rgb: calls.append("extract") or np.zeros((100, 100, 3), np.uint8))
    monkeypatch.setattr(ml, "detect_faces", lambda rgb: calls.append(f"detect {rgb.shape}") or [])
    inference.get_model()
    inference.get_model()
    assert calls == ["threads=2", "load", "model warm-up", "extract", "detect (480, 640, 3)", "detect (480, 640, 3)"]


def test_detector_warm_up_that_finds_no_face_does_not_stop_the_model_load(monkeypatch, settings):
    def no_face(rgb):
        raise ml.NoFaceFound("none")

    monkeypatch.setattr(inference, "_model", None)
    monkeypatch.setattr(inference, "_configure_threads", lambda threads: None)
    monkeypatch.setattr(ml, "load_model", lambda path=None: SimpleNamespace(warm_up=lambda: None, version="v", threshold=0.5))
    monkeypatch.setattr(ml, "extract_face", no_face)
    monkeypatch.setattr(ml, "detect_faces", lambda rgb: [])
    assert inference.get_model().version == "v"


def test_warm_up_frame_is_one_usable_face_to_the_real_detector():
    # If MTCNN stopped seeing the drawing, its second and third stages would stay untraced until
    # the first real check-ins (seconds on them).
    crop = ml.extract_face(inference.warm_up_frame())
    assert crop.shape == (100, 100, 3) and crop.dtype == np.uint8


def test_after_the_warm_up_real_door_frames_find_every_pyramid_level_planned():
    # Each input shape PNet sees needs its tensors planned once: paid at worker start for a door's
    # 640x480 frames, both searches, never by a door. (In a full test run other tests may have planned some.)
    from ml.align import find_principal_face
    from ml.detector import load_detector

    inference._warm_up_detector()
    pnet = load_detector().pnet
    planned = set(pnet._by_shape)
    for photo in ("person_a_3.jpg", "person_b_1.jpg", "person_c_1.jpg"):
        frame = np.full((480, 640, 3), 110, np.uint8)
        frame[115:365, 195:445] = ml.read_image(str(FACES / photo))
        assert len(ml.detect_faces(frame)) == 1  # the fine search
        find_principal_face(frame)  # the coarse one first, as a check-in runs it
    assert set(pnet._by_shape) == planned


def _settings_value(name: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("CELERY_WORKER_CONCURRENCY", "WORKER_TF_THREADS")}
    environ.update(env, DJANGO_SETTINGS_MODULE="accesscontrol.settings")
    code = f"from django.conf import settings; print(repr(settings.{name}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environ, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_worker_concurrency_follows_the_cpus_celery_may_use_unless_set():
    assert _settings_value("CELERY_WORKER_CONCURRENCY") == "'auto'"
    assert _settings_value("CELERY_WORKER_CONCURRENCY", CELERY_WORKER_CONCURRENCY="3") == "3"


def test_tf_threads_setting_refuses_a_negative_count():
    with pytest.raises(subprocess.CalledProcessError) as failure:
        _settings_value("WORKER_TF_THREADS", WORKER_TF_THREADS="-1")
    assert "WORKER_TF_THREADS=-1 is below the minimum 0" in failure.value.stderr


def test_the_worker_sizes_the_networks_threads_before_loading_them(monkeypatch):
    from ml import lite

    monkeypatch.setattr(lite, "_threads", lite._threads)  # restored after the test
    inference._configure_threads(3)
    assert lite._threads == 3
