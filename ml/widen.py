"""Widen a trained tower without forgetting it (Net2WiderNet, Chen et al. 2016).

A tower with more channels per stage starts from a narrower trained one: each extra channel of a
conv layer copies an existing channel (its filter and its BatchNorm statistics), and the next conv
layer divides its incoming weights among the copies, so the wider tower computes the same embedding
(exactly with ``noise=0``, in inference and in training mode: a copied channel has its original's
batch statistics). A little noise on the copies' filters breaks their symmetry so that training can
make them differ; without it they would get identical gradients for ever. This buys capacity at the
price of a continuation run instead of a run from scratch.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _spread(old: int, new: int, rng: np.random.Generator) -> np.ndarray:
    """Which old channel each of ``new`` channels copies: the first ``old`` themselves, the rest
    drawn without repeats while there are channels left (so copies spread over the layer)."""
    if new < old:
        raise ValueError(f"cannot narrow a layer from {old} to {new} channels")
    extra, chosen = new - old, []
    while extra > 0:
        take = min(extra, old)
        chosen.append(rng.choice(old, size=take, replace=False))
        extra -= take
    return np.concatenate([np.arange(old), *chosen]).astype(np.int64)


def widen_into(source: Any, target: Any, *, noise: float = 0.01, seed: int = 0) -> None:
    """Load ``source``'s weights into ``target``, a tower of the same layers with as many or more
    channels per conv layer (:func:`ml.model.build_tower` with larger ``widths``), and possibly
    residual blocks the source lacks (larger ``residual_blocks``): those keep their identity
    initialisation, so the deeper tower computes the source's embedding too.

    ``noise`` is the standard deviation of the perturbation added to the copied filters, as a
    fraction of the layer's filter standard deviation.
    """
    import keras

    from ml.model import RESIDUAL_LAYER

    rng = np.random.default_rng(seed)
    source_layers = {layer.name: layer for layer in source.layers}
    dropped = sorted(set(source_layers) - {layer.name for layer in target.layers})
    if dropped:
        raise ValueError(f"target tower lacks the source's layers {dropped}: it would not compute the same embedding")
    channel_map: np.ndarray | None = None  # old channel of each input channel of the next conv
    for layer in target.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        old = source_layers.get(layer.name)
        if old is None and RESIDUAL_LAYER.match(layer.name):
            continue  # a new block: the identity until trained (its input channels follow the stage's)
        if old is None:
            raise ValueError(f"source tower has no layer {layer.name!r}")
        old_weights = old.get_weights()
        if isinstance(layer, keras.layers.Conv2D):
            (kernel,) = old_weights  # the tower's convs have no bias (BatchNorm follows)
            in_map = channel_map if channel_map is not None else np.arange(kernel.shape[2])
            if len(in_map) != weights[0].shape[2]:
                raise ValueError(f"{layer.name}: input channels {weights[0].shape[2]} do not follow the previous layer")
            copies = np.bincount(in_map, minlength=kernel.shape[2]).astype(np.float32)
            out_map = _spread(kernel.shape[3], weights[0].shape[3], rng)
            wide = kernel[:, :, in_map, :][..., out_map] / copies[in_map][None, None, :, None]
            added = wide[..., kernel.shape[3]:]
            added += rng.normal(0.0, noise * float(kernel.std()), added.shape).astype(np.float32)
            layer.set_weights([wide.astype(np.float32)])
            channel_map = out_map
        elif isinstance(layer, keras.layers.BatchNormalization) and channel_map is not None \
                and weights[0].shape != old_weights[0].shape:
            layer.set_weights([w[channel_map] for w in old_weights])
        else:
            if [w.shape for w in weights] != [w.shape for w in old_weights]:
                raise ValueError(f"{layer.name}: shapes {[w.shape for w in weights]} cannot take "
                                 f"{[w.shape for w in old_weights]}")
            layer.set_weights(old_weights)
        if isinstance(layer, keras.layers.Dense):
            channel_map = None  # past the flatten, the chain of conv channels ends
