"""Convert the Keras networks to the TensorFlow Lite files the worker serves with (needs TensorFlow).

- :func:`write_serving_files`: a model directory's tower as ``tower.tflite`` and the Siamese head's
  weights as ``head.npz``. :func:`ml.export.export_model` writes both with every new model;
  ``python -m ml convert --model DIR`` adds them to a directory written before.
- :func:`write_detector_files`: MTCNN's three networks (the ``mtcnn`` 1.0 package's weights, MIT
  licence) as ``ml/detector_models/{pnet,rnet,onet}.tflite``; ``python -m ml convert --detector``.

The converter is TensorFlow's own; no weight changes, no quantisation: outputs equal the Keras
models' to float rounding (``tests/ml/test_lite.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ml.detector import DETECTOR_DIR, DETECTOR_FILES
from ml.inference import HEAD_FILE, TOWER_LITE_FILE

_DETECTOR_INPUTS = {"StagePNet": (None, None, 3), "StageRNet": (24, 24, 3), "StageONet": (48, 48, 3)}
"""Input shape of each stage's network (batch left out): PNet reads whole pyramid levels of any size."""


def tflite_bytes(model: Any) -> bytes:
    """A Keras model as a TensorFlow Lite flatbuffer (float32, unquantised)."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def write_serving_files(siamese: Any, model_dir: str | os.PathLike[str]) -> None:
    """``tower.tflite`` and ``head.npz`` for the Siamese network ``siamese``, into ``model_dir``."""
    from ml.model import HEAD_NAME, TOWER_NAME

    model_dir = Path(model_dir)
    (model_dir / TOWER_LITE_FILE).write_bytes(tflite_bytes(siamese.get_layer(TOWER_NAME)))
    kernel, bias = siamese.get_layer(HEAD_NAME).get_weights()
    np.savez(model_dir / HEAD_FILE, kernel=kernel[:, 0].astype(np.float32), bias=np.float32(bias[0]))


def write_detector_files(out_dir: str | os.PathLike[str] = DETECTOR_DIR) -> list[Path]:
    """MTCNN's PNet, RNet and ONet from the installed ``mtcnn`` package, one ``.tflite`` each."""
    import keras
    from mtcnn import MTCNN

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stage in MTCNN().stages:
        name = type(stage).__name__
        inputs = keras.Input(_DETECTOR_INPUTS[name], dtype="float32", name="image")
        wrapped = keras.Model(inputs, stage._model(inputs))  # ``_model``: mtcnn 1.0's attribute (pinned)
        path = out_dir / DETECTOR_FILES[name]
        path.write_bytes(tflite_bytes(wrapped))
        written.append(path)
    return written
