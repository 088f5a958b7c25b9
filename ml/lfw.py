"""The LFW protocol of this project (``PROTOCOL.md`` beside the data): who trains, which pairs calibrate,
which pairs are quoted.

View 2's ten folds are person-disjoint. Folds 8, 9 and 10 (numbered from 1 in file order) are
held out: fold 8 chooses the threshold, folds 9 and 10 are the test. Everyone else trains.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CALIBRATE_FOLDS = (8,)
TEST_FOLDS = (9, 10)
HELD_OUT_FOLDS = CALIBRATE_FOLDS + TEST_FOLDS


@dataclass(frozen=True)
class Pair:
    """One protocol pair of image paths (relative to ``images/``) and whether they show one person."""

    path_a: str
    path_b: str
    same: bool

    @property
    def people(self) -> tuple[str, str]:
        return (self.path_a.split("/", 1)[0], self.path_b.split("/", 1)[0])


@dataclass(frozen=True)
class Protocol:
    folds: tuple[tuple[Pair, ...], ...]

    def pairs(self, folds: tuple[int, ...]) -> list[Pair]:
        return [pair for number in folds for pair in self.folds[number - 1]]

    @property
    def calibrate_pairs(self) -> list[Pair]:
        return self.pairs(CALIBRATE_FOLDS)

    @property
    def test_pairs(self) -> list[Pair]:
        return self.pairs(TEST_FOLDS)

    @property
    def held_out_people(self) -> frozenset[str]:
        """Everyone appearing in folds 8-10: never trained on, never used to select a model."""
        return frozenset(name for pair in self.pairs(HELD_OUT_FOLDS) for name in pair.people)


def image_path(name: str, number: int) -> str:
    """``images/``-relative path of photo ``number`` (1-based) of ``name``."""
    return f"{name}/{name}_{number:04d}.jpg"


def read_protocol(lfw_dir: str | os.PathLike[str]) -> Protocol:
    """Parse View 2's ``pairs.txt`` into its folds."""
    path = Path(lfw_dir) / "pairs.txt"
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise FileNotFoundError(f"no LFW pairs.txt at {path}") from exc
    header = lines[0].split()
    if len(header) != 2:
        raise ValueError(f"{path}: first line should be '<folds> <pairs per class>'")
    n_folds, per_class = int(header[0]), int(header[1])
    rows = [line.split("\t") for line in lines[1:] if line.strip()]
    if len(rows) != n_folds * 2 * per_class:
        raise ValueError(f"{path}: expected {n_folds * 2 * per_class} pairs, found {len(rows)}")
    folds = []
    for fold in range(n_folds):
        chunk = rows[fold * 2 * per_class : (fold + 1) * 2 * per_class]
        pairs = []
        for row in chunk:
            if len(row) == 3:
                pairs.append(Pair(image_path(row[0], int(row[1])), image_path(row[0], int(row[2])), True))
            elif len(row) == 4:
                pairs.append(Pair(image_path(row[0], int(row[1])), image_path(row[2], int(row[3])), False))
            else:
                raise ValueError(f"{path}: malformed pair line {row!r}")
        folds.append(tuple(pairs))
    return Protocol(tuple(folds))


def list_images(lfw_dir: str | os.PathLike[str]) -> list[str]:
    """Every ``images/``-relative JPEG path, sorted (a stable order for caches and fingerprints)."""
    root = Path(lfw_dir) / "images"
    if not root.is_dir():
        raise FileNotFoundError(f"no LFW images/ folder under {lfw_dir}")
    return sorted(
        f"{person.name}/{image.name}"
        for person in root.iterdir()
        if person.is_dir()
        for image in person.iterdir()
        if image.suffix.lower() == ".jpg"
    )


def person_of(path: str) -> str:
    return path.split("/", 1)[0]
