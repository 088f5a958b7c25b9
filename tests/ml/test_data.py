"""The LFW protocol split and the identity sampler: held-out people never reach training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml.data import IdentityBatchSampler, build_training_set, pairs_from_protocol
from ml.lfw import person_of, read_protocol


def _write_lfw(root: Path) -> list[str]:
    """A miniature LFW: 3 folds of 1 same + 1 different pair; folds 1-3 stand in for 8-10 via renumbering."""
    people = {f"P{i:02d}": 3 if i % 2 == 0 else 1 for i in range(40)}
    paths = []
    for name, count in people.items():
        (root / "images" / name).mkdir(parents=True)
        for n in range(1, count + 1):
            (root / "images" / name / f"{name}_{n:04d}.jpg").write_bytes(b"x")
            paths.append(f"{name}/{name}_{n:04d}.jpg")
    # 10 folds of 1 same + 1 different pair; folds 8-10 use P30..P39 only.
    lines = ["10\t1"]
    for fold in range(10):
        a, b = (30 + (fold - 7) * 2, 31 + (fold - 7) * 2) if fold >= 7 else (fold * 2, fold * 2 + 1)
        same = a if a % 2 == 0 else b
        lines.append(f"P{same:02d}\t1\t2")
        lines.append(f"P{a:02d}\t1\tP{b:02d}\t1")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return sorted(paths)


def test_protocol_parses_folds_and_held_out_people(tmp_path):
    _write_lfw(tmp_path)
    protocol = read_protocol(tmp_path)
    assert len(protocol.folds) == 10
    assert len(protocol.calibrate_pairs) == 2 and len(protocol.test_pairs) == 4
    assert protocol.held_out_people == {f"P{i}" for i in range(30, 36)}
    assert protocol.test_pairs[0].same and not protocol.test_pairs[1].same


def test_training_set_never_contains_held_out_or_validation_people(tmp_path):
    paths = np.array(_write_lfw(tmp_path))
    protocol = read_protocol(tmp_path)
    training = build_training_set(paths, protocol, val_people=3, val_pairs_per_class=5, seed=0)
    trained = {person_of(p) for p in paths[training.indices]}
    assert not trained & protocol.held_out_people
    assert not trained & training.val_people
    assert len(training.val_people) == 3
    validated = {person_of(p) for p in paths[training.val_pairs.ravel()]}
    assert validated <= training.val_people
    assert training.labels.max() + 1 == training.num_classes == len(trained)


def test_sampler_batches_hold_only_training_rows_grouped_by_identity(tmp_path):
    paths = np.array(_write_lfw(tmp_path))
    protocol = read_protocol(tmp_path)
    training = build_training_set(paths, protocol, val_people=2, val_pairs_per_class=5, seed=0)
    sampler = IdentityBatchSampler(training.labels, identities=4, k=2, singletons=2, seed=7)
    for step in range(50):
        positions = sampler.batch(step)
        assert len(positions) == sampler.batch_size == 12
        labels = training.labels[positions]
        assert (labels[0::2] == labels[1::2]).all()  # anchor/positive pairs share an identity
        assert len(set(labels[0::2].tolist())) == 6  # six different identities
        people = {person_of(p) for p in paths[training.indices[positions]]}
        assert not people & (protocol.held_out_people | training.val_people)
    assert np.array_equal(sampler.batch(3), IdentityBatchSampler(training.labels, identities=4, k=2, singletons=2, seed=7).batch(3))


def test_sampler_refuses_impossible_batches():
    with pytest.raises(ValueError):
        IdentityBatchSampler(np.array([0, 0, 1]), identities=2)
    with pytest.raises(ValueError):
        IdentityBatchSampler(np.array([0, 0, 1, 1]), identities=1, k=1)


def test_protocol_pairs_map_to_cache_rows(tmp_path):
    paths = np.array(_write_lfw(tmp_path))
    protocol = read_protocol(tmp_path)
    rows, same = pairs_from_protocol(protocol.test_pairs, paths)
    assert [paths[r].tolist() for r in rows] == [[p.path_a, p.path_b] for p in protocol.test_pairs]
    assert same.tolist() == [p.same for p in protocol.test_pairs]
    with pytest.raises(ValueError):
        pairs_from_protocol(protocol.test_pairs, paths[:3])
