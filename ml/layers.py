"""Custom Keras layers, registered so a saved model reloads without ``custom_objects`` or ``Lambda``."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ml")
class L1Distance(keras.layers.Layer):
    """Element-wise absolute difference of two embeddings: the Siamese head's input."""

    def call(self, inputs):  # type: ignore[override]
        first, second = inputs
        return ops.abs(first - second)

    def compute_output_shape(self, input_shape):  # type: ignore[override]
        return input_shape[0]


@keras.saving.register_keras_serializable(package="ml")
class L2Normalize(keras.layers.Layer):
    """Scale each row to unit length (the tower's last step)."""

    def __init__(self, epsilon: float = 1e-10, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):  # type: ignore[override]
        squared = ops.sum(ops.square(inputs), axis=-1, keepdims=True)
        return inputs * ops.rsqrt(ops.maximum(squared, self.epsilon))

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="ml")
class ScaleToUnit(keras.layers.Layer):
    """uint8 pixels in [0, 255] -> float32 in [-1, 1], inside the model so callers pass raw crops."""

    def call(self, inputs):  # type: ignore[override]
        return ops.cast(inputs, "float32") / 127.5 - 1.0
