"""Training-only packages (the `train` extra) stay off the worker's run-time path."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ml._extras import train_extra

REPO = Path(__file__).resolve().parents[2]

# What a worker imports to decide a check-in (verification.inference's lazy imports included).
SCRIPT = """
import sys
import ml, ml.align, ml.image, ml.inference, ml.operating_point, ml.largescale, ml.scoring
loaded = sorted(name for name in ("tqdm", "matplotlib", "dlib", "face_recognition_models") if name in sys.modules)
print("LOADED:" + ",".join(loaded))
"""


def test_the_models_run_time_modules_import_no_training_package():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "LOADED:", result.stdout


def test_a_missing_training_package_names_the_extra_that_brings_it():
    with pytest.raises(ImportError, match=r"pip install -e '\.\[train\]'"):
        train_extra("no_such_training_package_xyz")
    assert train_extra("json").dumps([]) == "[]"
