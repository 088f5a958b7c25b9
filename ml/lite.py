"""Run TensorFlow Lite networks (``.tflite``) with LiteRT, the runtime the worker serves with.

The Siamese tower and MTCNN's three networks are TensorFlow/Keras models, converted once by TensorFlow's
own converter (:mod:`ml.convert`) into TensorFlow Lite flatbuffers. LiteRT (``ai-edge-litert``, the
successor of ``tflite-runtime``) runs them with the XNNPACK CPU kernels and without TensorFlow itself:
a worker process then holds ~90 MB of libraries in all (OpenCV and NumPy included) instead of
TensorFlow's ~550 MB, and these small convolutional networks run in about half the time they take
through TensorFlow's executor (``bench/README.md`` section 9).
The outputs equal the Keras models' to float rounding (``tests/ml/test_lite.py``).

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

_threads = 1
_threads_lock = threading.Lock()


def set_threads(threads: int) -> None:
    """CPU threads each network created from now on may use (the worker sets it from its pool size)."""
    global _threads
    if threads < 1:
        raise ValueError("threads must be at least 1")
    with _threads_lock:
        _threads = int(threads)


class LiteNetwork:
    """One ``.tflite`` network: call it with a float32 or uint8 batch, get its outputs as NumPy arrays.

    An input of a new shape needs its tensors planned anew (an interpreter of its own, ~0.1-1 ms), so
    interpreters are kept per shape, at most ``max_shapes`` of them (least recently used goes first).
    With ``pad_batch`` the batch is padded with zeros to the next power of two and the outputs cut back:
    networks fed a different number of faces or patches on every call (RNet, ONet, the tower) then
    plan ten shapes once instead of one on nearly every call. Calls are serialised per network, as one
    interpreter is not safe to share between threads.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_shapes: int = 16, pad_batch: bool = False):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no TensorFlow Lite network at {self.path}")
        self._model = self.path.read_bytes()
        self._max_shapes = max_shapes
        self._pad_batch = pad_batch
        self._by_shape: dict[tuple[int, ...], Any] = {}
        self._lock = threading.Lock()
        probe = Interpreter(model_content=self._model)  # read, never run: no tensors planned
        self.input_dtype = probe.get_input_details()[0]["dtype"]

    def _interpreter(self, shape: tuple[int, ...]) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=self._model, num_threads=_threads)
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], list(shape), strict=True)
        interpreter.allocate_tensors()
        return interpreter

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """The network's outputs for ``batch``, in the order the converter wrote them (copies)."""
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        count = len(batch)
        if self._pad_batch and count:
            padded = 1 << (count - 1).bit_length()
            if padded != count:
                batch = np.concatenate([batch, np.zeros((padded - count, *batch.shape[1:]), batch.dtype)])
        shape = tuple(batch.shape)
        with self._lock:
            interpreter = self._by_shape.pop(shape, None)
            if interpreter is None:
                interpreter = self._interpreter(shape)
                while len(self._by_shape) >= self._max_shapes:
                    self._by_shape.pop(next(iter(self._by_shape)))
            self._by_shape[shape] = interpreter  # most recently used last
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
            interpreter.invoke()
            return [interpreter.get_tensor(out["index"])[:count].copy() for out in interpreter.get_output_details()]
