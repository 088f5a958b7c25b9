"""The Siamese network: a compact CNN tower, an L1 distance layer and a sigmoid head.

Tower: 100x100x3 uint8 -> 128-d L2-normalised embedding. Seven 3x3 conv layers with BatchNorm
and ReLU (and optionally residual 3x3 blocks in the three deeper stages), striding down to 7x7,
then a 1x1 bottleneck, flatten (faces are aligned, so position carries identity information that
global pooling would throw away), dropout and a linear 128-d projection. The multiply-adds per face
depend on the widths and blocks: 77 M for the defaults, 132 M for ``siamese-lfw-3``'s widths.

Head: ``Dense(1, sigmoid)`` over ``|e_a - e_b|`` gives P(same person).
"""

from __future__ import annotations

import re

import keras
from keras import layers

from ml.layers import L1Distance, L2Normalize, ScaleToUnit
from ml.types import FACE_SIZE

EMBEDDING_DIM = 128
TOWER_NAME = "tower"
HEAD_NAME = "same_person"
# The layers of a residual block (``s3r1_conv``, ``s3r1_bn``, ...): new ones start as the identity.
RESIDUAL_LAYER = re.compile(r"^s\d+r\d+_(conv|bn|add|relu)$")


def _conv(x, filters: int, strides: int, name: str, weight_decay: float):
    x = layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None,
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _residual(x, name: str, weight_decay: float):
    """``relu(x + bn(conv(x)))`` with the BatchNorm's scale starting at zero, so a new block is the
    identity (its input is already a ReLU's output) until training gives it a use: a trained tower
    deepened with such blocks (:func:`ml.widen.widen_into`) starts computing exactly what it did."""
    filters = x.shape[-1]
    y = layers.Conv2D(
        filters, 3, padding="same", use_bias=False,
        kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None,
        name=f"{name}_conv",
    )(x)
    y = layers.BatchNormalization(gamma_initializer="zeros", name=f"{name}_bn")(y)
    x = layers.Add(name=f"{name}_add")([x, y])
    return layers.ReLU(name=f"{name}_relu")(x)


def build_tower(
    *,
    widths: tuple[int, ...] = (32, 48, 96, 160),
    embedding_dim: int = EMBEDDING_DIM,
    dropout: float = 0.3,
    weight_decay: float = 5e-4,
    input_size: int = FACE_SIZE,
    residual_blocks: int = 0,
) -> keras.Model:
    """The embedding tower. ``widths`` are the channels of the four resolution stages;
    ``residual_blocks`` more 3x3 convs (identity-initialised residual blocks) end each of the
    25x25, 13x13 and 7x7 stages."""
    inputs = keras.Input((input_size, input_size, 3), dtype="uint8", name="face")
    x = ScaleToUnit(name="scale")(inputs)
    x = _conv(x, widths[0] // 2, 1, "stem", weight_decay)
    x = _conv(x, widths[0], 2, "s1a", weight_decay)  # 50x50
    for stage, width in enumerate(widths[1:], start=2):
        x = _conv(x, width, 2, f"s{stage}a", weight_decay)  # 25, 13, 7
        x = _conv(x, width, 1, f"s{stage}b", weight_decay)
        for block in range(residual_blocks):
            x = _residual(x, f"s{stage}r{block + 1}", weight_decay)
    x = layers.Conv2D(64, 1, use_bias=False, name="bottleneck_conv")(x)
    x = layers.BatchNormalization(name="bottleneck_bn")(x)
    x = layers.ReLU(name="bottleneck_relu")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(
        embedding_dim,
        kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None,
        name="projection",
    )(x)
    x = layers.BatchNormalization(name="projection_bn")(x)
    outputs = L2Normalize(name="l2_normalize")(x)
    return keras.Model(inputs, outputs, name=TOWER_NAME)


def build_siamese(tower: keras.Model) -> keras.Model:
    """Two weight-shared towers, L1 distance, sigmoid head: (face_a, face_b) -> P(same person)."""
    size = tower.input_shape[1]
    face_a = keras.Input((size, size, 3), dtype="uint8", name="face_a")
    face_b = keras.Input((size, size, 3), dtype="uint8", name="face_b")
    distance = L1Distance(name="l1_distance")([tower(face_a), tower(face_b)])
    head = layers.Dense(1, activation="sigmoid", name=HEAD_NAME)
    return keras.Model([face_a, face_b], head(distance), name="siamese")


def count_multiply_adds(tower: keras.Model) -> int:
    """Multiply-adds of one forward pass of the conv and dense layers (BN/ReLU ignored)."""
    total = 0
    for layer in tower.layers:
        if isinstance(layer, layers.Conv2D):
            out_h, out_w, out_c = layer.output.shape[1:]
            k_h, k_w = layer.kernel_size
            total += out_h * out_w * out_c * k_h * k_w * layer.input.shape[-1]
        elif isinstance(layer, layers.Dense):
            total += int(layer.input.shape[-1]) * layer.units
    return int(total)
