"""Packages that only training and evaluation use (pyproject.toml's ``train`` extra), imported on use.

The worker image leaves them out; the model's run-time path (``ml.align``, ``ml.inference``) never
needs them, and a training command run without them says which install brings them.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def train_extra(name: str) -> ModuleType:
    """``import name``, or an ImportError naming the extra to install."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"{name} is used only for training and evaluation and is not installed here: pip install -e '.[train]'"
        ) from exc
