"""The benchmark scripts' own logic: what they post, how they parse options, how they count decisions."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ml

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH_DIR))

import _scenario  # noqa: E402
import burst  # noqa: E402
import population  # noqa: E402
import run_all  # noqa: E402


def test_door_snapshot_is_a_640x480_jpeg_with_one_usable_face():
    # A frame the detector rejected would benchmark the no_face shortcut instead of the whole path.
    data = _scenario.probe_snapshots(1)[0]
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.size) == ("JPEG", (640, 480))
    crop = ml.extract_face(ml.decode_image(data))
    assert crop.shape == (100, 100, 3)


def test_fifty_reference_frames_are_distinct_and_each_shows_one_face():
    frames = _scenario.reference_frames(50)
    assert len(set(frames)) == 50
    for data in frames[::9]:  # every variant kind (photo, shift, light, mirror) appears in this sample
        assert ml.extract_face(ml.decode_image(data)).shape == (100, 100, 3)


def test_burst_configurations_parse_and_refuse_nonsense():
    assert burst.parse_configs("1x2, 2x1,2X0") == [(1, 2, False), (2, 1, False), (2, 0, False)]
    assert burst.parse_configs("2x1:hosts") == [(2, 1, True)]
    with pytest.raises(ValueError, match="not PROCESSESxTHREADS"):
        burst.parse_configs("2")
    with pytest.raises(ValueError, match="at least 1 process"):
        burst.parse_configs("0x2")
    with pytest.raises(ValueError, match="only suffix"):
        burst.parse_configs("2x1:pods")


def test_every_post_sends_new_bytes_of_the_same_picture():
    # The same bytes twice are refused `replayed` before any face work: the benchmark would measure that.
    frame = _scenario.probe_snapshots(1)[0]
    first, second = _scenario.new_frame(frame), _scenario.new_frame(frame)
    assert first != second != frame
    assert np.array_equal(ml.decode_image(first), ml.decode_image(frame))


def test_population_sizes_parse_and_refuse_nonsense():
    assert population.parse_sizes("1,10,50") == [1, 10, 50]
    with pytest.raises(ValueError, match="comma-separated integers"):
        population.parse_sizes("1,ten")
    with pytest.raises(ValueError, match="1 or more"):
        population.parse_sizes("0,10")


def test_percentiles_interpolate_like_numpy_and_refuse_no_samples():
    # Linear interpolation between order statistics: index 0.95 * 3 = 2.85 -> 30 + 0.85 * 10.
    assert _scenario.percentiles([40, 10, 30, 20]) == {"p50": 25.0, "p95": 38.5, "p99": 39.7}
    with pytest.raises(ValueError, match="no samples"):
        _scenario.percentiles([])


def test_before_tree_refuses_settings_without_the_performance_block(tmp_path, monkeypatch):
    monkeypatch.setattr(run_all, "SETTINGS_BLOCK_MARKER", "# --- no such block")
    with pytest.raises(RuntimeError, match="no '# --- no such block' block"):
        run_all.before_tree("HEAD", tmp_path)
    # The rest of the tree was written: it is HEAD's, with the listed files taken from the ref.
    assert (tmp_path / "manage.py").is_file()


@pytest.mark.django_db(transaction=True)
def test_exactly_one_decision_counts_lost_and_undecided_check_ins():
    from verification import services
    from verification.models import CheckIn

    device, _token = services.device_create(name="bench")
    rows = [CheckIn.objects.create(device=device, claimed_external_id="p", status=CheckIn.Status.PROCESSING)
            for _ in range(3)]
    for row in rows[:2]:
        services.checkin_decide(checkin_id=row.pk, decision=1, reason="", score=0.9, threshold=0.5, model_version="m")
    ids = [row.pk for row in rows]

    partial = _scenario.exactly_one_decision(ids)
    assert (partial["ok"], partial["decided"], partial["audit_rows_missing"]) == (False, 2, 1)

    services.checkin_decide(checkin_id=rows[2].pk, decision=0, reason="no_match", score=0.1, threshold=0.5,
                            model_version="m")
    complete = _scenario.exactly_one_decision(ids)
    assert complete["ok"] is True
    assert (complete["decision_1"], complete["reasons"]) == (2, {"": 2, "no_match": 1})
    # A check-in id that never reached the database is lost, not silently ignored.
    assert _scenario.exactly_one_decision(ids + [10**9])["ok"] is False
