"""A miniature LFW tree for protocol, sampler and training tests (no real data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_fake_lfw(root: Path) -> np.ndarray:
    """40 people (even-numbered ones with 3 photos), 10 folds of 1 same + 1 different pair.

    Folds 8-10 use people P30..P35 only, so those six are the held-out people. Returns the sorted
    ``images/``-relative paths; the image files are placeholders.
    """
    paths = []
    for i in range(40):
        name = f"P{i:02d}"
        (root / "images" / name).mkdir(parents=True)
        for n in range(1, (3 if i % 2 == 0 else 1) + 1):
            (root / "images" / name / f"{name}_{n:04d}.jpg").write_bytes(b"x")
            paths.append(f"{name}/{name}_{n:04d}.jpg")
    lines = ["10\t1"]
    for fold in range(10):
        a, b = (30 + (fold - 7) * 2, 31 + (fold - 7) * 2) if fold >= 7 else (fold * 2, fold * 2 + 1)
        lines.append(f"P{a if a % 2 == 0 else b:02d}\t1\t2")
        lines.append(f"P{a:02d}\t1\tP{b:02d}\t1")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return np.array(sorted(paths))


@pytest.fixture
def fake_lfw(tmp_path: Path) -> tuple[Path, np.ndarray]:
    return tmp_path, write_fake_lfw(tmp_path)
