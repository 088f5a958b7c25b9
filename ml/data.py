"""Training data from the crop cache: the protocol split, identity labels, P x K batches, validation pairs.

Only people outside folds 8-10 are ever sampled for training. A seeded slice of those training
people (with 2+ photos) is held back as the *validation* set: it alone drives model selection,
so neither the calibrate fold nor the test folds influence which weights ship.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.lfw import Pair, Protocol, person_of


@dataclass(frozen=True)
class TrainingSet:
    """Cache indices and labels for training, and validation pairs (as cache index pairs)."""

    indices: np.ndarray  # cache rows used for training
    labels: np.ndarray  # class id per entry of ``indices`` (0..num_classes-1)
    num_classes: int
    val_pairs: np.ndarray  # (M, 2) cache rows
    val_same: np.ndarray  # (M,) bool
    train_people: frozenset[str]
    val_people: frozenset[str]


def build_training_set(
    paths: np.ndarray,
    protocol: Protocol,
    *,
    val_people: int,
    val_pairs_per_class: int,
    seed: int,
) -> TrainingSet:
    """Split cache rows into training identities and held-back validation people; never folds 8-10."""
    held_out = protocol.held_out_people
    by_person: dict[str, list[int]] = {}
    for row, path in enumerate(paths.tolist()):
        person = person_of(path)
        if person not in held_out:
            by_person.setdefault(person, []).append(row)
    people = sorted(by_person)
    rng = np.random.default_rng([seed, 1])
    multi = [p for p in people if len(by_person[p]) >= 2]
    if val_people > len(multi) // 2:
        raise ValueError(f"val_people={val_people} is too many for {len(multi)} training people with 2+ photos")
    val = sorted(rng.choice(multi, size=val_people, replace=False).tolist()) if val_people else []
    val_set = frozenset(val)
    train = [p for p in people if p not in val_set]
    indices, labels = [], []
    for label, person in enumerate(train):
        indices.extend(by_person[person])
        labels.extend([label] * len(by_person[person]))
    pairs, same = _validation_pairs(val, by_person, val_pairs_per_class, rng)
    return TrainingSet(
        indices=np.asarray(indices, dtype=np.int64),
        labels=np.asarray(labels, dtype=np.int64),
        num_classes=len(train),
        val_pairs=pairs,
        val_same=same,
        train_people=frozenset(train),
        val_people=val_set,
    )


def _validation_pairs(
    people: list[str], by_person: dict[str, list[int]], per_class: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if not people:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=bool)
    positives = [(a, b) for p in people for i, a in enumerate(by_person[p]) for b in by_person[p][i + 1 :]]
    chosen = rng.permutation(len(positives))[:per_class]
    pos = [positives[i] for i in chosen]
    neg = []
    while len(neg) < len(pos):
        first, second = rng.choice(len(people), size=2, replace=False)
        neg.append((int(rng.choice(by_person[people[first]])), int(rng.choice(by_person[people[second]]))))
    pairs = np.asarray(pos + neg, dtype=np.int64)
    same = np.r_[np.ones(len(pos), dtype=bool), np.zeros(len(neg), dtype=bool)]
    return pairs, same


class IdentityBatchSampler:
    """P x K batches: ``identities`` people with 2+ photos, ``k`` distinct photos each, plus
    ``singletons`` one-photo people shown ``k`` times (different augmentations make their pairs).

    Rows are grouped by identity, ``k`` consecutive rows each, so row ``i*k`` and ``i*k+1`` are an
    anchor/positive pair. The stream for step ``s`` depends only on ``(seed, s)``, so a resumed run
    draws exactly the batches an uninterrupted one would.
    """

    def __init__(self, labels: np.ndarray, *, identities: int, k: int = 2, singletons: int = 0, seed: int = 0):
        if k < 2:
            raise ValueError("k must be at least 2 to form anchor/positive pairs")
        self.k, self.identities, self.singletons, self.seed = k, identities, singletons, seed
        order = np.argsort(labels, kind="stable")
        classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
        members = {int(c): order[s : s + n] for c, s, n in zip(classes, starts, counts)}
        self._multi = [members[int(c)] for c, n in zip(classes, counts) if n >= 2]
        self._single = [members[int(c)] for c, n in zip(classes, counts) if n == 1]
        if identities > len(self._multi):
            raise ValueError(f"{identities} identities per batch but only {len(self._multi)} people have 2+ photos")
        if singletons > len(self._single):
            raise ValueError(f"{singletons} singletons per batch but only {len(self._single)} are available")

    @property
    def batch_size(self) -> int:
        return (self.identities + self.singletons) * self.k

    def batch(self, step: int) -> np.ndarray:
        """Positions into ``labels`` for training step ``step``."""
        rng = np.random.default_rng([self.seed, 2, step])
        rows = []
        for person in rng.choice(len(self._multi), size=self.identities, replace=False):
            photos = self._multi[person]
            rows.extend(rng.choice(photos, size=self.k, replace=len(photos) < self.k))
        for person in rng.choice(len(self._single), size=self.singletons, replace=False) if self.singletons else []:
            rows.extend([self._single[person][0]] * self.k)
        return np.asarray(rows, dtype=np.int64)


def pairs_from_protocol(pairs: list[Pair], paths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protocol pairs -> (M, 2) cache rows and (M,) same flags."""
    row_of = {path: row for row, path in enumerate(paths.tolist())}
    try:
        rows = np.asarray([(row_of[p.path_a], row_of[p.path_b]) for p in pairs], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"pair image {exc.args[0]} is not in the cache") from exc
    return rows, np.asarray([p.same for p in pairs], dtype=bool)
