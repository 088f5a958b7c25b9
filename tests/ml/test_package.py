"""The package surface: cheap to import, TensorFlow only on first model use."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300).stdout


def test_import_ml_does_not_import_tensorflow():
    out = _run(
        "import sys, ml\n"
        "ml.load_model; ml.FaceModel; ml.decode_image; ml.extract_face\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'mtcnn', 'django') if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_public_names_are_exported():
    import ml

    for name in ("ImageError", "UnreadableImage", "ImageTooLarge", "FaceError", "NoFaceFound", "MultipleFacesFound",
                 "decode_image", "extract_face", "load_model", "FaceModel"):
        assert hasattr(ml, name), name


def test_cli_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "ml", "--help"], check=True, capture_output=True, text=True).stdout
    for command in ("train", "evaluate", "score-pairs", "info"):
        assert command in out
    for command in ("train", "evaluate", "score-pairs", "info"):
        sub = subprocess.run([sys.executable, "-m", "ml", command, "--help"], capture_output=True, text=True)
        assert sub.returncode == 0 and "usage" in sub.stdout
