"""The LFW protocol split and the identity sampler: held-out people never reach training."""

from __future__ import annotations

import numpy as np
import pytest

from ml.data import IdentityBatchSampler, build_training_set, pairs_from_protocol
from ml.lfw import person_of, read_protocol


def test_protocol_parses_folds_and_held_out_people(fake_lfw):
    root, _ = fake_lfw
    protocol = read_protocol(root)
    assert len(protocol.folds) == 10
    assert len(protocol.calibrate_pairs) == 2 and len(protocol.test_pairs) == 4
    assert protocol.held_out_people == {f"P{i}" for i in range(30, 36)}
    assert protocol.test_pairs[0].same and not protocol.test_pairs[1].same


def test_training_set_never_contains_held_out_or_validation_people(fake_lfw):
    root, paths = fake_lfw
    protocol = read_protocol(root)
    training = build_training_set(paths, protocol, val_people=3, val_pairs_per_class=5, seed=0)
    trained = {person_of(p) for p in paths[training.indices]}
    assert not trained & protocol.held_out_people
    assert not trained & training.val_people
    assert len(training.val_people) == 3
    validated = {person_of(p) for p in paths[training.val_pairs.ravel()]}
    assert validated <= training.val_people
    assert training.labels.max() + 1 == training.num_classes == len(trained)


def test_sampler_batches_hold_only_training_rows_grouped_by_identity(fake_lfw):
    root, paths = fake_lfw
    protocol = read_protocol(root)
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


def test_protocol_pairs_map_to_cache_rows(fake_lfw):
    root, paths = fake_lfw
    protocol = read_protocol(root)
    rows, same = pairs_from_protocol(protocol.test_pairs, paths)
    assert [paths[r].tolist() for r in rows] == [[p.path_a, p.path_b] for p in protocol.test_pairs]
    assert same.tolist() == [p.same for p in protocol.test_pairs]
    with pytest.raises(ValueError):
        pairs_from_protocol(protocol.test_pairs, paths[:3])
